"""The run's results: test evaluation, history, summary, saved models."""

from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import numpy as np

from transferlab.atomic import replacing
from transferlab.config import monitor_mode
from transferlab.errors import ConfigError
from transferlab.repro import environment_info

if TYPE_CHECKING:
    import keras

    from transferlab.config import ExperimentConfig

    from transferlab.data import SplitData
    from transferlab.schedule import ScheduleResult


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
    save_model(data.exported(model), run_dir / "model.keras")
    test_metrics, report, matrix, wrong = evaluate_test(model, data)
    if report:
        log.info("test split, per class:\n%s", format_report(report, data.class_names))
    if data.vectorizer is not None:
        write_misclassified_texts(wrong, data, run_dir / "misclassified.csv")
    write_plots(run_dir / "plots", result.history, matrix, wrong, data, cfg)
    monitor, mode = cfg.schedule.monitor, monitor_mode(cfg.schedule)
    summary = RunSummary(
        status="completed",
        run_dir=str(run_dir),
        metrics={**run_metrics(result, test_metrics, monitor, mode), **(baseline or {})},
        phases=phase_summaries(result, monitor, mode),
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
    )
    write_json(summary.to_dict(), run_dir / "summary.json")
    return summary


def format_report(report: dict, class_names: list[str]) -> str:
    lines = [f"{'class':>12} {'precision':>9} {'recall':>7} {'f1':>6} {'support':>7}"]
    for name in [*class_names, "macro avg"]:
        row = report[name]
        lines.append(f"{name:>12} {row['precision']:9.3f} {row['recall']:7.3f} {row['f1-score']:6.3f} {int(row['support']):7d}")
    if "accuracy" in report:
        lines.append(f"{'accuracy':>12} {report['accuracy']:9.3f}")
    return "\n".join(lines)


@dataclass
class Misclassified:
    """Every wrongly predicted test example by position in the test split; the first `limit` images
    also kept for the plot of mistakes."""

    indices: list[int] = field(default_factory=list)
    truths: list[int] = field(default_factory=list)
    predictions: list[int] = field(default_factory=list)
    images: list[np.ndarray] = field(default_factory=list)
    limit: int = 16

    def add(self, inputs: np.ndarray, truths: np.ndarray, predictions: np.ndarray, offset: int) -> None:
        for i in np.flatnonzero(truths != predictions):
            self.indices.append(offset + int(i))
            self.truths.append(int(truths[i]))
            self.predictions.append(int(predictions[i]))
            if inputs.ndim == 4 and len(self.images) < self.limit:
                self.images.append(inputs[i])


def evaluate_test(
    model: "keras.Model", data: "SplitData"
) -> tuple[dict[str, float], Optional[dict], Optional[list], Misclassified]:
    """Loss and accuracy on the held-out test split, a per-class report from scikit-learn, and mistakes."""
    wrong = Misclassified()
    if data.test is None:
        return {}, None, None, wrong
    from sklearn.metrics import classification_report, confusion_matrix

    from transferlab.models import inference_function

    # One pass of one traced function: `evaluate` and then predicting would trace the model twice more.
    forward = inference_function(model)
    outputs, truths = [], []
    seen = 0
    for inputs, labels in data.test:
        outputs.append(np.asarray(forward(inputs), dtype=np.float32))
        truths.append(np.asarray(labels))
        wrong.add(np.asarray(inputs), truths[-1], predicted_classes(outputs[-1]), seen)
        seen += len(truths[-1])
    logits, y_true = np.concatenate(outputs), np.concatenate(truths)
    y_pred = predicted_classes(logits)
    # The compiled loss over the whole split: what `evaluate` reports, without another pass.
    scores = {"loss": float(model.loss(y_true, logits)), "accuracy": float(np.mean(y_pred == y_true))}
    labels = list(range(len(data.class_names)))
    report = classification_report(
        y_true, y_pred, labels=labels, target_names=data.class_names, output_dict=True, zero_division=0
    )
    matrix = confusion_matrix(y_true, y_pred, labels=labels).tolist()
    return {f"test/{k}": float(v) for k, v in scores.items()}, report, matrix, wrong


