"""The new classification head and the task it answers (classes, input size); layer names other code finds the parts by."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import keras

from transferlab.config.schema import HeadConfig, HeadKind, Pooling

BASE_LAYER = "base"

OUTPUT_LAYER = "head_output"

POOL_LAYER = "head_pool"


@dataclass(frozen=True)
class TaskSpec:
    """What the data tells the model: input size (pixels, or tokens per text) and number of classes."""

    image_size: Optional[tuple[int, int]]
    num_classes: int
    sequence_length: Optional[int] = None

    @property
    def binary(self) -> bool:
        return self.num_classes == 2

    @property
    def output_units(self) -> int:
        # One logit for two classes, as in the Keras guide; one per class otherwise.
        return 1 if self.binary else self.num_classes


def build_head(features, cfg: HeadConfig, task: TaskSpec):
    """Pool (or read the token sequence), optional hidden layers, dropout, then logits (kept float32
    for mixed precision)."""
    x = features
    if cfg.kind is HeadKind.bilstm:
        x = keras.layers.Bidirectional(keras.layers.LSTM(cfg.units), name="head_bilstm")(x)
    elif cfg.kind is HeadKind.conv:
        x = keras.layers.Conv1D(cfg.units, cfg.kernel_size, padding="same", activation=cfg.activation, name="head_conv")(x)
        x = keras.layers.GlobalMaxPooling1D(name=POOL_LAYER)(x)
    elif len(x.shape) in (3, 4):
        x = _pooling(cfg.pooling, spatial=len(x.shape) == 4)(name=POOL_LAYER)(x)
    for i, units in enumerate(cfg.hidden_units):
        x = keras.layers.Dense(units, activation=cfg.activation, name=f"head_dense_{i}")(x)
        if cfg.dropout > 0:
            x = keras.layers.Dropout(cfg.dropout, name=f"head_dropout_{i}")(x)
    if cfg.dropout > 0:
        x = keras.layers.Dropout(cfg.dropout, name="head_dropout")(x)
    return keras.layers.Dense(task.output_units, dtype="float32", name=OUTPUT_LAYER)(x)


def _pooling(pooling: Pooling, spatial: bool) -> type[keras.layers.Layer]:
    """Pooling over image positions (spatial) or over tokens, where the average skips padding."""
    if pooling is Pooling.flatten:
        return keras.layers.Flatten
    if spatial:
        return keras.layers.GlobalAveragePooling2D if pooling is Pooling.avg else keras.layers.GlobalMaxPooling2D
    return keras.layers.GlobalAveragePooling1D if pooling is Pooling.avg else keras.layers.GlobalMaxPooling1D
