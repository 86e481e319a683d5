"""Images on a KerasHub backbone: the same folders, pipelines, prediction and cached phase 1 as the
keras.applications path, but the preset's image converter, not a `preprocess_input`, scales the pixels
inside the model.

What differs is the check (the preset, not a registered base), the input size (the converter's, unless
dataset.image_size says otherwise) and the model.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from transferlab.config.schema import ExperimentConfig
from transferlab.data.images import DatasetPlan
from transferlab.errors import ConfigError
from transferlab.modalities.base import Classifier
from transferlab.modalities.images import ImageModality, check_pool_head
from transferlab.models.hub_presets import (
    CNN_BACKBONES,
    check_image_preset,
    local_folder,
    lora_refusal,
    require_keras_hub,
)

if TYPE_CHECKING:
    import keras

    from transferlab.data.splits import SplitData


class HubImageModality(ImageModality):
    def check(self, cfg: ExperimentConfig) -> None:
        check_hub_image_config(cfg)

    def pipelines(self, cfg: ExperimentConfig, plan: DatasetPlan) -> "SplitData":
        from transferlab.data.images import build_pipelines

        return build_pipelines(plan, cfg.dataset, hub_image_size(cfg), cfg.augmentation, cfg.trainer.seed)

    def classifier(self, cfg: ExperimentConfig, data: "SplitData") -> Classifier:
        from transferlab.models.heads import TaskSpec
        from transferlab.models.hub_image import build_hub_image_model
        from transferlab.models.saved import get_base

        task = TaskSpec(tuple(data.train_in_order.element_spec[0].shape[1:3]), len(data.class_names))
        fine = cfg.schedule.fine_tune

        def build() -> "keras.Model":
            model = build_hub_image_model(cfg.base_model, cfg.head, task)
            # A remote preset's backbone class is known only now: still before any training.
            if fine.lora_rank is not None and fine.epochs > 0:
                get_base(model).check_lora(fine.lora_rank)
            return model

        return Classifier(task, build)


def check_hub_image_config(cfg: ExperimentConfig) -> None:
    """The extra installed, a pool head, no second pixel scaling, the preset found and an image model, LoRA
    only on a backbone with attention."""
    require_keras_hub("hub_image")
    check_pool_head(cfg)
    if cfg.base_model.preprocess is not None:
        raise ConfigError(
            f"base_model.preprocess={cfg.base_model.preprocess} would scale the pixels a second time: the preset's "
            "image converter already does; set base_model.preprocess=null"
        )
    size = tuple(cfg.dataset.image_size) if cfg.dataset.image_size else None
    info = check_image_preset(cfg.base_model.preset, size)
    fine = cfg.schedule.fine_tune
    if fine.lora_rank is not None and fine.epochs > 0 and info.backbone in CNN_BACKBONES:
        raise lora_refusal(fine.lora_rank, info.backbone)


def hub_image_size(cfg: ExperimentConfig) -> tuple[int, int]:
    """dataset.image_size, else the size the preset's converter resizes to: read from a local preset's files,
    or from the converter of a remote one (downloaded now, as the model will be)."""
    if cfg.dataset.image_size:
        return tuple(cfg.dataset.image_size)
    if local_folder(cfg.base_model.preset) is not None:
        return check_image_preset(cfg.base_model.preset, None).image_size
    from transferlab.models.hub_image import converter_image_size

    return converter_image_size(cfg.base_model.preset)
