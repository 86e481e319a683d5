"""KerasHub text encoders as a base: the preset's own preprocessor and backbone in one layer, strings in.

As in a KerasHub task, the classifier is backbone + preprocessor + head; here the preprocessor
lives inside the base layer, so training, prediction and the saved model all take raw strings.
The encoder always runs in inference mode (no dropout): phase 1 then gives the same features
cached or not, and a small dataset fine-tunes more steadily with the head's dropout alone.
"""

from __future__ import annotations

from typing import Optional

import keras

from transferlab.config.schema import BaseModelConfig, HeadConfig, TokenPooling
from transferlab.errors import ModelError, first_line
from transferlab.models.heads import BASE_LAYER, TaskSpec, build_head
from transferlab.models.lora import is_lora_factor


@keras.saving.register_keras_serializable(package="transferlab")
class TextEncoder(keras.layers.Layer):
    """Strings -> one vector per text: tokenize, encode, then pool the tokens (mean over real tokens, or pooled)."""

    def __init__(
        self, preprocessor, backbone, pooling: str = TokenPooling.mean.value, lora_rank: Optional[int] = None, **kwargs
    ):
        super().__init__(**kwargs)
        self.preprocessor = preprocessor
        self.backbone = backbone
        self.pooling = TokenPooling(pooling)
        self.lora_rank: Optional[int] = None
        if lora_rank is not None:
            self.enable_lora(lora_rank)

    def build(self, input_shape) -> None:
        # The preset's backbone comes built; the preprocessor has no weights to build.
        self.built = True

    def call(self, texts):
        tokens = self.preprocessor(texts)
        outputs = self.backbone(tokens, training=False)
        if self.pooling is TokenPooling.pooled:
            return outputs["pooled_output"]
        mask = keras.ops.expand_dims(keras.ops.cast(tokens["padding_mask"], outputs["sequence_output"].dtype), -1)
        total = keras.ops.sum(outputs["sequence_output"] * mask, axis=1)
        return total / keras.ops.maximum(keras.ops.sum(mask, axis=1), 1.0)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.backbone.hidden_dim)

    @property
    def layers(self) -> list[keras.layers.Layer]:
        """The backbone's layers, in order: what `schedule.fine_tune.unfreeze` counts and names."""
        return self.backbone.layers

    @property
    def blocks(self) -> list[keras.layers.Layer]:
        """The transformer blocks: `unfreeze=N` trains the top N of them and everything above."""
        return list(getattr(self.backbone, "transformer_layers", []))

    def enable_lora(self, rank: int) -> None:
        """Train rank-`rank` adapters of the attention projections and nothing else of the encoder.

        KerasHub's `enable_lora` leaves the adapted layers' biases trainable; they are frozen here, so
        the encoder's trainable weights are the LoRA factors alone. The rank is part of this layer's
        config because Keras saves no variable's trainable flag: a reloaded model (a checkpoint
        resumed mid-phase) already has its adapters and gets the same trainable set back, which its
        saved optimizer state belongs to.
        """
        if not any(is_lora_factor(v) for v in self.backbone.variables):
            self.backbone.enable_lora(rank)
        self.lora_rank = rank
        self.trainable = True
        for variable in self.backbone.variables:
            variable.trainable = is_lora_factor(variable)

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "preprocessor": keras.saving.serialize_keras_object(self.preprocessor),
            "backbone": keras.saving.serialize_keras_object(self.backbone),
            "pooling": self.pooling.value,
            "lora_rank": self.lora_rank,
        }

    @classmethod
    def from_config(cls, config: dict) -> "TextEncoder":
        import keras_hub  # noqa: F401  registers the preprocessor and backbone classes

        config = dict(config)
        for key in ("preprocessor", "backbone"):
            config[key] = keras.saving.deserialize_keras_object(config[key])
        return cls(**config)


def load_text_encoder(cfg: BaseModelConfig, sequence_length: int) -> TextEncoder:
    """The preset's preprocessor (cut or padded to `sequence_length` tokens) and backbone, as the base layer."""
    import keras_hub

    from transferlab.models.hub_presets import local_folder

    folder = local_folder(cfg.preset)
    handle = str(folder) if folder is not None else cfg.preset
    try:
        preprocessor = keras_hub.models.TextClassifierPreprocessor.from_preset(handle, sequence_length=sequence_length)
        backbone = keras_hub.models.Backbone.from_preset(handle)
    except Exception as exc:  # downloads, converters and deserialization raise many unrelated types
        raise ModelError(
            f"cannot load base_model.preset='{cfg.preset}' as a text encoder: {first_line(exc)}; check the handle, "
            "or point base_model.preset at a local preset directory"
        ) from None
    return TextEncoder(preprocessor, backbone, cfg.token_pooling.value, name=BASE_LAYER)


def build_hub_text_model(base_cfg: BaseModelConfig, head_cfg: HeadConfig, task: TaskSpec) -> keras.Model:
    """Strings in, logits out: the encoder as the base, then the pool head's dense layers."""
    texts = keras.Input(shape=(), dtype="string", name="text")
    encoder = load_text_encoder(base_cfg, task.sequence_length)
    outputs = build_head(encoder(texts), head_cfg, task)
    return keras.Model(texts, outputs, name="transferlab_hub_text")
