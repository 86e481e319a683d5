"""Typed config schema: the dataclasses Hydra composes `conf/` into.

The schema is registered in Hydra's ConfigStore as `transferlab_schema`, the first entry of
`conf/config.yaml`'s defaults list, so an unknown key or a value of the wrong type fails while the
config is composed, before anything is imported or trained. Range checks that a type cannot
express live in `validate`.
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
import math
import os
import typing
from dataclasses import dataclass, field
from enum import Enum
from typing import Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue

from transferlab.errors import ConfigError

log = logging.getLogger(__name__)


class BadFilePolicy(str, Enum):
    fail = "fail"
    skip = "skip"


class Pooling(str, Enum):
    avg = "avg"
    max = "max"
    flatten = "flatten"


class OptimizerName(str, Enum):
    adam = "adam"
    adamw = "adamw"
    sgd = "sgd"


class DatasetKind(str, Enum):
    images = "images"
    text = "text"


class HeadKind(str, Enum):
    pool = "pool"
    bilstm = "bilstm"
    conv = "conv"


class FeaturesFormat(str, Enum):
    npz = "npz"
    parquet = "parquet"


class MonitorMode(str, Enum):
    auto = "auto"
    min = "min"
    max = "max"


@dataclass
class DatasetConfig:
    """Images: a folder `<path>/<class>/<images>`, or `train/`, `validation/`, `test/` folders of those.
    Text: a CSV, TSV or Parquet table (or a glob of them) with a text column and a label column."""

    name: str = MISSING
    kind: DatasetKind = DatasetKind.images
    path: str = MISSING
    # Archive (zip or tar) fetched and unpacked into `path` when `path` does not exist yet.
    url: Optional[str] = None
    sha256: Optional[str] = None
    # Folder inside the archive that holds the class folders.
    archive_subdir: Optional[str] = None
    # A dataset the project writes into `path` itself (see transferlab.builtin_datasets).
    builtin: Optional[str] = None
    # Class folders to use, in label order; null uses every class folder, sorted.
    classes: Optional[list[str]] = None
    # [height, width]; null uses the base model's default input size.
    image_size: Optional[list[int]] = None
    batch_size: int = 32
    # Fractions of each class held out when there is no validation/ or test/ folder.
    validation_split: float = 0.2
    test_split: float = 0.1
    # Keep only this many training images per class (few-shot studies); null keeps all.
    train_per_class: Optional[int] = None
    on_bad_file: BadFilePolicy = BadFilePolicy.fail
    # Keep decoded, resized images (or vectorized texts) in memory after the first epoch.
    cache: bool = True
    # Text tables only.
    text_column: str = "text"
    label_column: str = "label"
    # A separate test table; null holds out `test_split` of `path` (seeded, stratified).
    test_path: Optional[str] = None
    # Field separator; null picks it from the suffix (.tsv and .txt: tab, otherwise comma).
    separator: Optional[str] = None
    # Column names for tables without a header line; null reads them from the first line.
    column_names: Optional[list[str]] = None
    # Vocabulary size including the padding and out-of-vocabulary tokens, and tokens per text
    # (longer texts are cut, shorter ones padded at the end).
    vocab_size: int = 10000
    max_length: int = 100


@dataclass
class BaseModelConfig:
    """A pretrained base: a registry name plus where its weights come from."""

    name: str = MISSING
    # "default" (the base's own weight set: imagenet for keras.applications, digits_0_4 for
    # digits_cnn), a weight set the model knows by name, null for random init, or a path to a
    # weights file (.weights.h5 / .h5), a whole `.keras` model or a SavedModel directory.
    weights: Optional[str] = "default"
    # Width multiplier of the MobileNet family; null keeps the model's default.
    alpha: Optional[float] = None
    # Allow a `.keras` base with Lambda layers (runs code stored in the file).
    unsafe_deserialization: bool = False
    # Word vectors (glove, word2vec, fasttext): a text-format file (plain, .gz, or a .zip holding
    # `member`), or a URL downloaded once; `dim` is the vector size the file must have.
    path: Optional[str] = None
    url: Optional[str] = None
    sha256: Optional[str] = None
    member: Optional[str] = None
    dim: Optional[int] = None
    # What the base expects its input pixels to be: null uses the base's own preprocessing; "none"
    # (raw 0..255), "unit" (x / 255, TF Hub's convention), or a base name whose preprocess_input to use.
    preprocess: Optional[str] = None
    # SavedModel bases: the function to call ("serve" for `model.export`; TF Hub often "serving_default").
    endpoint: str = "serve"


@dataclass
class HeadConfig:
    """The new classifier on top of the base features."""

    # pool: pooling then dense layers; bilstm: a bidirectional LSTM over token vectors; conv: a 1-D
    # convolution with global max pooling over token vectors (faster than the LSTM).
    kind: HeadKind = HeadKind.pool
    # LSTM units per direction (bilstm) or filters (conv).
    units: int = 128
    kernel_size: int = 5
    pooling: Pooling = Pooling.avg
    hidden_units: list[int] = field(default_factory=list)
    activation: str = "relu"
    dropout: float = 0.2


@dataclass
class AugmentationConfig:
    """Random transforms applied to training batches only (factors as in keras.layers.Random*)."""

    flip: Optional[str] = None
    rotation: float = 0.0
    zoom: float = 0.0
    translation: float = 0.0
    contrast: float = 0.0


@dataclass
class OptimizerConfig:
    """The optimizer family; each phase sets its own learning rate in `schedule`."""

    name: OptimizerName = OptimizerName.adam
    weight_decay: Optional[float] = None
    momentum: float = 0.9
    nesterov: bool = False
    clipnorm: Optional[float] = None


@dataclass
class PhaseConfig:
    epochs: int = 10
    lr: float = 1e-3
    # Stop the phase after this many epochs without improvement of `schedule.monitor`.
    patience: Optional[int] = None


@dataclass
class HeadPhaseConfig(PhaseConfig):
    # Train the head on base features computed once instead of every epoch. null: whenever no
    # augmentation is configured; true: always (phase 1 then runs without augmentation).
    cache_features: Optional[bool] = None


@dataclass
class FineTuneConfig(PhaseConfig):
    # "all", an integer N (the top N layers of the base), or a layer name (that layer and above).
    unfreeze: str = "all"


@dataclass
class ScheduleConfig:
    """Phase 1 trains the head on a frozen base; phase 2 fine-tunes the unfrozen base."""

    head: HeadPhaseConfig = field(default_factory=lambda: HeadPhaseConfig(epochs=20, lr=1e-3))
    fine_tune: FineTuneConfig = field(
        default_factory=lambda: FineTuneConfig(epochs=10, lr=1e-5, patience=5)
    )
    monitor: str = "val_loss"  # one of MONITORS; decides early stopping and best.keras
    mode: MonitorMode = MonitorMode.auto


MONITORS = ("val_loss", "val_accuracy", "loss", "accuracy")


@dataclass
class TrainerConfig:
    seed: int = 42
    # TensorFlow op determinism: identical runs give identical results, somewhat slower.
    deterministic: bool = False
    # Keras fit verbosity: 0 silent, 1 progress bar, 2 one line per epoch.
    verbose: int = 2
    # default (one device), mirrored (every local GPU; without GPUs, the `logical_cpus` CPU devices),
    # multi_worker (one process per machine, cluster read from TF_CONFIG), or tpu (TPU_NAME, else a TPU VM).
    # dataset.batch_size stays the global batch, split across all replicas.
    strategy: str = "default"
    # Split the CPU into this many logical devices before TensorFlow starts, so `mirrored` runs
    # without GPUs (to try and test it); null leaves the devices as they are.
    logical_cpus: Optional[int] = None
    # float32, mixed_float16 (GPUs; loss scaling is automatic) or mixed_bfloat16 (TPUs, recent CPUs).
    # The output layer always computes in float32.
    precision: str = "float32"
    # Compile training and evaluation steps with XLA.
    jit_compile: bool = False


NEPTUNE_MODES = ("async", "sync", "offline", "debug")
STRATEGIES = ("default", "mirrored", "multi_worker", "tpu")
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")


@dataclass
class NeptuneConfig:
    """A Neptune run. The API token is read from NEPTUNE_API_TOKEN only, so it never lands in config.yaml."""

    # "workspace/project"; null reads NEPTUNE_PROJECT (offline and debug runs need none).
    project: Optional[str] = None
    # offline (no network; upload later with `neptune sync`), debug (nothing kept), async or sync (a server).
    mode: str = "offline"
    # Run name; null uses the experiment's `name`.
    name: Optional[str] = None
    description: str = ""
    # Added to the experiment's `tags` and the automatic ones (dataset, base model, sweep).
    tags: list[str] = field(default_factory=list)


@dataclass
class MlflowConfig:
    """An MLflow run in a tracking store that `mlflow ui` reads (needs the `mlflow` extra)."""

    # Any MLflow tracking URI; the default is a SQLite file under outputs/.
    tracking_uri: str = "sqlite:///outputs/mlflow.db"
    # MLflow experiment; null uses the experiment's `name`.
    experiment: Optional[str] = None


@dataclass
class LoggerConfig:
    """Which trackers receive parameters, per-epoch metrics, the summary and the run's files."""

    tensorboard: bool = True
    # Parameters and per-epoch metrics as CSV files in <run dir>/csv/, written as they arrive.
    csv: bool = False
    neptune: Optional[NeptuneConfig] = None
    mlflow: Optional[MlflowConfig] = None


