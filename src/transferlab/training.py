"""The recipe: config -> data -> model -> two phases -> evaluation -> outputs."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from omegaconf import DictConfig

from transferlab.bases import check_image_size, check_preprocess, get_base_spec, resolve_weights
from transferlab.config import ExperimentConfig, flatten, to_experiment_config
from transferlab.data import DatasetPlan, check_images, locate_dataset, plan_dataset
from transferlab.reporting import RunSummary, write_json
from transferlab.runs import prepare_run_dir, stop_on_signals

log = logging.getLogger(__name__)


def train(cfg: ExperimentConfig | DictConfig) -> RunSummary:
    """Run one two-phase transfer-learning experiment and return its summary."""
    cfg, image_size, plan, run_dir = checked_setup(cfg)
    try:
        with stop_on_signals():
            summary = _train_and_report(cfg, plan, image_size, run_dir)
    except BaseException as exc:
        interrupted = isinstance(exc, KeyboardInterrupt)
        write_json(
            {
                "status": "interrupted" if interrupted else "failed",
                "error": f"{type(exc).__name__}: {exc}",
                "resume_with": f"resume={run_dir}" if interrupted else None,
            },
            run_dir / "summary.json",
        )
        raise
    log.info("run finished in %s: %s", run_dir, {k: round(v, 4) for k, v in summary.metrics.items()})
    return summary


def checked_setup(cfg: ExperimentConfig | DictConfig) -> tuple[ExperimentConfig, tuple[int, int], DatasetPlan, Path]:
    """Config, input size, data plan and run directory: every check that needs no TensorFlow."""
    cfg = to_experiment_config(cfg)
    image_size = check_model_config(cfg)
    plan = plan_data(cfg)  # every data error surfaces here, before TensorFlow is imported
    return cfg, image_size, plan, prepare_run_dir(cfg)


def check_model_config(cfg: ExperimentConfig) -> tuple[int, int]:
    """Name, weights and input size of the base, checked without building anything."""
    spec = get_base_spec(cfg.base_model.name)
    resolve_weights(spec, cfg.base_model.weights)
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


def _train_and_report(cfg: ExperimentConfig, plan: DatasetPlan, image_size, run_dir: Path) -> RunSummary:
    # TensorFlow is imported here, after the config and the data have been checked.
    from transferlab.checkpoints import load_checkpoint
    from transferlab.data import build_pipelines
    from transferlab.models import TaskSpec, build_augmentation, build_model
    from transferlab.reporting import evaluate_and_save
    from transferlab.repro import seed_everything
    from transferlab.schedule import check_unfreeze, run_schedule
    from transferlab.tracking import open_trackers

    started = time.perf_counter()
    seed_everything(cfg.trainer.seed, cfg.trainer.deterministic)
    data = build_pipelines(plan, cfg.dataset, image_size, cfg.augmentation, cfg.trainer.seed)
    task = TaskSpec(image_size, len(plan.class_names))
    checkpoint = load_checkpoint(run_dir / "checkpoints") if cfg.resume else None
    build = lambda: build_model(cfg.base_model, cfg.head, task)  # noqa: E731
    model = checkpoint.load_model(build) if checkpoint else build()
    check_unfreeze(model, cfg.schedule)
    baseline = baseline_metrics(cfg, model, data, run_dir, resumed=checkpoint is not None)
    with open_trackers(cfg, run_dir) as trackers:
        trackers.log_params(flatten(cfg))
        result = run_schedule(
            model, data, cfg.schedule, cfg.optimizer, task, trackers, run_dir, cfg.trainer.verbose, checkpoint,
            augmented=build_augmentation(cfg.augmentation, 0) is not None,
        )
        summary = evaluate_and_save(model, data, result, cfg, run_dir, started, trackers.run_info(), baseline)
        trackers.log_summary(summary.to_dict())
        trackers.log_artifacts(run_dir)  # config, final model, history, summary and plots
    return summary


def baseline_metrics(cfg: ExperimentConfig, model, data, run_dir: Path, resumed: bool) -> dict[str, float]:
    """The scikit-learn baseline on the still-pretrained base, kept in baseline.json for a resumed run."""
    from transferlab.features import fit_baseline

    path = run_dir / "baseline.json"
    if resumed and path.is_file():
        return json.loads(path.read_text())
    metrics = fit_baseline(cfg.baseline, model, data) if cfg.baseline.estimator else {}
    write_json(metrics, path)
    return metrics


def extract_features(cfg: ExperimentConfig | DictConfig) -> dict[str, object]:
    """Feature extraction, the second use of a pretrained model: the frozen base run once over every
    split, its pooled features saved as features.npz, and the scikit-learn baseline fitted on them."""
    from transferlab.data import build_pipelines
    from transferlab.features import export_features, score_baseline
    from transferlab.models import TaskSpec, build_model
    from transferlab.repro import seed_everything

    cfg, image_size, plan, run_dir = checked_setup(cfg)
    seed_everything(cfg.trainer.seed, cfg.trainer.deterministic)
    data = build_pipelines(plan, cfg.dataset, image_size, cfg.augmentation, cfg.trainer.seed)
    model = build_model(cfg.base_model, cfg.head, TaskSpec(image_size, len(plan.class_names)))
    arrays = export_features(model, data, run_dir / "features.npz")
    fit = cfg.baseline.estimator and "x_test" in arrays
    result = {
        "features": str(run_dir / "features.npz"),
        "counts": {key[2:]: len(value) for key, value in arrays.items() if key.startswith("y_")},
        # The baseline reuses the exported features: the base runs over each split once.
        "metrics": score_baseline(cfg.baseline, *(arrays[k] for k in ("x_train", "y_train", "x_test", "y_test")))
        if fit else {},
    }
    write_json(result, run_dir / "extraction.json")
    return result
