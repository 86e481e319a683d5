"""Text: labelled tables, vectorized in tf.data; an embedding (pretrained word vectors or learned) as the base.

The exported model puts the training-time TextVectorization in front, so it classifies raw strings.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Sequence

from transferlab.config.schema import DatasetKind, ExperimentConfig
from transferlab.data.text import TextPlan, plan_text_data
from transferlab.errors import ConfigError
from transferlab.modalities.base import Classifier, Modality, PredictOptions
from transferlab.models.vectors import check_text_base, locate_vectors

if TYPE_CHECKING:
    import keras
    import numpy as np

    from transferlab.data.splits import SplitData
    from transferlab.models.vectors import Embeddings
    from transferlab.reporting.evaluation import Misclassified

log = logging.getLogger(__name__)


class TextModality(Modality):
    kind = DatasetKind.text
    item = "text"
    prediction_key = "text"

    def check(self, cfg: ExperimentConfig) -> None:
        check_text_config(cfg)

    def plan(self, cfg: ExperimentConfig) -> TextPlan:
        plan = plan_text_data(cfg.dataset, cfg.paths.data_dir, cfg.trainer.seed)
        log.info("dataset %s: %s, classes %s", cfg.dataset.name, plan.counts(), plan.class_names)
        return plan

    def pipelines(self, cfg: ExperimentConfig, plan: TextPlan) -> "SplitData":
        from transferlab.data.text import build_text_pipelines

        return build_text_pipelines(plan, cfg.dataset, cfg.trainer.seed)

    def classifier(self, cfg: ExperimentConfig, data: "SplitData") -> Classifier:
        from transferlab.models.heads import TaskSpec
        from transferlab.models.text import build_text_model

        task = TaskSpec(None, len(data.class_names), sequence_length=cfg.dataset.max_length)
        embeddings = load_word_vectors(cfg, data)
        vocabulary_size = len(data.vectorizer.get_vocabulary())
        vectors = embeddings.matrix if embeddings else None
        return Classifier(
            task, lambda: build_text_model(cfg.head, task, vocabulary_size, cfg.base_model.dim, vectors),
            coverage_metrics(embeddings),
        )

    def exported(self, model: "keras.Model", data: "SplitData") -> "keras.Model":
        from transferlab.models.text_vectorizer import with_vectorizer

        return with_vectorizer(model, data.vectorizer)

    def test_examples(self, cfg: ExperimentConfig, plan: TextPlan, limit: Optional[int]) -> tuple["np.ndarray", "np.ndarray"]:
        """The raw test texts: the saved model tokenizes them itself."""
        import numpy as np

        return np.array(plan.test.texts[:limit], dtype=str), np.array(plan.test.labels[:limit])

    def input_baselines(self, plan: TextPlan) -> dict[str, float]:
        from transferlab.features.baseline import tfidf_baseline

        return tfidf_baseline(*((split.texts, split.labels) for split in (plan.train, plan.validation, plan.test)))

    def write_mistakes(self, wrong: "Misclassified", data: "SplitData", run_dir: Path) -> None:
        from transferlab.reporting.evaluation import write_misclassified_texts

        write_misclassified_texts(wrong, data, run_dir / "misclassified.csv")

    def reads(self, model: "keras.Model") -> bool:
        return model.inputs[0].dtype == "string"

    def predict(self, model: "keras.Model", inputs: Sequence[str], options: PredictOptions) -> tuple[list, "np.ndarray"]:
        import tensorflow as tf

        from transferlab.data.inputs import read_texts
        from transferlab.models.saved import in_batches

        texts = read_texts(list(inputs), options.text_column, options.on_bad_file)
        return in_batches(model, texts, lambda chunk: (chunk, tf.constant(chunk)), options.batch_size)


def check_text_config(cfg: ExperimentConfig) -> None:
    """Base, head and schedule settings a text run can use; the vectors file found and its size checked."""
    check_text_base(cfg.base_model)
    if cfg.schedule.head.cache_features:
        raise ConfigError(
            "schedule.head.cache_features=true is for image bases: cached token vectors lose the padding "
            "mask, and an embedding lookup costs nothing to repeat; set it to null"
        )
    locate_vectors(cfg.base_model, cfg.paths.data_dir)


def load_word_vectors(cfg: ExperimentConfig, data: "SplitData") -> Optional["Embeddings"]:
    """The pretrained vectors of the run's vocabulary (from the cache after the first run); None for an
    embedding learned from scratch."""
    from transferlab.models.vectors import load_embeddings

    source = locate_vectors(cfg.base_model, cfg.paths.data_dir)
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
