"""The recipe: config -> data -> model -> two phases -> evaluation -> outputs."""

from __future__ import annotations

import errno
import logging
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from omegaconf import DictConfig

from transferlab.atomic import write_json
from transferlab.config.convert import flatten, to_experiment_config
from transferlab.config.schema import ExperimentConfig, LoggerConfig
from transferlab.data.images import DatasetPlan
from transferlab.data.text import TextPlan
from transferlab.errors import StorageError
from transferlab.reporting.summary import RunSummary
from transferlab.repro import redact
from transferlab.training.distribute import worker_role
from transferlab.training.model import (
    baseline_metrics,
    build_classifier,
    build_data,
    coverage_metrics,
    feature_store,
    load_word_vectors,
    task_spec,
)
from transferlab.training.run_guard import release
from transferlab.training.runs import stop_on_signals
from transferlab.training.setup import checked_setup, is_text

if TYPE_CHECKING:

    from transferlab.data.splits import SplitData
    from transferlab.training.distribute import Distribution

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


def _train_and_report(cfg: ExperimentConfig, plan: DatasetPlan | TextPlan, image_size, run_dir: Path) -> RunSummary:
    # TensorFlow is imported here, after the config and the data have been checked.
    from transferlab.compat.tensorflow import import_tensorflow
    from transferlab.repro import seed_everything
    from transferlab.training.distribute import check_global_batch, start_distribution

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
    from transferlab.data.augmentation import build_augmentation
    from transferlab.reporting.summary import evaluate_and_save
    from transferlab.tracking.trackers import open_trackers
    from transferlab.training.checkpoints import load_checkpoint
    from transferlab.training.distribute import weights_fingerprint
    from transferlab.training.phases import check_unfreeze
    from transferlab.training.schedule import run_schedule

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
