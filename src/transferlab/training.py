"""The recipe: config -> data -> model -> two phases -> evaluation -> outputs."""

from __future__ import annotations

import errno
import json
import logging
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from omegaconf import DictConfig

from transferlab.bases import check_alpha, check_image_size, check_preprocess, get_base_spec, resolve_weights
from transferlab.config import BaselineConfig, DatasetKind, ExperimentConfig, HeadKind, LoggerConfig, flatten, to_experiment_config
from transferlab.data import DatasetPlan, check_images, locate_dataset, plan_dataset
from transferlab.distribute import worker_role
from transferlab.errors import ConfigError, StorageError
from transferlab.reporting import RunSummary, write_json
from transferlab.repro import redact
from transferlab.run_guard import release
from transferlab.runs import prepare_run_dir, stop_on_signals
from transferlab.text import TextPlan, plan_text_data
from transferlab.vectors import check_text_base, locate_vectors

if TYPE_CHECKING:
    import keras

    from transferlab.data import SplitData
    from transferlab.distribute import Distribution
    from transferlab.features import FeatureStore
    from transferlab.models import TaskSpec
    from transferlab.vectors import Embeddings

log = logging.getLogger(__name__)

# The write errors a run can resume from once space is freed, as the message names them.
DISK_FULL = {errno.ENOSPC: "no space left", errno.EDQUOT: "disk quota exceeded", errno.EFBIG: "file too large"}


def train(cfg: ExperimentConfig | DictConfig) -> RunSummary:
    """Run one two-phase transfer-learning experiment and return its summary."""
    cfg = to_experiment_config(cfg)
    if not worker_role(cfg.trainer).chief:
        return _train_as_worker(cfg)
    return _train(cfg)


def _train_as_worker(cfg: ExperimentConfig) -> RunSummary:
    """A non-chief worker takes every step with the chief, but into a scratch folder deleted at the end,
    with no trackers and no feature cache: nothing it leaves behind could be taken for a result."""
    with tempfile.TemporaryDirectory(prefix="transferlab-worker-") as scratch:
        log.info("non-chief worker: training alongside the chief; results are kept by the chief only")
        quiet = LoggerConfig(tensorboard=False, csv=False, neptune=None, mlflow=None)
        return _train(replace(cfg, paths=replace(cfg.paths, output_dir=scratch, feature_cache=None), logger=quiet))


def _train(cfg: ExperimentConfig) -> RunSummary:
    cfg, image_size, plan, run_dir = checked_setup(cfg)
    try:
        return _train_in(cfg, plan, image_size, run_dir)
    finally:
        release(run_dir)  # a notebook's kernel outlives its runs: their folders must not stay locked


def _train_in(cfg: ExperimentConfig, plan: DatasetPlan | TextPlan, image_size, run_dir: Path) -> RunSummary:
    try:
        with stop_on_signals():
            summary = _train_and_report(cfg, plan, image_size, run_dir)
    except BaseException as exc:
        interrupted = isinstance(exc, KeyboardInterrupt)
        full = disk_full_error(exc)
        resumable = (interrupted or full is not None) and cfg.trainer.strategy != "multi_worker"
        try:
            write_json(
                {
                    "status": "interrupted" if interrupted else "failed",
                    "error": redact(f"{type(exc).__name__}: {exc}"),
                    "resume_with": f"resume={run_dir}" if resumable else None,
                },
                run_dir / "summary.json",
            )
        except Exception as second:  # the disk that failed the run may fail this too: report the first error
            log.warning("could not record the failure in %s (%s)", run_dir / "summary.json", second)
        if full is not None:
            where = f" writing {full.filename}" if full.filename else ""
            raise StorageError(
                f"{DISK_FULL[full.errno]}{where} ([Errno {full.errno}] {full.strerror}); free space and resume "
                f"with resume={run_dir}"
            ) from exc
        raise
    log.info("run finished in %s: %s", run_dir, {k: round(v, 4) for k, v in summary.metrics.items()})
    return summary