BASELINE_ESTIMATORS = ("logistic_regression", "linear_svm", "knn")


@dataclass
class BaselineConfig:
    """A scikit-learn classifier on the pretrained base's pooled features, fitted before any training.

    The cheapest transfer baseline: its test accuracy is reported beside the neural head's.
    """

    # logistic_regression, linear_svm, knn, or null to skip it.
    estimator: Optional[str] = "logistic_regression"
    # Inverse regularisation strength (logistic_regression, linear_svm); neighbours for knn.
    C: float = 1.0
    neighbors: int = 5


@dataclass
class ExtractConfig:
    """What `scripts/extract.py` writes: the pooled base features, labels and source of every split."""

    # npz: features.npz (x_<split>, y_<split>, items_<split>, class_names); parquet: features.parquet,
    # one row per image or text (split, path or text, label, class, f0 ... f<d-1>).
    format: FeaturesFormat = FeaturesFormat.npz


@dataclass
class PathsConfig:
    # Downloads, unpacked archives and built-in datasets.
    data_dir: str = "data"
    # Where this run writes its outputs (Hydra's run directory when launched from the CLI).
    output_dir: str = MISSING
    # The frozen base's features by data and base, so reruns and sweeps extract once (inside data_dir
    # unless absolute; safe to delete; null: keep them in memory for the run only).
    feature_cache: Optional[str] = "features_cache"


