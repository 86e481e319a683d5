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
from transferlab.models.hub_encoder import HubEncoder


@keras.saving.register_keras_serializable(package="transferlab")
class TextEncoder(HubEncoder):
    """Strings -> one vector per text: tokenize, encode, then pool the tokens (mean over real tokens, or pooled)."""

    INPUT_STEP = "preprocessor"

    def __init__(self, preprocessor, backbone, pooling: str = TokenPooling.mean.value, lora_rank: Optional[int] = None,
                 **kwargs):
        super().__init__(preprocessor, backbone, pooling, lora_rank, **kwargs)

    def call(self, texts):
        return self.encode(self.preprocessor(texts))

    def encode(self, tokens: dict):
        """Token ids (the preprocessor's output) -> one vector per text: what an ONNX or LiteRT export runs,
        with the tokenizer outside the model."""
        outputs = self.backbone(tokens, training=False)
        if self.pooling is TokenPooling.pooled:
            return outputs["pooled_output"]
        mask = keras.ops.expand_dims(keras.ops.cast(tokens["padding_mask"], outputs["sequence_output"].dtype), -1)
        total = keras.ops.sum(outputs["sequence_output"] * mask, axis=1)
        return total / keras.ops.maximum(keras.ops.sum(mask, axis=1), 1.0)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.backbone.hidden_dim)

    @property
    def blocks(self) -> list[keras.layers.Layer]:
        """The transformer blocks: `unfreeze=N` trains the top N of them and everything above."""
        return list(getattr(self.backbone, "transformer_layers", []))


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
