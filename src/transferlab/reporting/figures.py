"""The run's figures: learning curves, confusion matrix, misclassified examples, augmentation preview."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional

import numpy as np

from transferlab.reporting.evaluation import Misclassified

if TYPE_CHECKING:
    from transferlab.config.schema import ExperimentConfig
    from transferlab.data.splits import SplitData

log = logging.getLogger(__name__)


def write_plots(
    folder: Path,
    history: list[dict],
    matrix: Optional[list],
    wrong: Misclassified,
    data: "SplitData",
    extra: dict[str, Callable[[], object]],
) -> list[Path]:
    """Learning curves, confusion matrix, mistakes and the modality's `extra` figures; a plot that fails is skipped."""
    from transferlab.reporting import plots

    drawings = {"learning_curves": lambda: plots.learning_curves(history) if history else None}
    if matrix is not None:
        drawings["confusion_matrix"] = lambda: plots.confusion_matrix(matrix, data.class_names)
    if wrong.images:
        drawings["misclassified"] = lambda: plots.misclassified(
            wrong.images, wrong.truths[: wrong.limit], wrong.predictions[: wrong.limit], data.class_names
        )
    drawings.update(extra)
    written = []
    for name, draw in drawings.items():
        try:
            figure = draw()
            if figure is not None:
                written.append(plots.save(figure, folder / f"{name}.png"))
        except Exception as exc:  # a figure is a convenience; it must not fail a finished run
            log.warning("could not draw the %s plot (%s); the run's other outputs are unaffected", name, exc)
    return written


def augmentation_preview(data: "SplitData", cfg: "ExperimentConfig"):
    """A training image beside augmented copies of it, as the pipeline draws them."""
    from PIL import Image

    from transferlab.data.augmentation import build_augmentation
    from transferlab.reporting import plots

    augment = build_augmentation(cfg.augmentation, cfg.trainer.seed)
    if augment is None or not data.plan.train.paths:
        return None
    height, width = data.train_in_order.element_spec[0].shape[1:3]
    first = data.plan.train.paths[0]
    with Image.open(data.plan.converted.get(first, first)) as image:
        pixels = np.asarray(image.convert("RGB").resize((width, height)), dtype="float32")
    return plots.augmentation_preview(pixels, augment, cfg.trainer.seed)
