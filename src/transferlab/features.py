"""Phase 1 on cached base features: the frozen base sees each image once, not once per epoch.

While the base is frozen (and no augmentation runs), every epoch would push the same images
through the same base. Instead the model is split into an extractor (pixels -> base features) and
a head (features -> logits) that share the full model's layers and weights; the extractor runs once
over the training and validation splits, and the head trains on the stored features with the same
epoch-seeded shuffling, so it ends with the weights the uncached phase would have given.
"""

from __future__ import annotations

import functools
import logging
import time
from dataclasses import replace
from typing import Callable

import keras
import numpy as np

from transferlab.config import BaselineConfig
from transferlab.data import SplitData, shuffled_epochs
from transferlab.models import BASE_LAYER, POOL_LAYER

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
    run = _any_batch_size(extractor)
    features, labels = [], []
    for images, y in batches:
        features.append(np.asarray(run(images)))
        labels.append(np.asarray(y))
    return np.concatenate(features), np.concatenate(labels)


@functools.lru_cache(maxsize=2)
def _any_batch_size(extractor: keras.Model) -> Callable:
    """The extractor traced once for every batch size and split: `predict_on_batch` traces the whole
    base again for a last, smaller batch, which costs more than the batch itself."""
    import tensorflow as tf

    spec = tf.TensorSpec((None, *extractor.inputs[0].shape[1:]), extractor.inputs[0].dtype)
    return tf.function(lambda images: extractor(images, training=False), input_signature=[spec])


def cached_feature_data(extractor: keras.Model, data: SplitData) -> SplitData:
    """The training and validation splits as base features, shuffled per epoch like the images."""
    import tensorflow as tf

    start = time.perf_counter()
    train = tf.data.Dataset.from_tensor_slices(extract(extractor, data.train_in_order))
    validation = None
    if data.validation is not None:
        validation = tf.data.Dataset.from_tensor_slices(extract(extractor, data.validation)).batch(data.batch_size)
    log.info("cached base features of %d training images in %.1fs", len(data.plan.train), time.perf_counter() - start)
    return replace(
        data,
        train_epoch=shuffled_epochs(train, len(data.plan.train), data.batch_size, data.seed),
        train_in_order=train.batch(data.batch_size),
        validation=validation,
    )


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


def make_estimator(cfg: BaselineConfig):
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVC

    estimators = {
        "logistic_regression": lambda: LogisticRegression(C=cfg.C, max_iter=5000),
        "linear_svm": lambda: LinearSVC(C=cfg.C, max_iter=20000),
        "knn": lambda: KNeighborsClassifier(n_neighbors=cfg.neighbors),
    }
    return make_pipeline(StandardScaler(), estimators[cfg.estimator]())


def fit_baseline(cfg: BaselineConfig, model: keras.Model, data: SplitData) -> dict[str, float]:
    """Fit the configured scikit-learn classifier on the frozen base's pooled training features."""
    if data.test is None:
        return {}
    extractor, _ = split_model(model)
    (x_train, y_train), (x_test, y_test) = (extract(extractor, b) for b in (data.train_in_order, data.test))
    return score_baseline(cfg, pooled(x_train), y_train, pooled(x_test), y_test)


def score_baseline(cfg: BaselineConfig, x_train, y_train, x_test, y_test) -> dict[str, float]:
    """Train and test accuracy of the configured classifier on already pooled features."""
    start = time.perf_counter()
    estimator = make_estimator(cfg).fit(x_train, y_train)
    metrics = {
        "baseline/train_accuracy": float(estimator.score(x_train, y_train)),
        "baseline/test_accuracy": float(estimator.score(x_test, y_test)),
    }
    log.info("%s on frozen base features: test accuracy %.4f (%.1fs)", cfg.estimator,
             metrics["baseline/test_accuracy"], time.perf_counter() - start)
    return metrics


def export_features(model: keras.Model, data: SplitData, path) -> dict[str, np.ndarray]:
    """Pooled base features and labels of every split (`x_train`, `y_train`, ...), also saved as `.npz`."""
    extractor, _ = split_model(model)
    arrays = {}
    for split, batches in (("train", data.train_in_order), ("validation", data.validation), ("test", data.test)):
        if batches is None:
            continue
        features, labels = extract(extractor, batches)
        arrays[f"x_{split}"], arrays[f"y_{split}"] = pooled(features), labels
    np.savez(path, class_names=np.array(data.class_names), **arrays)
    return arrays
