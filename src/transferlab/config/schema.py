"""Typed config schema: the dataclasses Hydra composes `conf/` into.

The schema is registered in Hydra's ConfigStore as `transferlab_schema`, the first entry of
`conf/config.yaml`'s defaults list, so an unknown key or a value of the wrong type fails while the
config is composed, before anything is imported or trained. Range checks that a type cannot
express live in `validate`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from transferlab.config.choices import (  # noqa: F401  the schema's types, imported from here across the package
    BadFilePolicy,
    BaselineEstimator,
    DatasetKind,
    FeaturesFormat,
    FlipMode,
    HeadKind,
    HeadSolver,
    LRDecay,
    Monitor,
    MonitorMode,
    NeptuneMode,
    OptimizerName,
    Pooling,
    Precision,
    Strategy,
    TokenPooling,
)


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
    # Tokens per text for a KerasHub encoder (base_model=hub_text), at most the model's maximum.
    sequence_length: int = 128


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
    # KerasHub bases (hub_text, hub_image): a preset name, kaggle://..., hf://..., or a local directory (a
    # KerasHub preset, or for hub_text a Hugging Face model folder with config.json and weights).
    preset: Optional[str] = None
    token_pooling: TokenPooling = TokenPooling.mean
    # The weights' licence, for the model card; null reads it from a local preset's README, if any.
    license: Optional[str] = None


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

    flip: Optional[FlipMode] = None
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
    # Raise the learning rate linearly from 0 to `lr` over this fraction of the phase's steps, then
    # follow `decay` (constant, linear or cosine, down to 0 at the phase's last step). Warmup 0.1 with
    # linear decay is the usual recipe for fine-tuning a transformer encoder.
    warmup: float = 0.0
    decay: LRDecay = LRDecay.constant


@dataclass
class HeadPhaseConfig(PhaseConfig):
    # Train the head on base features computed once instead of every epoch. null: whenever no
    # augmentation is configured; true: always (phase 1 then runs without augmentation).
    cache_features: Optional[bool] = None
    # lbfgs: a linear head on cached features is a convex problem, solved to its optimum in one step
    # (L2-regularised logistic regression, its strength picked on the validation split) instead of a few
    # epochs of SGD from a random start, so fine-tuning starts from the linear probe (LP-FT); sgd: the
    # optimizer trains it for `epochs`; auto: lbfgs wherever the head is linear on cached features.
    solver: HeadSolver = HeadSolver.auto
    # Inverse L2 strengths (scikit-learn's C, on standardised features) the lbfgs solver tries; the
    # baseline's own C is always tried too, so the head never starts below the baseline on validation.
    solver_grid: list[float] = field(default_factory=lambda: [0.001, 0.01, 0.1, 1.0, 10.0])


@dataclass
class FineTuneConfig(PhaseConfig):
    # "all", an integer N (the top N layers of the base; for a transformer encoder, its top N blocks),
    # or a layer name (that layer and above).
    unfreeze: str = "all"
    # Train low-rank adapters of this rank in the encoder's attention instead of its weights (KerasHub
    # bases); null fine-tunes the unfrozen weights themselves.
    lora_rank: Optional[int] = None
    # The base's learning rate as a fraction of `lr`, which the head keeps (discriminative learning
    # rates: the pretrained features move less than the new head).
    base_lr_scale: float = 1.0


@dataclass
class ScheduleConfig:
    """Phase 1 trains the head on a frozen base; phase 2 fine-tunes the unfrozen base."""

    head: HeadPhaseConfig = field(default_factory=lambda: HeadPhaseConfig(epochs=20, lr=1e-3))
    fine_tune: FineTuneConfig = field(
        default_factory=lambda: FineTuneConfig(epochs=10, lr=1e-5, patience=5)
    )
    monitor: Monitor = Monitor.val_loss
    mode: MonitorMode = MonitorMode.auto


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
    strategy: Strategy = Strategy.default
    # Split the CPU into this many logical devices before TensorFlow starts, so `mirrored` runs
    # without GPUs (to try and test it); null leaves the devices as they are.
    logical_cpus: Optional[int] = None
    # float32, mixed_float16 (GPUs; loss scaling is automatic) or mixed_bfloat16 (TPUs, recent CPUs).
    # The output layer always computes in float32.
    precision: Precision = Precision.float32
    # Compile training and evaluation steps with XLA.
    jit_compile: bool = False


@dataclass
class NeptuneConfig:
    """A Neptune run. The API token is read from NEPTUNE_API_TOKEN only, so it never lands in config.yaml."""

    # "workspace/project"; null reads NEPTUNE_PROJECT (offline and debug runs need none).
    project: Optional[str] = None
    # offline (no network; upload later with `neptune sync`), debug (nothing kept), async or sync (a server).
    mode: NeptuneMode = NeptuneMode["offline"]
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


@dataclass
class BaselineConfig:
    """A scikit-learn classifier on the pretrained base's pooled features, fitted before any training.

    The cheapest transfer baseline: its test accuracy is reported beside the neural head's.
    """

    # logistic_regression, linear_svm, knn, or null to skip it.
    estimator: Optional[BaselineEstimator] = BaselineEstimator.logistic_regression
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


def monitor_mode(cfg: ScheduleConfig) -> str:
    """"min" or "max" for `schedule.monitor`: `auto` minimizes losses and maximizes accuracies (Keras
    3.15's own `auto` cannot tell for a metric named `accuracy`)."""
    if cfg.mode is not MonitorMode.auto:
        return cfg.mode.value
    return natural_mode(cfg.monitor)


def natural_mode(monitor: str) -> str:
    """Losses are minimized, accuracies maximized."""
    return "min" if monitor.endswith("loss") else "max"
