"""The fixed choices of the config schema, as Enums: a value outside one fails while the config is composed,
with the choices and a did-you-mean (`transferlab.config.convert`). StrEnums, so they compare equal to
their strings and print as their values."""

from __future__ import annotations

from enum import StrEnum


class BadFilePolicy(StrEnum):
    fail = "fail"
    skip = "skip"


class Pooling(StrEnum):
    avg = "avg"
    max = "max"
    flatten = "flatten"


class OptimizerName(StrEnum):
    adam = "adam"
    adamw = "adamw"
    sgd = "sgd"


class DatasetKind(StrEnum):
    images = "images"
    text = "text"


class HeadKind(StrEnum):
    pool = "pool"
    bilstm = "bilstm"
    conv = "conv"


class FeaturesFormat(StrEnum):
    npz = "npz"
    parquet = "parquet"


class MonitorMode(StrEnum):
    auto = "auto"
    min = "min"
    max = "max"


class TokenPooling(StrEnum):
    """How an encoder's token vectors become one vector: the mean over real tokens, or its pooled ([CLS]) output
    (for a vision transformer, its class token)."""

    mean = "mean"
    pooled = "pooled"


class Monitor(StrEnum):
    """The metric that decides early stopping and best.keras."""

    val_loss = "val_loss"
    val_accuracy = "val_accuracy"
    loss = "loss"
    accuracy = "accuracy"


class LRDecay(StrEnum):
    """How a phase's learning rate moves after its warmup: held, or down to 0 at its last step."""

    constant = "constant"
    linear = "linear"
    cosine = "cosine"


class HeadSolver(StrEnum):
    """How phase 1 fits the head: solved to the optimum, trained by the optimizer, or solved where it can be."""

    auto = "auto"
    lbfgs = "lbfgs"
    sgd = "sgd"


class Strategy(StrEnum):
    default = "default"
    mirrored = "mirrored"
    multi_worker = "multi_worker"
    tpu = "tpu"


class Precision(StrEnum):
    float32 = "float32"
    mixed_float16 = "mixed_float16"
    mixed_bfloat16 = "mixed_bfloat16"


# `async` is a Python keyword, so the members are named by the functional API (value = name).
NeptuneMode = StrEnum("NeptuneMode", ["async", "sync", "offline", "debug"])


class BaselineEstimator(StrEnum):
    logistic_regression = "logistic_regression"
    linear_svm = "linear_svm"
    knn = "knn"


class FlipMode(StrEnum):
    horizontal = "horizontal"
    vertical = "vertical"
    horizontal_and_vertical = "horizontal_and_vertical"
