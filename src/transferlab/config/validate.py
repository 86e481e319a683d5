"""Range and consistency checks the typed schema cannot express, run once before anything heavy starts."""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from enum import Enum
from typing import Optional

from transferlab.config.schema import (
    AugmentationConfig,
    BaselineConfig,
    DatasetConfig,
    DatasetKind,
    ExperimentConfig,
    HeadConfig,
    HeadKind,
    HeadSolver,
    MonitorMode,
    OptimizerConfig,
    OptimizerName,
    PhaseConfig,
    natural_mode,
)
from transferlab.errors import ConfigError

log = logging.getLogger(__name__)


def validate(cfg: ExperimentConfig) -> None:
    """Reject values no run could use, naming the key, the allowed range and the fix; warn once about
    options that the rest of the config makes ineffective."""
    _require_finite(cfg, "")
    _validate_dataset(cfg)
    _validate_base_and_head(cfg)
    _validate_optimizer_and_schedule(cfg)
    if cfg.baseline.estimator is not None:
        _require(cfg.baseline.C > 0, "baseline.C", cfg.baseline.C, "must be positive")
        _require(cfg.baseline.neighbors > 0, "baseline.neighbors", cfg.baseline.neighbors, "must be positive")
    _validate_trainer(cfg)
    _validate_logger(cfg)
    _require(
        cfg.optimized_metric.startswith(METRIC_PREFIXES), "optimized_metric", cfg.optimized_metric,
        f"must name a summary metric starting with {', '.join(METRIC_PREFIXES)}, e.g. best/val_loss or test/accuracy",
    )
    _require(bool(cfg.paths.data_dir.strip()), "paths.data_dir", cfg.paths.data_dir, "must name a folder")
    if cfg.paths.feature_cache is not None:
        _require(bool(cfg.paths.feature_cache.strip()), "paths.feature_cache", cfg.paths.feature_cache,
                 "must name a folder, or be null to keep features in memory")
    for message in ineffective_options(cfg):
        _warn_once(message)


# Activation names keras.activations.get accepts with no extra argument (Keras 3.15; "threshold"
# needs two), listed here so validation does not import TensorFlow.
ACTIVATIONS = (
    "celu", "elu", "exponential", "gelu", "glu", "hard_shrink", "hard_sigmoid", "hard_silu", "hard_swish",
    "hard_tanh", "leaky_relu", "linear", "log_sigmoid", "log_softmax", "mish", "relu", "relu6", "selu",
    "sigmoid", "silu", "soft_shrink", "softmax", "softplus", "softsign", "sparse_plus", "sparse_sigmoid",
    "sparsemax", "squareplus", "swish", "tanh", "tanh_shrink",
)


# Larger sides are far beyond any base's training resolution and only exhaust memory.
MAX_IMAGE_SIDE = 2048


# NumPy and scikit-learn seeds are 32-bit unsigned.
MAX_SEED = 2**32 - 1


MAX_LOGICAL_CPUS = 64


VERBOSITY = (0, 1, 2)


METRIC_PREFIXES = ("best/", "final/", "test/", "baseline/")


URL_SCHEMES = ("http://", "https://", "file://")  # what transferlab.download fetches


SEPARATOR_EXAMPLES = "',', '\\t', ';' or '|'"


