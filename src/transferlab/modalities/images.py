"""Images: folders of class subfolders, a `keras.applications` (or local) base, pixels in, logits out."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

from transferlab.config.schema import DatasetKind, ExperimentConfig, HeadKind
from transferlab.data.images import (
    DatasetPlan,
    check_images,
    locate_dataset,
    plan_dataset,
)
from transferlab.errors import ConfigError
from transferlab.modalities.base import Classifier, configured_feature_folder, Modality, PredictOptions
from transferlab.models.bases import (
    check_alpha,
    check_image_size,
    check_preprocess,
    get_base_spec,
    resolve_weights,
)

if TYPE_CHECKING:
    import keras
    import numpy as np

    from transferlab.data.splits import SplitData

log = logging.getLogger(__name__)


class ImageModality(Modality):
    kind = DatasetKind.images
    item = "path"
    prediction_key = "file"

    def check(self, cfg: ExperimentConfig) -> None:
        check_model_config(cfg)

    def plan(self, cfg: ExperimentConfig) -> DatasetPlan:
        root = locate_dataset(cfg.dataset, cfg.paths.data_dir)
        plan = plan_dataset(cfg.dataset, root, cfg.trainer.seed)
        check_images(plan, cfg.dataset.on_bad_file, Path(cfg.paths.data_dir) / "converted")
        log.info("dataset %s: %s, classes %s", cfg.dataset.name, plan.counts(), plan.class_names)
        return plan

    def pipelines(self, cfg: ExperimentConfig, plan: DatasetPlan) -> "SplitData":
        from transferlab.data.images import build_pipelines

        return build_pipelines(plan, cfg.dataset, image_size(cfg), cfg.augmentation, cfg.trainer.seed)

    def classifier(self, cfg: ExperimentConfig, data: "SplitData") -> Classifier:
        from transferlab.models.heads import TaskSpec
        from transferlab.models.image import build_model

        task = TaskSpec(image_size(cfg), len(data.class_names))
        return Classifier(task, lambda: build_model(cfg.base_model, cfg.head, task))

    def feature_folder(self, cfg: ExperimentConfig) -> Path | None:
        return configured_feature_folder(cfg)

    def caches_head_features(self, cfg: ExperimentConfig) -> bool:
        # Augmented images differ every epoch, so their features cannot be stored once.
        from transferlab.data.augmentation import build_augmentation

        return build_augmentation(cfg.augmentation, 0) is None

    def figures(self, cfg: ExperimentConfig, data: "SplitData") -> dict[str, Callable[[], object]]:
        from transferlab.reporting.figures import augmentation_preview

        return {"augmentation_preview": lambda: augmentation_preview(data, cfg)}

    def reads(self, model: "keras.Model") -> bool:
        return len(model.inputs[0].shape) == 4

    def predict(self, model: "keras.Model", inputs: Sequence[str], options: PredictOptions) -> tuple[list, "np.ndarray"]:
        from transferlab.data.inputs import ImageBatches, image_files
        from transferlab.models.saved import in_batches

        files = image_files(list(inputs))
        images = ImageBatches(tuple(model.input_shape[1:3]), options.on_bad_file)
        kept, logits = in_batches(model, files, images, options.batch_size)
        images.report(len(files))
        return kept, logits


def check_model_config(cfg: ExperimentConfig) -> tuple[int, int]:
    """Name, weights and input size of the base, checked without building anything."""
    check_pool_head(cfg)
    spec = get_base_spec(cfg.base_model.name)
    check_alpha(spec, resolve_weights(spec, cfg.base_model.weights), cfg.base_model.alpha)
    check_preprocess(cfg.base_model.preprocess)
    size = image_size(cfg)
    check_image_size(spec, size)
    return size


def check_pool_head(cfg: ExperimentConfig) -> None:
    """Images take a pool head: the sequence heads read a text dataset's tokens."""
    if cfg.head.kind is not HeadKind.pool:
        raise ConfigError(
            f"head.kind={cfg.head.kind.value} reads token sequences of a text dataset; use head=gap or head=mlp for images"
        )


def image_size(cfg: ExperimentConfig) -> tuple[int, int]:
    """`dataset.image_size`, or the base's own default input size."""
    if cfg.dataset.image_size:
        return tuple(cfg.dataset.image_size)
    spec = get_base_spec(cfg.base_model.name)
    return (spec.default_size, spec.default_size)
