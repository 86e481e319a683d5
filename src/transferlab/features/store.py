"""Phase 1 on cached base features: the frozen base sees each image once, not once per epoch.

While the base is frozen (and no augmentation runs), every epoch would push the same images
through the same base. Instead the model is split into an extractor (pixels -> base features) and
a head (features -> logits) that share the full model's layers and weights; the extractor runs once
over the training and validation splits, and the head trains on the stored features with the same
epoch-seeded shuffling, so it ends with the weights the uncached phase would have given.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import keras
import numpy as np

from transferlab.atomic import write_arrays
from transferlab.data.splits import SplitData, shuffled_epochs, without_autotune
from transferlab.models.heads import BASE_LAYER, POOL_LAYER
from transferlab.models.saved import base_digest, inference_function

if TYPE_CHECKING:
    from transferlab.config.schema import BaseModelConfig

log = logging.getLogger(__name__)


def split_model(model: keras.Model) -> tuple[keras.Model, keras.Model]:
    """(pixels -> pooled base features, pooled features -> logits), both built from the model's own layers.

    The head's pooling layer, when it follows the base directly, goes to the extractor: it has no
    weights, so the head trains the same, while the stored features are the pooled vectors (for
    MobileNetV2 at 128x128, 16 times smaller than the 4x4 feature maps) instead of the maps.
    """
    layers = model.layers
    base_index = next(i for i, layer in enumerate(layers) if layer.name == BASE_LAYER)
    x = model.inputs[0]
    for layer in layers[1:base_index]:
        x = layer(x)
    features = layers[base_index](x, training=False)
    head_start = base_index + 1
    if head_start < len(layers) and layers[head_start].name == POOL_LAYER:
        features = layers[head_start](features)
        head_start += 1
    extractor = keras.Model(model.inputs[0], features, name="extractor")
    head_input = keras.Input(shape=features.shape[1:], name="features")
    y = head_input
    for layer in layers[head_start:]:
        y = layer(y)
    head = keras.Model(head_input, y, name="head")
    # Both run briefly (one pass; a few small epochs): compiling them with XLA costs more than it saves.
    extractor.jit_compile = head.jit_compile = False
    return extractor, head


def extract(extractor: keras.Model, batches) -> tuple[np.ndarray, np.ndarray]:
    """Run the extractor over labelled batches once; features and labels in dataset order."""
    run = inference_function(extractor)
    features, labels = [], []
    for images, y in batches:
        features.append(np.asarray(run(images)))
        labels.append(np.asarray(y))
    return np.concatenate(features), np.concatenate(labels)


def cached_feature_data(store: "FeatureStore", data: SplitData) -> SplitData:
    """The training and validation splits as base features, shuffled per epoch like the images."""
    import tensorflow as tf

    train = without_autotune(tf.data.Dataset.from_tensor_slices(store.get("train")))
    validation = None
    if data.validation is not None:
        validation = without_autotune(tf.data.Dataset.from_tensor_slices(store.get("validation"))).batch(data.batch_size)
    return replace(
        data,
        train_epoch=shuffled_epochs(train, len(data.plan.train), data.batch_size, data.seed),
        train_in_order=train.batch(data.batch_size),
        validation=validation,
    )


class FeatureStore:
    """The frozen base's features of each split, extracted at most once per run, and with a cache
    folder at most once per data and base.

    The baseline, the cached head phase and feature export all read from here, so a run pushes each
    image through the base once. In the folder the features are kept by everything that decides
    them: the base's weights digest and config (`recipe`), the extractor's input and output shapes,
    the precision policy, and every file's path, label, size and modification time. A rerun, or a
    sweep over head settings, then extracts nothing after its first job; a changed file or base
    makes a new entry. The folder only ever saves time: unreadable entries are extracted again,
    and a write that fails is logged, never fatal.
    """

    def __init__(self, model: keras.Model, data: SplitData, folder: Optional[Path] = None, recipe: str = ""):
        self.model, self.data, self.folder, self.recipe = model, data, folder, recipe
        self._features: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    @functools.cached_property
    def extractor(self) -> keras.Model:
        return split_model(self.model)[0]

    def batches(self, split: str):
        return {"train": self.data.train_in_order, "validation": self.data.validation, "test": self.data.test}[split]

    def get(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """Features and labels of `train`, `validation` or `test`, in dataset order."""
        if split not in self._features:
            path = self._entry(split)
            stored = self._read(path, split) if path is not None else None
            if stored is None:
                stored = self._extract(split)
                if path is not None:
                    self._write(path, stored)
            self._features[split] = stored
        return self._features[split]

    def _extract(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        start = time.perf_counter()
        features, labels = extract(self.extractor, self.batches(split))
        log.info("extracted base features of %d %s examples in %.1fs", len(labels), split, time.perf_counter() - start)
        return features, labels

    def _entry(self, split: str) -> Optional[Path]:
        """The folder's file for this split under the current base and files; None without a folder."""
        if self.folder is None:
            return None
        digest = hashlib.sha256(self._base_key.encode())
        for key in self.data.plan.example_keys(split):
            digest.update(f"{key}\n".encode())
        return self.folder / f"{split}-{digest.hexdigest()[:24]}.npz"

    @functools.cached_property
    def _base_key(self) -> str:
        extractor = self.extractor
        return "\n".join([
            self.recipe, base_digest(self.model), str(extractor.inputs[0].shape), str(extractor.outputs[0].shape),
            keras.mixed_precision.global_policy().name, keras.__version__,
        ])

    def _read(self, path: Path, split: str) -> Optional[tuple[np.ndarray, np.ndarray]]:
        if not path.is_file():
            return None
        try:
            with np.load(path) as stored:
                features, labels = stored["features"], stored["labels"]
        except (OSError, ValueError, KeyError, EOFError) as exc:
            log.warning("cached features %s are unreadable (%s); extracting them again", path, exc)
            return None
        if len(features) != len(getattr(self.data.plan, split)):
            log.warning("cached features %s do not match the %s split; extracting them again", path, split)
            return None
        log.info("base features of %d %s images from the cache %s", len(labels), split, path)
        return features, labels

    def _write(self, path: Path, stored: tuple[np.ndarray, np.ndarray]) -> None:
        try:
            write_arrays(path, features=stored[0], labels=stored[1])
        except OSError as exc:
            log.warning("could not keep the base features in %s (%s); this run is not affected", path.parent, exc)


def feature_store(model: keras.Model, data: SplitData, folder: Optional[Path], base: "BaseModelConfig") -> FeatureStore:
    """The run's store, where the baseline, a cached head phase and feature export get the frozen base's
    features; folder entries are also keyed by the base's whole config."""
    return FeatureStore(model, data, folder, json.dumps(asdict(base), sort_keys=True, default=str))


def pooled(features: np.ndarray) -> np.ndarray:
    """Global average pooling of feature maps; the mean word vector of token sequences; vectors pass through.

    Token sequences average only the tokens with a vector: padding, unknown and uncovered words
    are zero rows of the embedding and would otherwise shrink the mean of short texts.
    """
    if features.ndim == 4:
        return features.mean(axis=(1, 2))
    if features.ndim == 3:
        present = np.any(features != 0, axis=2).sum(axis=1, keepdims=True)
        return features.sum(axis=1) / np.maximum(present, 1)
    return features.reshape(len(features), -1)
