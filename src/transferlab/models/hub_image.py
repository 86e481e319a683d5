"""KerasHub image backbones as a base: the preset's own image converter and backbone in one layer, pixels in.

As in a KerasHub ImageClassifier, the converter (resize, scale, offset) runs inside the model, so the
pipeline feeds raw 0..255 pixels and the saved model predicts from plain images. The backbone always
runs in inference mode: BatchNorm keeps its moving statistics (as for the keras.applications bases),
and phase 1 gives the same features cached or not.

What the encoder returns depends on the backbone: a CNN's feature map (batch, h, w, channels) goes
on to the head's pooling (`head.pooling`, as for keras.applications bases); a vision transformer's
tokens (batch, tokens, channels) become one vector here, the class token (`token_pooling=pooled`)
or the mean of all tokens (`token_pooling=mean`).
"""

from __future__ import annotations

from typing import Optional

import keras

from transferlab.config.schema import BaseModelConfig, HeadConfig, TokenPooling
from transferlab.errors import ModelError, first_line
from transferlab.models.heads import BASE_LAYER, TaskSpec, build_head
from transferlab.models.hub_presets import lora_refusal
from transferlab.models.hub_encoder import HubEncoder


@keras.saving.register_keras_serializable(package="transferlab")
class ImageEncoder(HubEncoder):
    """Raw pixels -> the backbone's feature map (CNNs) or one vector per image (transformers).

    `unfreeze=N` counts the backbone's layers: a ViT's blocks sit inside its one encoder layer, so
    there `unfreeze=1` trains them all.
    """

    INPUT_STEP = "converter"

    def __init__(self, converter, backbone, pooling: str = TokenPooling.pooled.value, lora_rank: Optional[int] = None,
                 **kwargs):
        super().__init__(converter, backbone, pooling, lora_rank, **kwargs)

    def call(self, images):
        outputs = self.backbone(self.converter(images), training=False)
        if not self.tokens:
            return outputs
        if self.pooling is TokenPooling.pooled:
            return outputs[:, 0]
        return keras.ops.mean(outputs, axis=1)

    @property
    def tokens(self) -> bool:
        """Whether the backbone gives a token sequence (transformers) rather than a feature map (CNNs)."""
        return len(self.backbone.output.shape) == 3

    def check_lora(self, rank: int) -> None:
        if not has_attention(self.backbone):
            raise lora_refusal(rank, type(self.backbone).__name__)


def has_attention(backbone: keras.Model) -> bool:
    """Whether KerasHub's `enable_lora` finds a layer to adapt (it silently adapts nothing otherwise): a weight
    whose path passes through one of its target layer names (query and value projections)."""
    targets = set(backbone.default_lora_layer_names())
    return any(targets.intersection(variable.path.split("/")[:-1]) for variable in backbone.weights)


def load_image_encoder(cfg: BaseModelConfig) -> ImageEncoder:
    """The preset's image converter and backbone, as the base layer."""
    import keras_hub

    converter = load_converter(cfg.preset)
    try:
        backbone = keras_hub.models.Backbone.from_preset(_loadable(cfg.preset))
    except Exception as exc:  # downloads, converters and deserialization raise many unrelated types
        raise ModelError(
            f"cannot load base_model.preset='{cfg.preset}' as an image backbone: {first_line(exc)}; check the "
            "handle, or point base_model.preset at a local preset directory"
        ) from None
    rank = len(backbone.output.shape)
    if rank not in (3, 4):
        raise ModelError(
            f"base_model.preset='{cfg.preset}' is a {type(backbone).__name__}, whose output of shape "
            f"{tuple(backbone.output.shape)} is neither a feature map nor tokens; use an image classifier's backbone"
        )
    if rank == 3 and cfg.token_pooling is TokenPooling.pooled and not getattr(backbone, "use_class_token", True):
        raise ModelError(
            f"base_model.preset='{cfg.preset}' is a ViT without a class token; set base_model.token_pooling=mean"
        )
    return ImageEncoder(converter, backbone, cfg.token_pooling.value, name=BASE_LAYER)


def load_converter(preset: str) -> keras.layers.Layer:
    """The preset's ImageConverter: what resizes and scales raw pixels for its backbone."""
    import keras_hub

    try:
        converter = keras_hub.layers.ImageConverter.from_preset(_loadable(preset))
    except Exception as exc:  # as for the backbone
        converter, reason = None, first_line(exc)
    else:
        reason = "it has no image converter"
    if converter is None:
        raise ModelError(
            f"cannot load the image converter of base_model.preset='{preset}': {reason}; use a KerasHub image "
            "classifier preset (one with image_converter.json)"
        ) from None
    return converter


def converter_image_size(preset: str) -> tuple[int, int]:
    """The size the preset's converter resizes to, for a remote handle whose files could not be read beforehand."""
    size = load_converter(preset).image_size
    if size is None:
        raise ModelError(f"base_model.preset='{preset}' has an image converter that does not resize; set dataset.image_size")
    return tuple(size)


def _loadable(preset: str) -> str:
    """What KerasHub's from_preset reads: a local folder's expanded path, or the handle itself."""
    from transferlab.models.hub_presets import local_folder

    folder = local_folder(preset)
    return str(folder) if folder is not None else preset


def build_hub_image_model(base_cfg: BaseModelConfig, head_cfg: HeadConfig, task: TaskSpec) -> keras.Model:
    """Raw pixels in, logits out: the encoder as the base, then the pool head."""
    images = keras.Input(shape=(*task.image_size, 3), name="image")
    encoder = load_image_encoder(base_cfg)
    outputs = build_head(encoder(images), head_cfg, task)
    return keras.Model(images, outputs, name="transferlab_hub_image")