def _validate_dataset(cfg: ExperimentConfig) -> None:
    ds = cfg.dataset
    _require(ds.batch_size > 0, "dataset.batch_size", ds.batch_size, "must be a positive integer")
    for key, frac in (("validation_split", ds.validation_split), ("test_split", ds.test_split)):
        _require(0.0 <= frac < 1.0, f"dataset.{key}", frac, "must be in [0, 1)")
    _require(
        ds.validation_split + ds.test_split < 1.0,
        "dataset.validation_split + dataset.test_split",
        ds.validation_split + ds.test_split,
        "must leave images for training (sum below 1)",
    )
    if ds.image_size is not None:
        _require(
            len(ds.image_size) == 2 and all(1 <= s <= MAX_IMAGE_SIDE for s in ds.image_size),
            "dataset.image_size",
            ds.image_size,
            f"must be [height, width] with sides in [1, {MAX_IMAGE_SIDE}]",
        )
    if ds.train_per_class is not None:
        _require(ds.train_per_class > 0, "dataset.train_per_class", ds.train_per_class, "must be positive or null")
    if ds.classes is not None:
        names = [str(c) for c in ds.classes]
        _require(len(names) >= 2, "dataset.classes", ds.classes, "must name at least two classes, or be null for all")
        _require(all(n.strip() for n in names), "dataset.classes", ds.classes, "must not contain empty names")
        _require(len(set(names)) == len(names), "dataset.classes", ds.classes, "must not name a class twice")
    for section in ("dataset", "base_model"):
        _check_sha256(f"{section}.sha256", getattr(cfg, section).sha256)
        url = getattr(cfg, section).url
        if url is not None:
            _require(url.lower().startswith(URL_SCHEMES), f"{section}.url", url,
                     f"must start with {', '.join(URL_SCHEMES)} (or be null); for a file on disk set {section}.path")
    _require(ds.vocab_size >= 3, "dataset.vocab_size", ds.vocab_size, "must be at least 3 (padding, unknown, one word)")
    _require(ds.max_length > 0, "dataset.max_length", ds.max_length, "must be a positive number of tokens")
    _require(bool(ds.text_column.strip()), "dataset.text_column", ds.text_column, "must name a column")
    _require(bool(ds.label_column.strip()), "dataset.label_column", ds.label_column, "must name a column")
    _require(
        ds.text_column != ds.label_column, "dataset.label_column", ds.label_column,
        "must differ from dataset.text_column: a text cannot be its own label",
    )
    if ds.separator is not None:
        _require(len(separator_char(ds.separator)) == 1, "dataset.separator", ds.separator,
                 f"must be one character such as {SEPARATOR_EXAMPLES}, or null to pick it from the suffix")
    if ds.column_names is not None:
        names = [str(c) for c in ds.column_names]
        _require(len(names) >= 2 and all(n.strip() for n in names), "dataset.column_names", ds.column_names,
                 "must name at least two non-empty columns (text and label), or be null for a header line")
        _require(len(set(names)) == len(names), "dataset.column_names", ds.column_names, "must not repeat a name")
    _check_batch_memory(cfg)


def separator_char(separator: str) -> str:
    """The separator itself: a command line gives a tab as the two characters backslash and t."""
    return "\t" if separator == "\\t" else separator


def _check_sha256(key: str, value: Optional[str]) -> None:
    if value is not None:
        ok = len(value) == 64 and all(c in "0123456789abcdefABCDEF" for c in value)
        _require(ok, key, value, "must be 64 hexadecimal digits (the output of sha256sum), or null")


def _check_batch_memory(cfg: ExperimentConfig) -> None:
    """One float32 input batch (and a text run's embedding matrix) must fit in half of this machine's memory."""
    total = physical_memory()
    if total is None:
        return
    ds = cfg.dataset
    if ds.kind is DatasetKind.images:
        if ds.image_size is None:  # the base's default size, a few hundred pixels a side
            return
        height, width = ds.image_size
        needed, what = ds.batch_size * height * width * 3 * 4, "dataset.batch_size * height * width * 3 * 4 bytes"
        fix = "lower dataset.batch_size or dataset.image_size"
    else:
        dim = cfg.base_model.dim or 1
        needed = (ds.batch_size * ds.max_length + ds.vocab_size) * dim * 4
        what = "(dataset.batch_size * dataset.max_length + dataset.vocab_size) * base_model.dim * 4 bytes"
        fix = "lower dataset.batch_size, dataset.max_length or dataset.vocab_size"
    if needed > total / 2:
        raise ConfigError(
            f"one input batch needs {needed / 2**30:.1f} GiB ({what}), more than half of this machine's "
            f"{total / 2**30:.1f} GiB; {fix}"
        )


