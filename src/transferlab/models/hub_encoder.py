"""What the KerasHub bases share: one layer holding a preset's input step (a text preprocessor or an
image converter) and its backbone, as in a KerasHub task, so the saved model takes raw inputs.

The backbone always runs in inference mode (no dropout, BatchNorm on its moving statistics), so the
cached and uncached head phases agree. LoRA trains the adapters alone, and the rank is part of the
layer's config, because Keras saves no variable's trainable flag: a reloaded model (a checkpoint
resumed mid-phase) gets back the trainable set its saved optimizer state belongs to.
"""

from __future__ import annotations

from typing import ClassVar, Optional

import keras

from transferlab.config.schema import TokenPooling
from transferlab.models.lora import is_lora_factor


class HubEncoder(keras.layers.Layer):
    """A preset's input step and backbone as the base layer; subclasses say how its output is pooled."""

    # The constructor argument holding the input step, serialized beside the backbone.
    INPUT_STEP: ClassVar[str]

    def __init__(self, input_step, backbone, pooling: str, lora_rank: Optional[int] = None, **kwargs):
        super().__init__(**kwargs)
        setattr(self, self.INPUT_STEP, input_step)
        self.backbone = backbone
        self.pooling = TokenPooling(pooling)
        self.lora_rank: Optional[int] = None
        if lora_rank is not None:
            self.enable_lora(lora_rank)

    def build(self, input_shape) -> None:
        # The preset's backbone comes built; the input step has no weights to build.
        self.built = True

    @property
    def layers(self) -> list[keras.layers.Layer]:
        """The backbone's layers, in order: what `schedule.fine_tune.unfreeze` counts and names."""
        return self.backbone.layers

    def check_lora(self, rank: int) -> None:
        """Raise when this backbone has nothing LoRA could adapt."""

    def enable_lora(self, rank: int) -> None:
        """Train rank-`rank` adapters of the attention's query and value projections and nothing else of
        the encoder. KerasHub's `enable_lora` leaves the adapted layers' biases trainable; they are
        frozen here. A reloaded model already has its adapters and only gets the trainable flags back."""
        self.check_lora(rank)
        if not any(is_lora_factor(v) for v in self.backbone.variables):
            self.backbone.enable_lora(rank)
        self.lora_rank = rank
        self.trainable = True
        for variable in self.backbone.variables:
            variable.trainable = is_lora_factor(variable)

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            self.INPUT_STEP: keras.saving.serialize_keras_object(getattr(self, self.INPUT_STEP)),
            "backbone": keras.saving.serialize_keras_object(self.backbone),
            "pooling": self.pooling.value,
            "lora_rank": self.lora_rank,
        }

    @classmethod
    def from_config(cls, config: dict) -> "HubEncoder":
        import keras_hub  # noqa: F401  registers the input step and backbone classes

        config = dict(config)
        for key in (cls.INPUT_STEP, "backbone"):
            config[key] = keras.saving.deserialize_keras_object(config[key])
        return cls(**config)
