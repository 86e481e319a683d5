"""Everything checked and planned before TensorFlow starts: the config's consistency, the base, the data."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from omegaconf import DictConfig

from transferlab.config.convert import to_experiment_config
from transferlab.config.schema import (
    BaselineConfig,
    DatasetKind,
    ExperimentConfig,
    HeadKind,
)
from transferlab.data.images import (
    DatasetPlan,
    check_images,
    locate_dataset,
    plan_dataset,
)
from transferlab.data.text import TextPlan, plan_text_data
from transferlab.errors import ConfigError
from transferlab.models.bases import (
    check_alpha,
    check_image_size,
    check_preprocess,
    get_base_spec,
    resolve_weights,
)
from transferlab.models.vectors import check_text_base, locate_vectors
from transferlab.training.runs import prepare_run_dir

if TYPE_CHECKING:

    pass

log = logging.getLogger(__name__)


def checked_setup(
    cfg: ExperimentConfig | DictConfig,
) -> tuple[ExperimentConfig, Optional[tuple[int, int]], DatasetPlan | TextPlan, Path]:
    """Config, image size (None for text), data plan and run directory: every check that needs no TensorFlow."""
    cfg = to_experiment_config(cfg)
    if is_text(cfg):
        check_text_config(cfg)
        image_size, plan = None, plan_text(cfg)
    else:
        image_size = check_model_config(cfg)
        plan = plan_data(cfg)  # every data error surfaces here, before TensorFlow is imported
    check_baseline(cfg.baseline, plan.counts()["train"])
    return cfg, image_size, plan, prepare_run_dir(cfg)


def check_baseline(cfg: BaselineConfig, train_rows: int) -> None:
    """k nearest neighbours need k training rows; scikit-learn would say so only after extraction."""
    if cfg.estimator == "knn" and cfg.neighbors > train_rows:
        raise ConfigError(
            f"baseline.neighbors={cfg.neighbors} is more than the {train_rows} training examples; set "
            f"baseline.neighbors to at most {train_rows}, or another baseline.estimator"
        )


def is_text(cfg: ExperimentConfig) -> bool:
    return cfg.dataset.kind is DatasetKind.text


def check_text_config(cfg: ExperimentConfig) -> None:
    """Base, head and schedule settings a text run can use; the vectors file found and its size checked."""
    check_text_base(cfg.base_model)
    if cfg.schedule.head.cache_features:
        raise ConfigError(
            "schedule.head.cache_features=true is for image bases: cached token vectors lose the padding "
            "mask, and an embedding lookup costs nothing to repeat; set it to null"
        )
    locate_vectors(cfg.base_model, cfg.paths.data_dir)


def plan_text(cfg: ExperimentConfig) -> TextPlan:
    plan = plan_text_data(cfg.dataset, cfg.paths.data_dir, cfg.trainer.seed)
    log.info("dataset %s: %s, classes %s", cfg.dataset.name, plan.counts(), plan.class_names)
    return plan


def check_model_config(cfg: ExperimentConfig) -> tuple[int, int]:
    """Name, weights and input size of the base, checked without building anything."""
    if cfg.head.kind is not HeadKind.pool:
        raise ConfigError(
            f"head.kind={cfg.head.kind.value} reads token sequences of a text dataset; use head=gap or head=mlp for images"
        )
    spec = get_base_spec(cfg.base_model.name)
    check_alpha(spec, resolve_weights(spec, cfg.base_model.weights), cfg.base_model.alpha)
    check_preprocess(cfg.base_model.preprocess)
    image_size = tuple(cfg.dataset.image_size or (spec.default_size, spec.default_size))
    check_image_size(spec, image_size)
    return image_size


def plan_data(cfg: ExperimentConfig) -> DatasetPlan:
    root = locate_dataset(cfg.dataset, cfg.paths.data_dir)
    plan = plan_dataset(cfg.dataset, root, cfg.trainer.seed)
    check_images(plan, cfg.dataset.on_bad_file, Path(cfg.paths.data_dir) / "converted")
    log.info("dataset %s: %s, classes %s", cfg.dataset.name, plan.counts(), plan.class_names)
    return plan