def predicted_classes(logits: np.ndarray) -> np.ndarray:
    """Class indices from logits: a single logit is the positive class when above 0."""
    return (logits[:, 0] > 0).astype(int) if logits.shape[-1] == 1 else logits.argmax(-1)


def write_misclassified_texts(wrong: Misclassified, data: "SplitData", path: Path) -> None:
    """Every wrongly classified test text with its true and predicted class, for reading the errors."""
    import pandas as pd

    names, texts = data.class_names, data.plan.test.texts
    rows = [{"text": texts[i], "true": names[t], "predicted": names[p]}
            for i, t, p in zip(wrong.indices, wrong.truths, wrong.predictions, strict=True)]
    pd.DataFrame(rows, columns=["text", "true", "predicted"]).to_csv(path, index=False)


def write_plots(
    folder: Path,
    history: list[dict],
    matrix: Optional[list],
    wrong: Misclassified,
    data: "SplitData",
    cfg: "ExperimentConfig",
) -> list[Path]:
    """Learning curves, confusion matrix, mistakes and augmentation preview; a plot that fails is skipped."""
    from transferlab import plots

    drawings = {"learning_curves": lambda: plots.learning_curves(history) if history else None}
    if matrix is not None:
        drawings["confusion_matrix"] = lambda: plots.confusion_matrix(matrix, data.class_names)
    if wrong.images:
        drawings["misclassified"] = lambda: plots.misclassified(
            wrong.images, wrong.truths[: wrong.limit], wrong.predictions[: wrong.limit], data.class_names
        )
    if data.vectorizer is None:
        drawings["augmentation_preview"] = lambda: _augmentation_preview(data, cfg)
    written = []
    for name, draw in drawings.items():
        try:
            figure = draw()
            if figure is not None:
                written.append(plots.save(figure, folder / f"{name}.png"))
        except Exception as exc:  # a figure is a convenience; it must not fail a finished run
            log.warning("could not draw the %s plot (%s); the run's other outputs are unaffected", name, exc)
    return written


def _augmentation_preview(data: "SplitData", cfg: "ExperimentConfig"):
    from PIL import Image

    from transferlab import plots
    from transferlab.models import build_augmentation

    augment = build_augmentation(cfg.augmentation, cfg.trainer.seed)
    if augment is None or not data.plan.train.paths:
        return None
    height, width = data.train_in_order.element_spec[0].shape[1:3]
    first = data.plan.train.paths[0]
    with Image.open(data.plan.converted.get(first, first)) as image:
        pixels = np.asarray(image.convert("RGB").resize((width, height)), dtype="float32")
    return plots.augmentation_preview(pixels, augment, cfg.trainer.seed)


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


def write_history(rows: list[dict], path: Path) -> None:
    import pandas as pd

    with replacing(path, path.with_name(path.name + ".tmp")) as tmp:
        pd.DataFrame(rows).to_csv(tmp, index=False)


def write_arrays(path: Path, **arrays: np.ndarray) -> None:
    """Arrays as `.npz`, written under a per-process name and renamed: parallel jobs sharing a cache
    never read half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with replacing(path, path.with_name(f".{path.name}.{os.getpid()}.tmp")) as tmp, open(tmp, "wb") as out:
        np.savez(out, **arrays)


def write_json(data: dict, path: Path) -> None:
    with replacing(path, path.with_name(path.name + ".tmp")) as tmp:
        tmp.write_text(json.dumps(data, indent=2, default=str))


def save_model(model: "keras.Model", path: Path) -> None:
    """`model.save` to a temporary `.keras` in the same folder, renamed into place: a write that fails
    (a full disk) leaves the previous file or none, never a partial one."""
    with replacing(path, path.with_name(f".{path.stem}.{os.getpid()}.tmp.keras")) as tmp:
        model.save(tmp)
