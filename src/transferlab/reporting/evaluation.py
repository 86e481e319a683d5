"""Test-split evaluation: metrics, the classification report and the misclassified examples."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import numpy as np

if TYPE_CHECKING:
    import keras

    from transferlab.data.splits import SplitData


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

    from transferlab.models.saved import inference_function

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