def disk_full_error(exc: BaseException) -> Optional[OSError]:
    """The OSError of a full disk (or a file past its size limit) behind `exc`, if that is what failed the run."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, OSError) and exc.errno in DISK_FULL:
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def checked_setup(
    cfg: ExperimentConfig | DictConfig,
) -> tuple[ExperimentConfig, Optional[tuple[int, int]], DatasetPlan | TextPlan, Path]:
    """Config, image size (None for text), data plan and run directory: every check that needs no TensorFlow."""
    cfg = to_experiment_config(cfg)
    if is_text(cfg):
        check_text_config(cfg)
        image_size, plan = None, plan_text(cfg)
    else:
        image_size = check_model_config(cfg)
        plan = plan_data(cfg)  # every data error surfaces here, before TensorFlow is imported
    check_baseline(cfg.baseline, plan.counts()["train"])
    return cfg, image_size, plan, prepare_run_dir(cfg)


def check_baseline(cfg: BaselineConfig, train_rows: int) -> None:
    """k nearest neighbours need k training rows; scikit-learn would say so only after extraction."""
    if cfg.estimator == "knn" and cfg.neighbors > train_rows:
        raise ConfigError(
            f"baseline.neighbors={cfg.neighbors} is more than the {train_rows} training examples; set "
            f"baseline.neighbors to at most {train_rows}, or another baseline.estimator"
        )


def is_text(cfg: ExperimentConfig) -> bool:
    return cfg.dataset.kind is DatasetKind.text


def check_text_config(cfg: ExperimentConfig) -> None:
    """Base, head and schedule settings a text run can use; the vectors file found and its size checked."""
    check_text_base(cfg.base_model)
    if cfg.schedule.head.cache_features:
        raise ConfigError(
            "schedule.head.cache_features=true is for image bases: cached token vectors lose the padding "
            "mask, and an embedding lookup costs nothing to repeat; set it to null"
        )
    locate_vectors(cfg.base_model, cfg.paths.data_dir)


def plan_text(cfg: ExperimentConfig) -> TextPlan:
    plan = plan_text_data(cfg.dataset, cfg.paths.data_dir, cfg.trainer.seed)
    log.info("dataset %s: %s, classes %s", cfg.dataset.name, plan.counts(), plan.class_names)
    return plan


def check_model_config(cfg: ExperimentConfig) -> tuple[int, int]:
    """Name, weights and input size of the base, checked without building anything."""
    if cfg.head.kind is not HeadKind.pool:
        raise ConfigError(
            f"head.kind={cfg.head.kind.value} reads token sequences of a text dataset; use head=gap or head=mlp for images"
        )
    spec = get_base_spec(cfg.base_model.name)
    check_alpha(spec, resolve_weights(spec, cfg.base_model.weights), cfg.base_model.alpha)
    check_preprocess(cfg.base_model.preprocess)
    image_size = tuple(cfg.dataset.image_size or (spec.default_size, spec.default_size))
    check_image_size(spec, image_size)
    return image_size


def plan_data(cfg: ExperimentConfig) -> DatasetPlan:
    root = locate_dataset(cfg.dataset, cfg.paths.data_dir)
    plan = plan_dataset(cfg.dataset, root, cfg.trainer.seed)
    check_images(plan, cfg.dataset.on_bad_file, Path(cfg.paths.data_dir) / "converted")
    log.info("dataset %s: %s, classes %s", cfg.dataset.name, plan.counts(), plan.class_names)
    return plan


def _train_and_report(cfg: ExperimentConfig, plan: DatasetPlan | TextPlan, image_size, run_dir: Path) -> RunSummary:
    # TensorFlow is imported here, after the config and the data have been checked.
    from transferlab.distribute import check_global_batch, start_distribution
    from transferlab.repro import seed_everything
    from transferlab.tf_runtime import import_tensorflow

    started = time.perf_counter()
    import_tensorflow()
    # First: the devices and a multi-worker strategy's collectives are fixed once TensorFlow runs anything.
    distribution = start_distribution(cfg.trainer)
    seed_everything(cfg.trainer.seed, cfg.trainer.deterministic)
    data = build_data(cfg, plan, image_size)
    check_global_batch(cfg.dataset.batch_size, distribution)
    # Everything that creates variables or compiles (the resumed model too) runs inside the scope.
    with distribution.scope():
        return _fit_and_report(cfg, data, image_size, run_dir, distribution, started)


def _fit_and_report(
    cfg: ExperimentConfig, data: "SplitData", image_size, run_dir: Path, distribution: "Distribution", started: float
) -> RunSummary:
    from transferlab.checkpoints import load_checkpoint
    from transferlab.distribute import weights_fingerprint
    from transferlab.models import build_augmentation
    from transferlab.reporting import evaluate_and_save
    from transferlab.schedule import check_unfreeze, run_schedule
    from transferlab.tracking import open_trackers

    task = task_spec(cfg, data, image_size)
    checkpoint = load_checkpoint(run_dir / "checkpoints") if cfg.resume else None
    embeddings = load_word_vectors(cfg, data)
    vector_metrics = coverage_metrics(embeddings)
    build = lambda: build_classifier(cfg, data, task, embeddings)  # noqa: E731
    if checkpoint:
        checkpoint.write_pending_best(build, run_dir / "best.keras")
    model = checkpoint.load_model(build) if checkpoint else build()
    check_unfreeze(model, cfg.schedule)
    features = feature_store(cfg, model, data)
    baseline = baseline_metrics(cfg, features, run_dir, resumed=checkpoint is not None)
    run_info = distribution.info()
    with open_trackers(cfg, run_dir) as trackers:
        trackers.log_params({**flatten(cfg), **{f"distribution.{k}": v for k, v in run_info.items()}})
        result = run_schedule(
            model, data, cfg.schedule, cfg.optimizer, task, trackers, run_dir, cfg.trainer.verbose, checkpoint,
            cache_by_default=not is_text(cfg) and build_augmentation(cfg.augmentation, 0) is None,
            jit_compile=cfg.trainer.jit_compile, features=features,
        )
        # Equal on every worker of a synchronous cluster; each logs its own, the chief also records it.
        run_info["weights_fingerprint"] = weights_fingerprint(model)
        log.info("final weights fingerprint %s (%s)", run_info["weights_fingerprint"], distribution.role.task or "single process")
        summary = evaluate_and_save(
            model, data, result, cfg, run_dir, started, trackers.run_info(), {**baseline, **vector_metrics}, run_info
        )
        trackers.log_summary(summary.to_dict())
        trackers.log_artifacts(run_dir)  # config, final model, history, summary and plots
    return summary


def build_data(cfg: ExperimentConfig, plan: DatasetPlan | TextPlan, image_size: Optional[tuple[int, int]]):
    """tf.data splits: decoded images, or texts vectorized by a TextVectorization adapted on the training split."""
    from transferlab.data import build_pipelines
    from transferlab.text import build_text_pipelines

    if isinstance(plan, TextPlan):
        return build_text_pipelines(plan, cfg.dataset, cfg.trainer.seed)
    return build_pipelines(plan, cfg.dataset, image_size, cfg.augmentation, cfg.trainer.seed)


def task_spec(cfg: ExperimentConfig, data, image_size: Optional[tuple[int, int]]):
    from transferlab.models import TaskSpec

    length = cfg.dataset.max_length if is_text(cfg) else None
    return TaskSpec(image_size, len(data.class_names), sequence_length=length)


def load_word_vectors(cfg: ExperimentConfig, data: "SplitData") -> Optional["Embeddings"]:
    """The pretrained vectors of the run's vocabulary (from the cache after the first run); None for
    images and for an embedding learned from scratch."""
    from transferlab.vectors import load_embeddings

    source = locate_vectors(cfg.base_model, cfg.paths.data_dir) if data.vectorizer is not None else None
    if source is None:
        return None
    vocabulary = data.vectorizer.get_vocabulary()
    embeddings = load_embeddings(source, cfg.base_model.dim, vocabulary, Path(cfg.paths.data_dir) / "vectors_cache")
    log.info("word vectors %s cover %d of %d vocabulary words (%.1f%%)", source, embeddings.found,
             len(vocabulary) - 2, 100 * embeddings.coverage)
    return embeddings


def coverage_metrics(embeddings: Optional["Embeddings"]) -> dict[str, float]:
    if embeddings is None:
        return {}
    return {"embeddings/coverage": embeddings.coverage, "embeddings/found": float(embeddings.found),
            "embeddings/vocabulary": float(len(embeddings.matrix))}


def build_classifier(
    cfg: ExperimentConfig, data: "SplitData", task: "TaskSpec", embeddings: Optional["Embeddings"]
) -> "keras.Model":
    """The pretrained base with a new head: an image base, or an embedding of the text vocabulary."""
    from transferlab.models import build_model, build_text_model

    if data.vectorizer is None:
        return build_model(cfg.base_model, cfg.head, task)
    vocabulary_size = len(data.vectorizer.get_vocabulary())
    return build_text_model(cfg.head, task, vocabulary_size, cfg.base_model.dim, embeddings.matrix if embeddings else None)


def feature_store(cfg: ExperimentConfig, model: "keras.Model", data: "SplitData") -> "FeatureStore":
    """Where the baseline, a cached head phase and feature export get the frozen base's features.

    Image features are kept in `paths.feature_cache` (inside `paths.data_dir` unless absolute);
    token vectors only in memory: an embedding lookup costs nothing to repeat.
    """
    from transferlab.features import FeatureStore

    folder = None
    if data.vectorizer is None and cfg.paths.feature_cache:
        folder = Path(cfg.paths.data_dir) / cfg.paths.feature_cache
    recipe = json.dumps(asdict(cfg.base_model), sort_keys=True, default=str)
    return FeatureStore(model, data, folder, recipe)


def baseline_metrics(cfg: ExperimentConfig, features: "FeatureStore", run_dir: Path, resumed: bool) -> dict[str, float]:
    """The scikit-learn baseline on the still-pretrained base, kept in baseline.json for a resumed run."""
    from transferlab.features import fit_baseline

    path = run_dir / "baseline.json"
    if resumed and path.is_file():
        return json.loads(path.read_text())
    metrics = fit_baseline(cfg.baseline, features) if cfg.baseline.estimator else {}
    write_json(metrics, path)
    return metrics


def extract_features(cfg: ExperimentConfig | DictConfig) -> dict[str, object]:
    """Feature extraction, the second use of a pretrained model: the frozen base run once over every
    split, its pooled features saved (features.npz or features.parquet), and the scikit-learn baseline
    fitted on them."""
    from transferlab.features import export_features, score_baseline
    from transferlab.repro import seed_everything
    from transferlab.tf_runtime import import_tensorflow

    cfg, image_size, plan, run_dir = checked_setup(cfg)
    try:
        import_tensorflow()
        seed_everything(cfg.trainer.seed, cfg.trainer.deterministic)
        data = build_data(cfg, plan, image_size)
        model = build_classifier(cfg, data, task_spec(cfg, data, image_size), load_word_vectors(cfg, data))
        arrays, path = export_features(feature_store(cfg, model, data), run_dir, cfg.extract.format)
        fit = cfg.baseline.estimator and "x_test" in arrays
        result = {
            "features": str(path),
            "counts": {key[2:]: len(value) for key, value in arrays.items() if key.startswith("y_")},
            # The baseline reuses the exported features: the base runs over each split once.
            "metrics": score_baseline(cfg.baseline, *(arrays[k] for k in ("x_train", "y_train", "x_test", "y_test")))
            if fit else {},
        }
        write_json(result, run_dir / "extraction.json")
        return result
    finally:
        release(run_dir)
