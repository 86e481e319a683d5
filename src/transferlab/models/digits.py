"""The project's own small CNN base: the offline default experiment's base, pretrained on digits 0-4."""

from __future__ import annotations

import keras


def digits_cnn(
    include_top: bool = False,
    weights: str | None = None,
    input_shape: tuple[int, int, int] = (32, 32, 3),
    name: str = "digits_cnn",
) -> keras.Model:
    """A 3-block CNN (conv 32/64/128, BatchNorm, max-pool), the base of the offline default."""
    del include_top  # the base never has a classifier; the argument mirrors keras.applications
    inputs = keras.Input(shape=input_shape)
    x = inputs
    for i, filters in enumerate((32, 64, 128), start=1):
        x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"block{i}_conv")(x)
        x = keras.layers.BatchNormalization(momentum=0.9, name=f"block{i}_bn")(x)
        x = keras.layers.Activation("relu", name=f"block{i}_relu")(x)
        x = keras.layers.MaxPooling2D(name=f"block{i}_pool")(x)
    model = keras.Model(inputs, x, name=name)
    if weights is not None:
        model.load_weights(weights)
    return model
