"""The recipe: config -> data -> model -> two phases -> evaluation -> outputs.

`train` reads like the Keras transfer-learning guide: each step is one call, and none of them asks
which kind of input the run has (the modality answers that, see `transferlab.modalities`).
"""

from __future__ import annotations

import errno
import logging
import tempfile
import time
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Iterator, Optional

from omegaconf import DictConfig

from transferlab.atomic import write_json
from transferlab.config.convert import flatten, to_experiment_config
from transferlab.config.schema import ExperimentConfig, LoggerConfig
from transferlab.errors import StorageError
from transferlab.reporting.summary import RunSummary
from transferlab.repro import redact
from transferlab.training.distribute import Distribution, worker_role
from transferlab.training.run_guard import release
from transferlab.training.runs import stop_on_signals
from transferlab.training.setup import Setup, checked_setup

log = logging.getLogger(__name__)


# The write errors a run can resume from once space is freed, as the message names them.
DISK_FULL = {errno.ENOSPC: "no space left", errno.EDQUOT: "disk quota exceeded", errno.EFBIG: "file too large"}


def train(cfg: ExperimentConfig | DictConfig) -> RunSummary:
    """Run one two-phase transfer-learning experiment and return its summary."""
    cfg = to_experiment_config(cfg)  # typed and validated, once
    if not worker_role(cfg.trainer).chief:
        return _train_as_worker(cfg)
    return train_checked(cfg)


def train_checked(cfg: ExperimentConfig) -> RunSummary:
    setup = checked_setup(cfg)  # settings, data and run folder checked before TensorFlow starts
    try:
        with failure_recorded(cfg, setup.run_dir), stop_on_signals():
            started = time.perf_counter()
            distribution = start_tensorflow(cfg)
            summary = run_experiment(cfg, setup, distribution, started)
    finally:
        release(setup.run_dir)  # a notebook's kernel outlives its runs: their folders must not stay locked
    log.info("run finished in %s: %s", setup.run_dir, {k: round(v, 4) for k, v in summary.metrics.items()})
    return summary


def run_experiment(cfg: ExperimentConfig, setup: Setup, distribution: Distribution, started: float) -> RunSummary:
    """The steps that need TensorFlow: data, model, baseline, the two phases, evaluation and outputs."""
    from transferlab.features.baseline import baseline_metrics
    from transferlab.features.store import feature_store
    from transferlab.reporting.summary import evaluate_and_save
    from transferlab.tracking.trackers import open_trackers
    from transferlab.training.checkpoints import load_checkpoint
    from transferlab.training.distribute import check_global_batch, weights_fingerprint
    from transferlab.training.phases import check_unfreeze
    from transferlab.training.schedule import ScheduleRun, run_schedule

    modality, run_dir = setup.modality, setup.run_dir
    data = modality.pipelines(cfg, setup.plan)  # train/validation/test batches, seeded per epoch
    check_global_batch(cfg.dataset.batch_size, distribution)
    # Everything that creates variables or compiles (the resumed model too) runs inside the scope.
    with distribution.scope():
        checkpoint = load_checkpoint(run_dir / "checkpoints") if cfg.resume else None
        classifier = modality.classifier(cfg, data)
        # The pretrained base with a new head; a resumed run continues the checkpoint's.
        model = checkpoint.resumed_model(classifier.build, run_dir / "best.keras") if checkpoint else classifier.build()
        check_unfreeze(model, cfg.schedule)
        features = feature_store(model, data, modality.feature_folder(cfg), cfg.base_model)
        # What a linear model gets on the frozen base: the bar fine-tuning must clear.
        baseline = baseline_metrics(cfg.baseline, features, run_dir, resumed=checkpoint is not None,
                                    input_baselines=lambda: modality.input_baselines(setup.plan))
        run_info = distribution.info()
        with open_trackers(cfg, run_dir) as trackers:
            trackers.log_params({**flatten(cfg), **{f"distribution.{k}": v for k, v in run_info.items()}})
            # Phase 1 trains the head on the frozen base; phase 2 fine-tunes at a low learning rate.
            result = run_schedule(ScheduleRun(
                model, data, classifier.task, features, cfg.schedule, cfg.optimizer, trackers, run_dir,
                baseline=cfg.baseline, resume_from=checkpoint, cache_by_default=modality.caches_head_features(cfg),
                jit_compile=cfg.trainer.jit_compile, verbose=cfg.trainer.verbose,
            ))
            # Equal on every worker of a synchronous cluster; each logs its own, the chief also records it.
            run_info["weights_fingerprint"] = weights_fingerprint(model)
            log.info("final weights fingerprint %s (%s)", run_info["weights_fingerprint"],
                     distribution.role.task or "single process")
            # The held-out test split, the exported model, the plots and summary.json.
            summary = evaluate_and_save(
                model, data, modality, result, cfg, run_dir, started, trackers.run_info(),
                {**baseline, **classifier.metrics}, run_info,
            )
            trackers.log_summary(summary.to_dict())
            trackers.log_artifacts(run_dir)  # config, final model, history, summary and plots
    return summary


def start_tensorflow(cfg: ExperimentConfig) -> Distribution:
    """TensorFlow imported only now, after the config and the data have been checked; then the devices
    and a multi-worker strategy's collectives (fixed once TensorFlow runs anything), then the seeds."""
    from transferlab.compat.tensorflow import import_tensorflow
    from transferlab.repro import seed_everything
    from transferlab.training.distribute import start_distribution

    import_tensorflow()
    distribution = start_distribution(cfg.trainer)
    seed_everything(cfg.trainer.seed, cfg.trainer.deterministic)
    return distribution


def _train_as_worker(cfg: ExperimentConfig) -> RunSummary:
    """A non-chief worker takes every step with the chief, but into a scratch folder deleted at the end,
    with no trackers and no feature cache: nothing it leaves behind could be taken for a result."""
    with tempfile.TemporaryDirectory(prefix="transferlab-worker-") as scratch:
        log.info("non-chief worker: training alongside the chief; results are kept by the chief only")
        quiet = LoggerConfig(tensorboard=False, csv=False, neptune=None, mlflow=None)
        return train_checked(replace(cfg, paths=replace(cfg.paths, output_dir=scratch, feature_cache=None), logger=quiet))


@contextmanager
def failure_recorded(cfg: ExperimentConfig, run_dir: Path) -> Iterator[None]:
    """A run that fails or is interrupted says so in summary.json, with the command that resumes it;
    a full disk becomes one StorageError naming the file and the resume command."""
    try:
        yield
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


def disk_full_error(exc: BaseException) -> Optional[OSError]:
    """The OSError of a full disk (or a file past its size limit) behind `exc`, if that is what failed the run."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, OSError) and exc.errno in DISK_FULL:
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None
