"""transferlab: config-driven transfer-learning experiments.

`transferlab.train(cfg)` mirrors `scripts/train.py`. TensorFlow is imported only when a run
starts, so importing the package (and `--help`, `--cfg job`) stays fast.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

# TensorFlow's C++ start-up chatter (CUDA probes, CPU flags) hides the run's own log.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from transferlab.config.schema import ExperimentConfig, register_configs
from transferlab.errors import (
    ConfigError,
    DataError,
    ModelError,
    TrainingError,
    TransferlabError,
)
from transferlab.training.run_guard import register_resolvers

if TYPE_CHECKING:
    from omegaconf import DictConfig

    from transferlab.reporting.summary import RunSummary

__version__ = "0.1.0"

# Hydra's `conf/config.yaml` starts from this schema; registering on import lets both the CLI and
# notebooks (hydra.compose) find it.
register_configs()
# `${run_suffix:}` in the default run and sweep folder names (conf/config.yaml).
register_resolvers()
__all__ = [
    "ConfigError", "DataError", "ExperimentConfig", "ModelError", "TrainingError",
    "TransferlabError", "register_configs", "train",
]


def train(cfg: "ExperimentConfig | DictConfig") -> "RunSummary":
    """Run one two-phase transfer-learning experiment and return its summary."""
    from transferlab.training.recipe import train as _train

    return _train(cfg)
