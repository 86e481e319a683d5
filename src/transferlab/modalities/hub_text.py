"""Text on a KerasHub encoder: the same tables as the word-vector path, but strings go into the model,
which tokenizes them with its preset's own preprocessor.

Prediction is the text modality's (a saved model takes strings either way); what differs is the
check (the preset, not a vectors file), the pipelines (no vectorizer), the model, and phase 1,
which trains on the frozen encoder's cached text vectors.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from transferlab.config.schema import ExperimentConfig, HeadKind
from transferlab.data.text import TextPlan
from transferlab.errors import ConfigError
from transferlab.modalities.base import Classifier, configured_feature_folder
from transferlab.modalities.text import TextModality
from transferlab.models.hub_presets import check_text_preset, require_keras_hub

if TYPE_CHECKING:
    import keras

    from transferlab.data.splits import SplitData


class HubTextModality(TextModality):
    def check(self, cfg: ExperimentConfig) -> None:
        check_hub_text_config(cfg)

    def pipelines(self, cfg: ExperimentConfig, plan: TextPlan) -> "SplitData":
        from transferlab.data.text import build_raw_text_pipelines

        return build_raw_text_pipelines(plan, cfg.dataset, cfg.trainer.seed)

    def classifier(self, cfg: ExperimentConfig, data: "SplitData") -> Classifier:
        from transferlab.models.heads import TaskSpec
        from transferlab.models.hub_text import build_hub_text_model

        task = TaskSpec(None, len(data.class_names), sequence_length=cfg.dataset.sequence_length)
        return Classifier(task, lambda: build_hub_text_model(cfg.base_model, cfg.head, task))

    def feature_folder(self, cfg: ExperimentConfig) -> Path | None:
        return configured_feature_folder(cfg)

    def caches_head_features(self, cfg: ExperimentConfig) -> bool:
        # The frozen encoder is the costly part, and its text vectors do not change between epochs.
        return True

    def exported(self, model: "keras.Model", data: "SplitData") -> "keras.Model":
        return model


def check_hub_text_config(cfg: ExperimentConfig) -> None:
    """The extra installed, a pool head, and the preset found, a text encoder, long enough."""
    require_keras_hub("hub_text")
    if cfg.head.kind is not HeadKind.pool:
        raise ConfigError(
            f"head.kind={cfg.head.kind.value} reads token vectors; an encoder gives one vector per text, so use "
            "head=gap or head=mlp"
        )
    check_text_preset(cfg.base_model.preset, cfg.dataset.sequence_length)
