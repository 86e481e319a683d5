"""Building the run's data pipelines and classifier from the plan."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from transferlab.atomic import write_json
from transferlab.config.schema import ExperimentConfig
from transferlab.data.images import DatasetPlan
from transferlab.data.text import TextPlan
from transferlab.models.vectors import locate_vectors
from transferlab.training.setup import is_text

if TYPE_CHECKING:
    import keras

    from transferlab.data.splits import SplitData
    from transferlab.features.store import FeatureStore
    from transferlab.models.heads import TaskSpec
    from transferlab.models.vectors import Embeddings

log = logging.getLogger(__name__)


def build_data(cfg: ExperimentConfig, plan: DatasetPlan | TextPlan, image_size: Optional[tuple[int, int]]):
    """tf.data splits: decoded images, or texts vectorized by a TextVectorization adapted on the training split."""
    from transferlab.data.images import build_pipelines
    from transferlab.data.text import build_text_pipelines

    if isinstance(plan, TextPlan):
        return build_text_pipelines(plan, cfg.dataset, cfg.trainer.seed)
    return build_pipelines(plan, cfg.dataset, image_size, cfg.augmentation, cfg.trainer.seed)


def task_spec(cfg: ExperimentConfig, data, image_size: Optional[tuple[int, int]]):
    from transferlab.models.heads import TaskSpec

    length = cfg.dataset.max_length if is_text(cfg) else None
    return TaskSpec(image_size, len(data.class_names), sequence_length=length)


def load_word_vectors(cfg: ExperimentConfig, data: "SplitData") -> Optional["Embeddings"]:
    """The pretrained vectors of the run's vocabulary (from the cache after the first run); None for
    images and for an embedding learned from scratch."""
    from transferlab.models.vectors import load_embeddings

    source = locate_vectors(cfg.base_model, cfg.paths.data_dir) if data.vectorizer is not None else None
    if source is None:
        return None
    vocabulary = data.vectorizer.get_vocabulary()
    embeddings = load_embeddings(source, cfg.base_model.dim, vocabulary, Path(cfg.paths.data_dir) / "vectors_cache")
    log.info("word vectors %s cover %d of %d vocabulary words (%.1f%%)", source, embeddings.found,
             len(vocabulary) - 2, 100 * embeddings.coverage)
    return embeddings


def coverage_metrics(embeddings: Optional["Embeddings"]) -> dict[str, float]:
    if embeddings is None:
        return {}
    return {"embeddings/coverage": embeddings.coverage, "embeddings/found": float(embeddings.found),
            "embeddings/vocabulary": float(len(embeddings.matrix))}


def build_classifier(
    cfg: ExperimentConfig, data: "SplitData", task: "TaskSpec", embeddings: Optional["Embeddings"]
) -> "keras.Model":
    """The pretrained base with a new head: an image base, or an embedding of the text vocabulary."""
    from transferlab.models.image import build_model
    from transferlab.models.text import build_text_model

    if data.vectorizer is None:
        return build_model(cfg.base_model, cfg.head, task)
    vocabulary_size = len(data.vectorizer.get_vocabulary())
    return build_text_model(cfg.head, task, vocabulary_size, cfg.base_model.dim, embeddings.matrix if embeddings else None)


def feature_store(cfg: ExperimentConfig, model: "keras.Model", data: "SplitData") -> "FeatureStore":
    """Where the baseline, a cached head phase and feature export get the frozen base's features.

    Image features are kept in `paths.feature_cache` (inside `paths.data_dir` unless absolute);
    token vectors only in memory: an embedding lookup costs nothing to repeat.
    """
    from transferlab.features.store import FeatureStore

    folder = None
    if data.vectorizer is None and cfg.paths.feature_cache:
        folder = Path(cfg.paths.data_dir) / cfg.paths.feature_cache
    recipe = json.dumps(asdict(cfg.base_model), sort_keys=True, default=str)
    return FeatureStore(model, data, folder, recipe)


def baseline_metrics(cfg: ExperimentConfig, features: "FeatureStore", run_dir: Path, resumed: bool) -> dict[str, float]:
    """The scikit-learn baseline on the still-pretrained base, kept in baseline.json for a resumed run."""
    from transferlab.features.baseline import fit_baseline

    path = run_dir / "baseline.json"
    if resumed and path.is_file():
        return json.loads(path.read_text())
    metrics = fit_baseline(cfg.baseline, features) if cfg.baseline.estimator else {}
    write_json(metrics, path)
    return metrics
