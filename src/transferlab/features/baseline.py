"""The scikit-learn baseline on the frozen base's features: what a linear model gets before any fine-tuning."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from transferlab.atomic import write_json
from transferlab.config.schema import BaselineConfig
from transferlab.features.store import FeatureStore, pooled

log = logging.getLogger(__name__)


def make_estimator(cfg: BaselineConfig):
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVC

    estimators = {
        "logistic_regression": lambda: LogisticRegression(C=cfg.C, max_iter=5000),
        "linear_svm": lambda: LinearSVC(C=cfg.C, max_iter=20000),
        "knn": lambda: KNeighborsClassifier(n_neighbors=cfg.neighbors),
    }
    return make_pipeline(StandardScaler(), estimators[cfg.estimator]())


def fit_baseline(cfg: BaselineConfig, store: FeatureStore) -> dict[str, float]:
    """Fit the configured scikit-learn classifier on the frozen base's pooled training features."""
    if store.data.test is None:
        return {}
    (x_train, y_train), (x_test, y_test) = store.get("train"), store.get("test")
    return score_baseline(cfg, pooled(x_train), y_train, pooled(x_test), y_test)


def score_baseline(cfg: BaselineConfig, x_train, y_train, x_test, y_test) -> dict[str, float]:
    """Train and test accuracy of the configured classifier on already pooled features."""
    start = time.perf_counter()
    estimator = make_estimator(cfg).fit(x_train, y_train)
    metrics = {
        "baseline/train_accuracy": float(estimator.score(x_train, y_train)),
        "baseline/test_accuracy": float(estimator.score(x_test, y_test)),
    }
    log.info("%s on frozen base features: test accuracy %.4f (%.1fs)", cfg.estimator,
             metrics["baseline/test_accuracy"], time.perf_counter() - start)
    return metrics


def baseline_metrics(cfg: BaselineConfig, features: FeatureStore, run_dir: Path, resumed: bool) -> dict[str, float]:
    """The baseline on the still-pretrained base, kept in baseline.json for a resumed run."""
    path = run_dir / "baseline.json"
    if resumed and path.is_file():
        return json.loads(path.read_text())
    metrics = fit_baseline(cfg, features) if cfg.estimator else {}
    write_json(metrics, path)
    return metrics
