"""The scikit-learn baselines: a linear model on the frozen base's features (what the base gives before
any fine-tuning) and, for text, TF-IDF + logistic regression on the raw sentences (what bag-of-words
gives without any pretrained base)."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Callable, Optional

from transferlab.atomic import write_json
from transferlab.config.schema import BaselineConfig
from transferlab.features.store import FeatureStore, pooled

log = logging.getLogger(__name__)

# Inverse regularisation strengths the TF-IDF baseline tries; the validation split picks one.
TFIDF_C = (0.1, 1.0, 10.0, 100.0)


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
    splits = ["train", *(["validation"] if store.data.validation is not None else []), "test"]
    return score_baseline(cfg, {split: (pooled(store.get(split)[0]), store.get(split)[1]) for split in splits})


def score_baseline(cfg: BaselineConfig, splits: dict[str, tuple]) -> dict[str, float]:
    """Accuracy on each split (`baseline/<split>_accuracy`) of the configured classifier fitted on the pooled
    features of `train`: validation is what the head phase and fine-tuning are measured against."""
    start = time.perf_counter()
    estimator = make_estimator(cfg).fit(*splits["train"])
    metrics = {f"baseline/{split}_accuracy": float(estimator.score(x, y)) for split, (x, y) in splits.items()}
    log.info("%s on frozen base features: test accuracy %.4f (%.1fs)", cfg.estimator,
             metrics["baseline/test_accuracy"], time.perf_counter() - start)
    return metrics


def tfidf_baseline(
    train: tuple[list[str], list[int]], validation: tuple[list[str], list[int]], test: tuple[list[str], list[int]]
) -> dict[str, float]:
    """TF-IDF of word uni- and bigrams + logistic regression, its C chosen on the validation split
    (the first of TFIDF_C without one): the bar a pretrained text base must clear to be worth it."""
    if not test[0]:
        return {}
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    start = time.perf_counter()
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)
    x_train = vectorizer.fit_transform(train[0])
    fits = {c: LogisticRegression(C=c, max_iter=5000).fit(x_train, train[1]) for c in TFIDF_C}
    if validation[0]:
        x_validation = vectorizer.transform(validation[0])
        chosen = max(TFIDF_C, key=lambda c: fits[c].score(x_validation, validation[1]))
    else:
        chosen = TFIDF_C[0]
    estimator = fits[chosen]
    metrics = {
        "baseline/tfidf_train_accuracy": float(estimator.score(x_train, train[1])),
        "baseline/tfidf_test_accuracy": float(estimator.score(vectorizer.transform(test[0]), test[1])),
    }
    log.info("TF-IDF + logistic regression (C=%g) on the raw texts: test accuracy %.4f (%.1fs)", chosen,
             metrics["baseline/tfidf_test_accuracy"], time.perf_counter() - start)
    return metrics


def baseline_metrics(
    cfg: BaselineConfig, features: FeatureStore, run_dir: Path, resumed: bool,
    input_baselines: Optional[Callable[[], dict[str, float]]] = None,
) -> dict[str, float]:
    """The baselines on the still-pretrained base and, from `input_baselines`, on the raw inputs;
    kept in baseline.json for a resumed run."""
    path = run_dir / "baseline.json"
    if resumed and path.is_file():
        return json.loads(path.read_text())
    metrics = {**fit_baseline(cfg, features), **(input_baselines() if input_baselines else {})} if cfg.estimator else {}
    write_json(metrics, path)
    return metrics
