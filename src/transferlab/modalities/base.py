"""The one interface every input kind implements, so the recipe, the schedule and the reports never ask
which kind they hold.

A modality is to a run what a KerasHub task's preprocessor is to its backbone: it turns the
dataset into batches the model reads, builds the classifier on the chosen base, and says what one
example is (a file, a text). The methods are grouped by when they run: before TensorFlow (checks
and the data plan, so every config and data error comes first), with TensorFlow (pipelines,
model, features), after training (the exported model, the report's extras), and at prediction.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, ClassVar, Optional, Sequence

from transferlab.config.schema import BadFilePolicy, DatasetKind, ExperimentConfig
from transferlab.data.splits import DataPlan

if TYPE_CHECKING:
    import keras
    import numpy as np

    from transferlab.data.splits import SplitData
    from transferlab.models.heads import TaskSpec
    from transferlab.reporting.evaluation import Misclassified


@dataclass
class Classifier:
    """The task the data poses, how to build the model for it, and what building it measured."""

    task: "TaskSpec"
    build: Callable[[], "keras.Model"]
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class PredictOptions:
    """How prediction reads its inputs; the run's own dataset settings unless given."""

    on_bad_file: BadFilePolicy
    text_column: str
    batch_size: int = 32


class Modality(ABC):
    """Everything about a run that depends on what one example is."""

    kind: ClassVar[DatasetKind]
    # What one example is called in exported features and in predictions ("path", "text").
    item: ClassVar[str]
    # The column prediction rows name the input by.
    prediction_key: ClassVar[str]

    # Before TensorFlow.
    @abstractmethod
    def check(self, cfg: ExperimentConfig) -> None:
        """The base, head and schedule settings this input kind can use, checked without building anything."""

    @abstractmethod
    def plan(self, cfg: ExperimentConfig) -> DataPlan:
        """Find, read, check and split the data: every data error surfaces here."""

    # With TensorFlow.
    @abstractmethod
    def pipelines(self, cfg: ExperimentConfig, plan: DataPlan) -> "SplitData":
        """The train/validation/test tf.data pipelines the model reads."""

    @abstractmethod
    def classifier(self, cfg: ExperimentConfig, data: "SplitData") -> Classifier:
        """The pretrained base with a new head, as a builder (a resumed run rebuilds it)."""

    def feature_folder(self, cfg: ExperimentConfig) -> Optional[Path]:
        """Where the frozen base's features are cached between runs; None keeps them in memory only."""
        return None

    def caches_head_features(self, cfg: ExperimentConfig) -> bool:
        """Whether the head phase trains on stored base features unless the config says otherwise."""
        return False

    def input_baselines(self, plan: DataPlan) -> dict[str, float]:
        """Baselines on the raw inputs, without the base (e.g. bag-of-words for text): what transfer adds."""
        return {}

    # After training.
    def exported(self, model: "keras.Model", data: "SplitData") -> "keras.Model":
        """The model as saved for prediction: it takes what a user has (pixels, strings)."""
        return model

    def figures(self, cfg: ExperimentConfig, data: "SplitData") -> dict[str, Callable[[], object]]:
        """Figures of this input kind beyond the curves, the confusion matrix and the mistakes."""
        return {}

    def write_mistakes(self, wrong: "Misclassified", data: "SplitData", run_dir: Path) -> None:
        """Keep the wrongly classified test examples in a form one can read; by default only the plot shows them."""

    def test_examples(self, cfg: ExperimentConfig, plan: DataPlan, limit: Optional[int]) -> tuple["np.ndarray", "np.ndarray"]:
        """Up to `limit` test examples (all for None) as the saved model takes them, and their labels: what an
        export is checked on, and the MLflow model's input example. Only as many batches as needed are read."""
        import numpy as np

        batches: list[tuple[np.ndarray, np.ndarray]] = []
        for x, y in self.pipelines(cfg, plan).test:
            batches.append((np.asarray(x), np.asarray(y)))
            if limit is not None and sum(len(labels) for _, labels in batches) >= limit:
                break
        inputs, labels = (np.concatenate([batch[i] for batch in batches]) for i in (0, 1))
        return inputs[:limit], labels[:limit]

    # Prediction.
    @abstractmethod
    def reads(self, model: "keras.Model") -> bool:
        """True when a saved model takes this kind of input."""

    @abstractmethod
    def predict(self, model: "keras.Model", inputs: Sequence[str], options: PredictOptions) -> tuple[list, "np.ndarray"]:
        """The inputs that could be read and the model's logits for them."""


def configured_feature_folder(cfg: ExperimentConfig) -> Optional[Path]:
    """`paths.feature_cache`, inside `paths.data_dir` unless absolute; None when it is null."""
    return Path(cfg.paths.data_dir) / cfg.paths.feature_cache if cfg.paths.feature_cache else None
