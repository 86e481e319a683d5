"""Training-only augmentation, run in the tf.data pipeline (never part of the exported model)."""

from __future__ import annotations

import keras

from transferlab.config.schema import AugmentationConfig


def build_augmentation(cfg: AugmentationConfig, seed: int) -> keras.Sequential | None:
    """Keras preprocessing layers for training batches; None when every factor is off."""
    layers = []
    if cfg.flip:
        layers.append(keras.layers.RandomFlip(str(cfg.flip), seed=seed))
    if cfg.rotation:
        layers.append(keras.layers.RandomRotation(cfg.rotation, seed=seed + 1))
    if cfg.zoom:
        layers.append(keras.layers.RandomZoom(cfg.zoom, seed=seed + 2))
    if cfg.translation:
        layers.append(keras.layers.RandomTranslation(cfg.translation, cfg.translation, seed=seed + 3))
    if cfg.contrast:
        layers.append(keras.layers.RandomContrast(cfg.contrast, seed=seed + 4))
    return keras.Sequential(layers, name="augmentation") if layers else None
