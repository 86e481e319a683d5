"""The run's figures, drawn with matplotlib's Agg canvas (no display, no global pyplot state).

Every function takes plain data (history rows, arrays, names) and returns a Figure; `save` writes it.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def new_figure(width: float, height: float) -> "Figure":
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def save(figure: "Figure", path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    return path


def to_base64_png(figure: "Figure") -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=80)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def learning_curves(history: list[dict], metric: str = "accuracy") -> "Figure":
    """Loss and the main metric, train and validation, over both phases; fine-tuning's start marked."""
    figure = new_figure(8, 6)
    epochs = [row["epoch"] for row in history]
    fine_tune_start = next((row["epoch"] for row in history if row["phase"] == "fine_tune"), None)
    for ax, name in zip(figure.subplots(2, 1, sharex=True), (metric, "loss"), strict=True):
        for key, label in ((name, "training"), (f"val_{name}", "validation")):
            values = [row.get(key, np.nan) for row in history]
            ax.plot(epochs, values, marker=".", label=f"{label} {name}")
        if fine_tune_start is not None and fine_tune_start > 1:
            # As in the Keras guide: a vertical line where the base was unfrozen.
            ax.axvline(fine_tune_start - 0.5, color="green", linestyle="--", label="start fine-tuning")
        ax.set_ylabel(name)
        ax.legend(loc="best")
    ax.set_xlabel("epoch")
    ax.xaxis.get_major_locator().set_params(integer=True)
    figure.suptitle(f"Training and validation {metric} and loss")
    return figure


def confusion_matrix(matrix: Sequence[Sequence[int]], class_names: list[str]) -> "Figure":
    counts = np.asarray(matrix)
    size = max(4.0, 0.5 * len(class_names) + 2)
    figure = new_figure(size, size)
    ax = figure.subplots()
    ax.imshow(counts, cmap="Blues")
    ticks = range(len(class_names))
    ax.set_xticks(ticks, class_names, rotation=45, ha="right")
    ax.set_yticks(ticks, class_names)
    threshold = counts.max() / 2 if counts.size else 0
    for (row, col), count in np.ndenumerate(counts):
        ax.text(col, row, str(count), ha="center", va="center", color="white" if count > threshold else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("Confusion matrix (test split)")
    return figure


def image_grid(images: Sequence[np.ndarray], titles: Sequence[str], columns: int, title: str) -> "Figure":
    """Images (0..255 RGB) in a grid with a caption each."""
    rows = max(1, -(-len(images) // columns))
    figure = new_figure(2.2 * columns, 2.4 * rows)
    axes = np.atleast_1d(figure.subplots(rows, columns)).ravel()
    for ax in axes:
        ax.axis("off")
    for ax, image, caption in zip(axes, images, titles, strict=False):
        ax.imshow(np.clip(np.asarray(image), 0, 255).astype("uint8"))
        ax.set_title(caption, fontsize=9)
    figure.suptitle(title)
    return figure


def misclassified(
    images: Sequence[np.ndarray], truths: Sequence[int], predictions: Sequence[int], class_names: list[str]
) -> "Figure":
    titles = [f"true {class_names[t]}\npred {class_names[p]}" for t, p in zip(truths, predictions, strict=True)]
    return image_grid(images, titles, columns=min(4, max(1, len(images))), title="Misclassified test images")


def augmentation_preview(image: np.ndarray, augment, seed: int = 0) -> "Figure":
    """One training image under the configured augmentation, 3x4, as in the Keras tutorial."""
    import tensorflow as tf

    tf.random.set_seed(seed)
    batch = tf.convert_to_tensor(image[None], dtype=tf.float32)
    samples = [np.asarray(augment(batch, training=True)[0]) for _ in range(12)]
    return image_grid(samples, [""] * 12, columns=4, title="Augmentation preview")


def metric_against(values: Sequence[object], scores: Sequence[float], parameter: str, metric: str) -> "Figure":
    """One comparison panel: a metric against one varied hyperparameter (categorical when not numeric)."""
    figure = new_figure(4.5, 3.2)
    ax = figure.subplots()
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
    labels = values if numeric else [str(v) for v in values]
    ax.scatter(labels, scores)
    ax.set_xlabel(parameter)
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} by {parameter}", fontsize=10)
    return figure


def overlaid_curves(curves: dict[str, list[dict]], metric: str) -> "Figure":
    """One line per run: a history column against the continuous epoch axis."""
    figure = new_figure(7, 4)
    ax = figure.subplots()
    for label, history in curves.items():
        points = [(row["epoch"], row[metric]) for row in history if metric in row]
        if points:
            ax.plot(*zip(*points, strict=True), marker=".", label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} per run")
    if curves:
        ax.legend(fontsize=7, loc="best")
    return figure