def physical_memory() -> Optional[int]:
    """Bytes of RAM, or None where the platform does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def _validate_base_and_head(cfg: ExperimentConfig) -> None:
    from transferlab.models.bases import BASES

    base, head = cfg.base_model, cfg.head
    if base.dim is not None:
        _require(base.dim > 0, "base_model.dim", base.dim, "must be a positive vector size")
    if base.alpha is not None:
        _require(base.alpha > 0, "base_model.alpha", base.alpha, "must be positive")
        spec = BASES.get(base.name)
        _require(spec is None or spec.takes_alpha, "base_model.alpha", base.alpha,
                 f"has no effect: {base.name} has no width multiplier; set base_model.alpha=null")
    if base.preset is not None:
        _require(bool(base.preset.strip()), "base_model.preset", base.preset,
                 "must name a KerasHub preset, kaggle://..., hf://... or a local model directory")
    _require(cfg.dataset.sequence_length >= 2, "dataset.sequence_length", cfg.dataset.sequence_length,
             "must be at least 2 (the start and end tokens)")
    if cfg.schedule.fine_tune.lora_rank is not None:
        _require(cfg.schedule.fine_tune.lora_rank > 0, "schedule.fine_tune.lora_rank", cfg.schedule.fine_tune.lora_rank,
                 "must be a positive rank (4 to 16 is usual), or null to fine-tune the weights themselves")
    _require(bool(base.endpoint.strip()), "base_model.endpoint", base.endpoint, "must name a SavedModel function, e.g. serve")
    _require(0.0 <= head.dropout < 1.0, "head.dropout", head.dropout, "must be in [0, 1)")
    _require(all(u > 0 for u in head.hidden_units), "head.hidden_units", head.hidden_units, "must be positive sizes")
    _require(head.units > 0, "head.units", head.units, "must be positive")
    _require(head.kernel_size > 0, "head.kernel_size", head.kernel_size, "must be positive")
    _require(head.activation in ACTIVATIONS, "head.activation", head.activation,
             f"is not a Keras activation; use one of {', '.join(ACTIVATIONS)}")
    aug = cfg.augmentation
    # keras.layers.RandomRotation, RandomTranslation and RandomContrast take factors up to 1; a zoom
    # of 1 would shrink the image to nothing.
    for key in ("rotation", "translation", "contrast"):
        value = getattr(aug, key)
        _require(0.0 <= value <= 1.0, f"augmentation.{key}", value, "must be a factor in [0, 1]")
    _require(0.0 <= aug.zoom < 1.0, "augmentation.zoom", aug.zoom, "must be a factor in [0, 1)")


def _validate_optimizer_and_schedule(cfg: ExperimentConfig) -> None:
    opt, sch = cfg.optimizer, cfg.schedule
    _require(0.0 <= opt.momentum < 1.0, "optimizer.momentum", opt.momentum, "must be in [0, 1)")
    if opt.weight_decay is not None:
        _require(opt.weight_decay >= 0, "optimizer.weight_decay", opt.weight_decay, "must be >= 0 or null")
    if opt.clipnorm is not None:
        _require(opt.clipnorm > 0, "optimizer.clipnorm", opt.clipnorm, "must be > 0, or null for no clipping")
    for phase_name in ("head", "fine_tune"):
        phase: PhaseConfig = getattr(sch, phase_name)
        _require(phase.epochs >= 0, f"schedule.{phase_name}.epochs", phase.epochs, "must be >= 0 (0 skips the phase)")
        _require(phase.lr > 0, f"schedule.{phase_name}.lr", phase.lr, "must be a positive learning rate")
        if phase.patience is not None:
            _require(phase.patience >= 0, f"schedule.{phase_name}.patience", phase.patience, "must be >= 0 or null")
        _require(0.0 <= phase.warmup < 1.0, f"schedule.{phase_name}.warmup", phase.warmup,
                 "must be a fraction of the phase's steps in [0, 1) (0.1 is usual)")
    _require(bool(sch.head.solver_grid) and all(math.isfinite(c) and c > 0 for c in sch.head.solver_grid),
             "schedule.head.solver_grid", sch.head.solver_grid, "must be a non-empty list of positive C values, e.g. [0.01,0.1,1.0]")
    _require(0 < sch.fine_tune.base_lr_scale <= 1,
             "schedule.fine_tune.base_lr_scale", sch.fine_tune.base_lr_scale,
             "must be in (0, 1]: the base's learning rate as a fraction of the head's (0.1 is usual, 1 the same)")
    if sch.head.solver is HeadSolver.lbfgs:
        _require(cfg.head.kind is HeadKind.pool and not cfg.head.hidden_units, "schedule.head.solver", "lbfgs",
                 "solves a linear head only (head=gap: head.kind=pool, head.hidden_units=[]); "
                 "use schedule.head.solver=sgd for this head")
        _require(sch.head.cache_features is not False, "schedule.head.solver", "lbfgs",
                 "solves the head on cached base features; set schedule.head.cache_features=null or true, "
                 "or use schedule.head.solver=sgd")
    _require(
        sch.head.epochs + sch.fine_tune.epochs > 0,
        "schedule.head.epochs + schedule.fine_tune.epochs",
        0,
        "must be positive: at least one phase has to train",
    )
    unfreeze = sch.fine_tune.unfreeze.strip()
    _require(bool(unfreeze), "schedule.fine_tune.unfreeze", sch.fine_tune.unfreeze,
             "must be all, a number of top layers, or a layer name")
    if unfreeze.lstrip("+-").isdigit():
        _require(int(unfreeze) >= 1, "schedule.fine_tune.unfreeze", sch.fine_tune.unfreeze,
                 "must be a positive number of top layers (or all, or a layer name)")
    if sch.mode is not MonitorMode.auto:
        natural = natural_mode(sch.monitor)
        _require(sch.mode.value == natural, "schedule.mode", sch.mode.value,
                 f"would keep the worst epoch of {sch.monitor}; use schedule.mode={natural} or auto")


def _validate_logger(cfg: ExperimentConfig) -> None:
    neptune = cfg.logger.neptune
    if neptune is not None:
        if neptune.project is not None:
            parts = neptune.project.split("/")
            _require(len(parts) == 2 and all(p.strip() for p in parts), "logger.neptune.project", neptune.project,
                     "must be workspace/project, or null to read NEPTUNE_PROJECT")
    if cfg.logger.mlflow is not None:
        _require(bool(cfg.logger.mlflow.tracking_uri.strip()), "logger.mlflow.tracking_uri",
                 cfg.logger.mlflow.tracking_uri, "must be an MLflow tracking URI, e.g. sqlite:///outputs/mlflow.db")


def ineffective_options(cfg: ExperimentConfig) -> list[str]:
    """Options changed from their schema default that this combination never reads (a warning each,
    not an error: presets and sweeps combine groups that legitimately leave some unused)."""
    ds, base, head = cfg.dataset, cfg.base_model, cfg.head
    ignored: list[tuple[str, object, str]] = []

    def unused(key: str, value: object, default: object, why: str) -> None:
        if value != default:
            ignored.append((key, value, why))

    defaults = DatasetConfig()
    if ds.kind is DatasetKind.text:
        why = "images only; this is a text dataset"
        unused("dataset.image_size", ds.image_size, None, why)
        for key in ("flip", "rotation", "zoom", "translation", "contrast"):
            unused(f"augmentation.{key}", getattr(cfg.augmentation, key), getattr(AugmentationConfig(), key), why)
        unused("base_model.alpha", base.alpha, None, why)
        unused("base_model.preprocess", base.preprocess, None, why)
        if base.weights not in (None, "default", "imagenet"):
            ignored.append(("base_model.weights", base.weights, "image bases only; word vectors come from base_model.path"))
    else:
        why = "text tables only; this is an image dataset"
        for key in ("text_column", "label_column", "test_path", "separator", "column_names", "vocab_size", "max_length"):
            unused(f"dataset.{key}", getattr(ds, key), getattr(defaults, key), why)
        for key in ("path", "url", "member", "dim"):
            unused(f"base_model.{key}", getattr(base, key), None, "word vectors only; this is an image dataset")
    if head.kind is HeadKind.pool:
        unused("head.units", head.units, HeadConfig.units, "bilstm and conv heads only")
    else:
        unused("head.pooling", head.pooling, HeadConfig.pooling, f"the pool head only, not head.kind={head.kind.value}")
    if head.kind is not HeadKind.conv:
        unused("head.kernel_size", head.kernel_size, HeadConfig.kernel_size, "the conv head only")
        if not head.hidden_units:
            unused("head.activation", head.activation, HeadConfig.activation, "used by head.hidden_units, which is empty")
    if cfg.optimizer.name is not OptimizerName.sgd:
        sgd_only = f"optimizer.name=sgd only; {cfg.optimizer.name.value} keeps its own moment estimates"
        unused("optimizer.momentum", cfg.optimizer.momentum, OptimizerConfig.momentum, sgd_only)
        unused("optimizer.nesterov", cfg.optimizer.nesterov, False, sgd_only)
    if cfg.trainer.logical_cpus is not None and cfg.trainer.strategy != "mirrored":
        ignored.append(("trainer.logical_cpus", cfg.trainer.logical_cpus, "trainer.strategy=mirrored only (its replicas on a CPU)"))
    if cfg.baseline.estimator == "knn":
        unused("baseline.C", cfg.baseline.C, BaselineConfig.C, "logistic_regression and linear_svm only")
    elif cfg.baseline.estimator is not None:
        unused("baseline.neighbors", cfg.baseline.neighbors, BaselineConfig.neighbors, "baseline.estimator=knn only")
    return [f"{key}={_plain(value)!r} has no effect: {why}" for key, value, why in ignored]


_warned: set[str] = set()


def _warn_once(message: str) -> None:
    """validate runs more than once per run (CLI, train, checked_setup); say each thing once per process."""
    if message not in _warned:
        _warned.add(message)
        log.warning(message)


def _require_finite(node: object, prefix: str) -> None:
    """nan passes no range check by accident, but inf passes `> 0`: refuse both everywhere."""
    for f in dataclasses.fields(node):
        value = getattr(node, f.name)
        if dataclasses.is_dataclass(value):
            _require_finite(value, f"{prefix}{f.name}.")
        elif isinstance(value, float) and not math.isfinite(value):
            _require(False, f"{prefix}{f.name}", value, "must be a finite number")


def _validate_trainer(cfg: ExperimentConfig) -> None:
    trainer = cfg.trainer
    _require(0 <= trainer.seed <= MAX_SEED, "trainer.seed", trainer.seed, f"must be in [0, {MAX_SEED}] (2**32-1)")
    _require(trainer.verbose in VERBOSITY, "trainer.verbose", trainer.verbose,
             "must be 0 (silent), 1 (progress bar) or 2 (a line per epoch)")
    if trainer.logical_cpus is not None:
        _require(trainer.logical_cpus > 0, "trainer.logical_cpus", trainer.logical_cpus, "must be positive or null")
        _require(trainer.logical_cpus <= MAX_LOGICAL_CPUS, "trainer.logical_cpus", trainer.logical_cpus,
                 f"must be at most {MAX_LOGICAL_CPUS} (one replica per logical CPU), or null")
    # A resumed worker would need the chief's checkpoint; the workers' scratch folders are gone by then.
    _require(
        not (cfg.resume and trainer.strategy == "multi_worker"), "resume", cfg.resume,
        "is not supported with trainer.strategy=multi_worker; start a new run",
    )


def _require(ok: bool, key: str, value: object, rule: str) -> None:
    if not ok:
        raise ConfigError(f"{key}={value!r} {rule}; fix it in the config or on the command line")


def _plain(value: object) -> object:
    return value.value if isinstance(value, Enum) else value