@dataclass
class ExperimentConfig:
    name: str = "default"
    tags: list[str] = field(default_factory=list)
    # Summary metric returned to sweepers, e.g. "best/val_loss" or "test/accuracy".
    optimized_metric: str = "best/val_loss"
    # Continue an interrupted run: true (the newest unfinished run of this name) or its run directory.
    resume: Optional[str] = None
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    base_model: BaseModelConfig = field(default_factory=BaseModelConfig)
    head: HeadConfig = field(default_factory=HeadConfig)
    augmentation: AugmentationConfig = field(default_factory=AugmentationConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    baseline: BaselineConfig = field(default_factory=BaselineConfig)
    extract: ExtractConfig = field(default_factory=ExtractConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)


def register_configs() -> None:
    """Make the schema available to `conf/config.yaml` under the name `transferlab_schema`."""
    ConfigStore.instance().store(name="transferlab_schema", node=ExperimentConfig)


FLIP_MODES = ("horizontal", "vertical", "horizontal_and_vertical")


def to_experiment_config(cfg: DictConfig | ExperimentConfig) -> ExperimentConfig:
    """Resolve a composed config into the typed dataclass, validating ranges on the way."""
    if isinstance(cfg, ExperimentConfig):
        config = cfg
    else:
        reject_unknown_keys(cfg, ExperimentConfig)
        try:
            merged = OmegaConf.merge(OmegaConf.structured(ExperimentConfig), cfg)
            config = OmegaConf.to_object(merged)
        except MissingMandatoryValue as exc:
            raise ConfigError(f"{exc.full_key} has no value (???); set it, e.g. {exc.full_key}=<value>") from exc
        except Exception as exc:  # OmegaConf raises several unrelated types for one cause
            raise ConfigError(f"invalid config: {_first_line(exc)}") from exc
    validate(config)
    return config


def reject_unknown_keys(node: DictConfig, schema: type, prefix: str = "") -> None:
    """Keys added with `+key=value` slip past Hydra's struct check; nothing would read them, so refuse them."""
    fields = _field_types(schema)
    for key in node.keys():
        if key not in fields:
            raise ConfigError(unknown_key_message(f"{prefix}{key}"))
        if dataclasses.is_dataclass(fields[key]) and isinstance(node.get(key), DictConfig):
            reject_unknown_keys(node[key], fields[key], f"{prefix}{key}.")


def unknown_key_message(full_key: str) -> str:
    """Name the unknown key and the closest real one (or list the real ones)."""
    parent, _, leaf = full_key.rpartition(".")
    schema: Optional[type] = ExperimentConfig
    for part in filter(None, parent.split(".")):
        schema = _field_types(schema).get(part) if dataclasses.is_dataclass(schema) else None
    known = list(_field_types(schema)) if dataclasses.is_dataclass(schema) else []
    close = difflib.get_close_matches(leaf, known, n=1)
    hint = f"did you mean '{parent + '.' if parent else ''}{close[0]}'?" if close else f"known keys: {', '.join(known)}"
    return f"unknown config key '{full_key}': {hint}"


def _field_types(schema: type) -> dict[str, object]:
    """Field name to type, with the postponed (string) annotations resolved and Optional[X] read as X."""
    hints = typing.get_type_hints(schema)
    return {f.name: _unwrap_optional(hints[f.name]) for f in dataclasses.fields(schema)}


def _unwrap_optional(tp: object) -> object:
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    return args[0] if typing.get_origin(tp) is typing.Union and len(args) == 1 else tp


def flatten(cfg: ExperimentConfig) -> dict[str, object]:
    """The resolved config as dotted keys, the form trackers compare runs by."""
    flat: dict[str, object] = {}

    def walk(node: object, prefix: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, f"{prefix}{key}.")
        else:
            flat[prefix[:-1]] = node

    walk(OmegaConf.to_container(OmegaConf.structured(cfg), enum_to_str=True), "")
    return flat


def validate(cfg: ExperimentConfig) -> None:
    """Reject values no run could use, naming the key, the allowed range and the fix; warn once about
    options that the rest of the config makes ineffective."""
    _require_finite(cfg, "")
    _validate_dataset(cfg)
    _validate_base_and_head(cfg)
    _validate_optimizer_and_schedule(cfg)
    if cfg.baseline.estimator is not None:
        est = cfg.baseline.estimator
        _require(est in BASELINE_ESTIMATORS, "baseline.estimator", est, f"must be one of {', '.join(BASELINE_ESTIMATORS)} or null")
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
    from transferlab.bases import BASES

    base, head = cfg.base_model, cfg.head
    if base.dim is not None:
        _require(base.dim > 0, "base_model.dim", base.dim, "must be a positive vector size")
    if base.alpha is not None:
        _require(base.alpha > 0, "base_model.alpha", base.alpha, "must be positive")
        spec = BASES.get(base.name)
        _require(spec is None or spec.takes_alpha, "base_model.alpha", base.alpha,
                 f"has no effect: {base.name} has no width multiplier; set base_model.alpha=null")
    _require(bool(base.endpoint.strip()), "base_model.endpoint", base.endpoint, "must name a SavedModel function, e.g. serve")
    _require(0.0 <= head.dropout < 1.0, "head.dropout", head.dropout, "must be in [0, 1)")
    _require(all(u > 0 for u in head.hidden_units), "head.hidden_units", head.hidden_units, "must be positive sizes")
    _require(head.units > 0, "head.units", head.units, "must be positive")
    _require(head.kernel_size > 0, "head.kernel_size", head.kernel_size, "must be positive")
    _require(head.activation in ACTIVATIONS, "head.activation", head.activation,
             f"is not a Keras activation; use one of {', '.join(ACTIVATIONS)}")
    aug = cfg.augmentation
    if aug.flip is not None:
        _require(aug.flip in FLIP_MODES, "augmentation.flip", aug.flip, f"must be one of {', '.join(FLIP_MODES)} or null")
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
    _require(sch.monitor in MONITORS, "schedule.monitor", sch.monitor, f"must be one of {', '.join(MONITORS)}")
    if sch.mode is not MonitorMode.auto:
        natural = natural_mode(sch.monitor)
        _require(sch.mode.value == natural, "schedule.mode", sch.mode.value,
                 f"would keep the worst epoch of {sch.monitor}; use schedule.mode={natural} or auto")


def _validate_logger(cfg: ExperimentConfig) -> None:
    neptune = cfg.logger.neptune
    if neptune is not None:
        _require(neptune.mode in NEPTUNE_MODES, "logger.neptune.mode", neptune.mode, f"must be one of {', '.join(NEPTUNE_MODES)}")
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


def _plain(value: object) -> object:
    return value.value if isinstance(value, Enum) else value


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


def monitor_mode(cfg: ScheduleConfig) -> str:
    """"min" or "max" for `schedule.monitor`: `auto` minimizes losses and maximizes accuracies (Keras
    3.15's own `auto` cannot tell for a metric named `accuracy`)."""
    if cfg.mode is not MonitorMode.auto:
        return cfg.mode.value
    return natural_mode(cfg.monitor)


def natural_mode(monitor: str) -> str:
    """Losses are minimized, accuracies maximized."""
    return "min" if monitor.endswith("loss") else "max"


def _validate_trainer(cfg: ExperimentConfig) -> None:
    trainer = cfg.trainer
    _require(trainer.strategy in STRATEGIES, "trainer.strategy", trainer.strategy, f"must be one of {', '.join(STRATEGIES)}")
    _require(trainer.precision in PRECISIONS, "trainer.precision", trainer.precision, f"must be one of {', '.join(PRECISIONS)}")
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


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
