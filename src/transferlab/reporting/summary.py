"""The run's summary: evaluation on the test split, the best epoch of each phase, summary.json and the report."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from transferlab.atomic import save_model, write_history, write_json
from transferlab.config.schema import monitor_mode
from transferlab.errors import ConfigError
from transferlab.reporting.evaluation import evaluate_test, format_report
from transferlab.reporting.figures import write_plots
from transferlab.reporting.model_card import write_model_card
from transferlab.repro import environment_info

if TYPE_CHECKING:
    import keras

    from transferlab.config.schema import ExperimentConfig
    from transferlab.data.splits import SplitData
    from transferlab.modalities.base import Modality
    from transferlab.training.phases import ScheduleResult

log = logging.getLogger(__name__)


@dataclass
class RunSummary:
    """What `train` returns and writes as summary.json."""

    status: str
    run_dir: str
    metrics: dict[str, float]
    phases: dict[str, dict]
    epochs: int
    class_names: list[str]
    counts: dict[str, int]
    seed: int
    data_fingerprint: str
    wall_time_s: float
    environment: dict[str, object]
    classification_report: Optional[dict] = None
    confusion_matrix: Optional[list[list[int]]] = None
    skipped_files: list[str] = field(default_factory=list)
    # Tags, sweep, and each tracker's run id and URL (see Trackers.run_info).
    tracking: dict[str, object] = field(default_factory=dict)
    # Where model.keras and the test metrics come from: the run's best epoch by schedule.monitor, and its phase.
    model_from: dict[str, object] = field(default_factory=dict)
    # What the run's numbers say went wrong (e.g. fine-tuning below its own baseline), one line each.
    warnings: list[str] = field(default_factory=list)

    def metric(self, name: str) -> float:
        try:
            return self.metrics[name]
        except KeyError:
            raise ConfigError(
                f"optimized_metric '{name}' is not in the summary; use one of {', '.join(sorted(self.metrics))}"
            ) from None

    def to_dict(self) -> dict:
        return asdict(self)


def evaluate_and_save(
    model: "keras.Model",
    data: "SplitData",
    modality: "Modality",
    result: "ScheduleResult",
    cfg: "ExperimentConfig",
    run_dir: Path,
    started: float,
    tracking: Optional[dict] = None,
    baseline: Optional[dict[str, float]] = None,
    distribution: Optional[dict[str, object]] = None,
) -> RunSummary:
    """Write history and final model, evaluate on the test split, draw the plots, and write summary.json."""
    write_history(result.history, run_dir / "history.csv")
    save_model(modality.exported(model, data), run_dir / "model.keras")
    test_metrics, report, matrix, wrong = evaluate_test(model, data)
    if report:
        log.info("test split, per class:\n%s", format_report(report, data.class_names))
    modality.write_mistakes(wrong, data, run_dir)
    write_plots(run_dir / "plots", result.history, matrix, wrong, data, modality.figures(cfg, data))
    monitor, mode = cfg.schedule.monitor, monitor_mode(cfg.schedule)
    phases = phase_summaries(result, monitor, mode)
    metrics = {**run_metrics(result, test_metrics, monitor, mode), **phase_metrics(phases), **(baseline or {})}
    warnings = baseline_warnings(metrics)
    for warning in warnings:
        log.warning(warning)
    summary = RunSummary(
        status="completed",
        run_dir=str(run_dir),
        metrics=metrics,
        phases=phases,
        epochs=len(result.history),
        class_names=data.class_names,
        counts=data.plan.counts(),
        seed=cfg.trainer.seed,
        data_fingerprint=data.plan.fingerprint(),
        wall_time_s=time.perf_counter() - started,
        environment={**environment_info(), "distribution": distribution or {}},
        classification_report=report,
        confusion_matrix=matrix,
        skipped_files=data.plan.skipped,
        tracking=tracking or {},
        model_from=model_origin(result, monitor, mode),
        warnings=warnings,
    )
    write_json(summary.to_dict(), run_dir / "summary.json")
    write_model_card(summary, cfg, data.plan, run_dir)
    return summary


def phase_summaries(result: "ScheduleResult", monitor: str, mode: str) -> dict[str, dict]:
    """Per phase: epochs, wall time, and the final and best validation metrics."""
    summaries = {}
    for phase in result.phases:
        rows = [r for r in result.history if r["phase"] == phase.name]
        best = _best_row(rows, monitor, mode)
        summaries[phase.name] = {
            **asdict(phase),
            "final": _validation_metrics(rows[-1]) if rows else {},
            "best_epoch": best["epoch"] if best else None,
            "best": _validation_metrics(best) if best else {},
        }
    return summaries


def phase_metrics(phases: dict[str, dict]) -> dict[str, float]:
    """Each phase's best epoch on validation and, for a phase a later one followed, its model on the test split
    (`head/best_val_accuracy`, `head/test_accuracy`, ...: the head alone beside the fine-tuned model); not
    `head/val_accuracy`, which names the per-epoch series the trackers get."""
    metrics: dict[str, float] = {}
    for name, phase in phases.items():
        metrics.update({f"{name}/best_{k}": v for k, v in phase["best"].items()})
        metrics.update({f"{name}/test_{k}": v for k, v in phase["test"].items()})
    return metrics


def model_origin(result: "ScheduleResult", monitor: str, mode: str) -> dict[str, object]:
    """The epoch and phase the run's final model comes from (its best by the monitor), as summary.json says it."""
    best = _best_row(result.history, monitor, mode)
    if best is None:
        return {}
    return {"phase": best["phase"], "epoch": best["epoch"], "monitor": str(monitor), "value": best[monitor]}


def baseline_warnings(metrics: dict[str, float]) -> list[str]:
    """A model below its own linear baseline on validation: fine-tuning (or the head) made things worse than a
    logistic regression on the frozen features, which a user should hear about with the likely cause."""
    ours, theirs = metrics.get("best/val_accuracy"), metrics.get("baseline/validation_accuracy")
    if ours is None or theirs is None or ours >= theirs:
        return []
    return [
        f"the model's validation accuracy {ours:.4f} is below its own baseline's {theirs:.4f} (logistic regression "
        "on the frozen base's features): the head phase likely stopped short of the linear probe (use "
        "schedule.head.solver=lbfgs or auto with a linear head, or more head epochs), or fine-tuning distorted "
        "the pretrained features (lower schedule.fine_tune.lr, or schedule.fine_tune.base_lr_scale=0.1)"
    ]


def run_metrics(result: "ScheduleResult", test: dict[str, float], monitor: str, mode: str) -> dict[str, float]:
    """The flat metrics sweeps and comparisons read: best/..., final/..., test/..."""
    metrics: dict[str, float] = {}
    best = _best_row(result.history, monitor, mode)
    if best:
        metrics["best/epoch"] = float(best["epoch"])
        metrics.update({f"best/{k}": v for k, v in _validation_metrics(best).items()})
    if result.history:
        metrics.update({f"final/{k}": v for k, v in _validation_metrics(result.history[-1]).items()})
    metrics.update(test)
    return metrics


def _best_row(rows: list[dict], monitor: str, mode: str) -> Optional[dict]:
    scored = [r for r in rows if monitor in r and math.isfinite(r[monitor])]
    if not scored:
        return None
    return (max if mode == "max" else min)(scored, key=lambda r: r[monitor])


def _validation_metrics(row: dict) -> dict[str, float]:
    return {k: v for k, v in row.items() if k.startswith("val_")}
