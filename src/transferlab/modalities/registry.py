"""The modality of a run, by its dataset kind, or of a saved model, by what it takes: the one place either is decided."""

from __future__ import annotations

from typing import TYPE_CHECKING

from transferlab.config.schema import DatasetKind, ExperimentConfig
from transferlab.errors import ModelError
from transferlab.modalities.base import Modality
from transferlab.modalities.images import ImageModality
from transferlab.modalities.text import TextModality

if TYPE_CHECKING:
    import keras

# A new input kind is one new module and one line here.
MODALITIES: dict[DatasetKind, Modality] = {DatasetKind.images: ImageModality(), DatasetKind.text: TextModality()}


def modality_for(cfg: ExperimentConfig) -> Modality:
    return MODALITIES[cfg.dataset.kind]


def modality_of(model: "keras.Model") -> Modality:
    """The modality whose inputs a saved model takes."""
    for modality in MODALITIES.values():
        if modality.reads(model):
            return modality
    raise ModelError(
        f"the model takes inputs of shape {tuple(model.inputs[0].shape)} and type {model.inputs[0].dtype}, "
        "neither images nor texts; pass a model a training run wrote"
    )
