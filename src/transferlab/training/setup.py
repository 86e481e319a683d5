"""Everything checked and planned before TensorFlow starts: the modality's settings, the data, the run folder."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from transferlab.config.schema import BaselineConfig, ExperimentConfig
from transferlab.errors import ConfigError
from transferlab.modalities.base import DataPlan, Modality
from transferlab.modalities.registry import modality_for
from transferlab.training.runs import prepare_run_dir


@dataclass
class Setup:
    """A run ready for TensorFlow: what its inputs are, which examples go where, and the folder it writes."""

    modality: Modality
    plan: DataPlan
    run_dir: Path


def checked_setup(cfg: ExperimentConfig) -> Setup:
    """Every check that needs no TensorFlow, so a bad config or dataset fails in seconds, not after imports."""
    modality = modality_for(cfg)
    modality.check(cfg)
    plan = modality.plan(cfg)
    check_baseline(cfg.baseline, plan.counts()["train"])
    return Setup(modality, plan, prepare_run_dir(cfg))


def check_baseline(cfg: BaselineConfig, train_rows: int) -> None:
    """k nearest neighbours need k training rows; scikit-learn would say so only after extraction."""
    if cfg.estimator == "knn" and cfg.neighbors > train_rows:
        raise ConfigError(
            f"baseline.neighbors={cfg.neighbors} is more than the {train_rows} training examples; set "
            f"baseline.neighbors to at most {train_rows}, or another baseline.estimator"
        )
