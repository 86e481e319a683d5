"""The modality of a run, by its dataset kind, or of a saved model, by what it takes: the one place either is decided."""

from __future__ import annotations

from typing import TYPE_CHECKING

from transferlab.config.schema import DatasetKind, ExperimentConfig
from transferlab.errors import ConfigError, ModelError
from transferlab.modalities.base import Modality
from transferlab.modalities.hub_image import HubImageModality
from transferlab.modalities.hub_text import HubTextModality
from transferlab.modalities.images import ImageModality
from transferlab.modalities.text import TextModality
from transferlab.models.hub_presets import HUB_IMAGE, HUB_TEXT

if TYPE_CHECKING:
    import keras

# A new input kind is one new module and one line here.
MODALITIES: dict[DatasetKind, Modality] = {DatasetKind.images: ImageModality(), DatasetKind.text: TextModality()}

# A base family that reads its input its own way is one module and one line here.
BASE_FAMILIES: dict[str, Modality] = {HUB_TEXT: HubTextModality(), HUB_IMAGE: HubImageModality()}


def modality_for(cfg: ExperimentConfig) -> Modality:
    family = BASE_FAMILIES.get(cfg.base_model.name)
    if family is None:
        return MODALITIES[cfg.dataset.kind]
    if family.kind is not cfg.dataset.kind:
        raise ConfigError(
            f"base_model={cfg.base_model.name} reads {family.kind.value}, but dataset {cfg.dataset.name} holds "
            f"{cfg.dataset.kind.value}; choose a base for {cfg.dataset.kind.value}"
        )
    return family


def modality_of(model: "keras.Model") -> Modality:
    """The modality whose inputs a saved model takes."""
    for modality in MODALITIES.values():
        if modality.reads(model):
            return modality
    raise ModelError(
        f"the model takes inputs of shape {tuple(model.inputs[0].shape)} and type {model.inputs[0].dtype}, "
        "neither images nor texts; pass a model a training run wrote"
    )
