"""Phase 1 solved instead of trained: the linear probe of LP-FT.

On cached features a linear head is L2-regularised logistic regression, a convex problem. A few
epochs of SGD from a random start stop well short of its optimum (on real cats and dogs, 0.88
validation accuracy where the optimum has 0.93), and fine-tuning from such a head distorts the
pretrained features (Kumar et al., ICLR 2022, "Fine-Tuning can Distort Pretrained Features"). So the
head is fitted by scikit-learn's L-BFGS on the standardised features, with its L2 strength picked
on the validation split, and the fit is copied into the Keras head: the scaler folded into the
kernel and bias, the same logits in float32.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import keras
import numpy as np

from transferlab.config.schema import BaselineConfig, BaselineEstimator
from transferlab.errors import TrainingError
from transferlab.features.baseline import make_estimator

Split = tuple[np.ndarray, np.ndarray]  # features and labels


@dataclass(frozen=True)
class LinearProbe:
    """The fit the head got: its inverse L2 strength and what it scored on validation (None without one)."""

    C: float
    validation_accuracy: Optional[float]


def linear_output(head: keras.Model) -> Optional[keras.layers.Dense]:
    """The head's output layer when the head is linear on feature vectors (one Dense, dropout aside), else None."""
    if len(head.inputs[0].shape) != 2:
        return None
    layers = [layer for layer in head.layers if not isinstance(layer, (keras.layers.InputLayer, keras.layers.Dropout))]
    return layers[0] if len(layers) == 1 and isinstance(layers[0], keras.layers.Dense) else None


def solve_linear_head(head: keras.Model, train: Split, validation: Optional[Split], grid: list[float]) -> LinearProbe:
    """Fit logistic regression for each C of `grid`, keep the one with the best validation accuracy (ties: the
    lower validation log-loss; without a validation split: the first C), and write it into the head."""
    dense = linear_output(head)
    fits = {c: _fit(c, *train) for c in dict.fromkeys(grid)}
    _check_classes(next(iter(fits.values())), dense.units)
    if validation is None:
        chosen = next(iter(fits))
    else:
        chosen = max(fits, key=lambda c: _validation_score(fits[c], *validation))
    kernel, bias = folded_weights(fits[chosen])
    dense.kernel.assign(kernel.astype(np.float32))
    dense.bias.assign(bias.astype(np.float32))
    accuracy = None if validation is None else float(fits[chosen].score(*validation))
    return LinearProbe(chosen, accuracy)


def probe_grid(grid: list[float], baseline: BaselineConfig) -> list[float]:
    """The Cs to try: the configured grid and the logistic-regression baseline's own C, so the head's validation
    accuracy is never below the baseline's (the baseline is one of the fits the choice is made among)."""
    if baseline.estimator is BaselineEstimator.logistic_regression:
        return [*grid, baseline.C]
    return list(grid)


def folded_weights(pipeline) -> tuple[np.ndarray, np.ndarray]:
    """(kernel [features, units], bias [units]) of standardisation then logistic regression as one Dense layer:
    ((x - mean) / scale) @ coef.T + intercept = x @ (coef / scale).T + (intercept - coef / scale @ mean)."""
    scaler, regression = pipeline[0], pipeline[-1]
    coef = regression.coef_ / scaler.scale_
    return coef.T, regression.intercept_ - coef @ scaler.mean_


def _fit(c: float, x: np.ndarray, y: np.ndarray):
    return make_estimator(BaselineConfig(estimator=BaselineEstimator.logistic_regression, C=c)).fit(x, y)


def _validation_score(pipeline, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    from sklearn.metrics import log_loss

    return float(pipeline.score(x, y)), -float(log_loss(y, pipeline.predict_proba(x), labels=pipeline.classes_))


def _check_classes(pipeline, units: int) -> None:
    """A class missing from the training split has no row in the fit, and the head would shift every later class."""
    classes = len(pipeline.classes_)
    if classes != max(units, 2):
        raise TrainingError(
            f"the training split holds {classes} of the head's {max(units, 2)} classes, so the linear probe cannot "
            "give every class a logit; add training examples of each class, or set schedule.head.solver=sgd"
        )
