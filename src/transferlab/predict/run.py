"""Prediction with a trained run's model (images or texts), or with a stock ImageNet classifier from keras.applications.

Inputs are read as training read them: the same image suffixes, decoded and resized the same way
(grayscale, palette and RGBA become RGB; CMYK, TIFF and WebP go through PIL), and texts from the
same kinds of tables (CSV, TSV, Parquet, gzipped CSV/TSV) or plain text files, one text a line. A file that cannot be read stops prediction or is skipped and counted, like the run's
`dataset.on_bad_file`; an input of the wrong kind for the model is one clear error.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import numpy as np

from transferlab.compat.tensorflow import import_tensorflow
from transferlab.config.schema import BadFilePolicy
from transferlab.errors import ConfigError, DataError, ModelError, first_line
from transferlab.modalities.base import PredictOptions
from transferlab.modalities.registry import modality_of

if TYPE_CHECKING:
    import keras

    from transferlab.config.schema import ExperimentConfig


@dataclass
class TrainedRun:
    """What prediction needs from a run directory: the model, its class names, and how the run read its data."""

    model: "keras.Model"
    class_names: list[str]
    on_bad_file: BadFilePolicy
    text_column: str


def load_run(run_dir: Path) -> TrainedRun:
    """A finished run's final model and class names, each missing or damaged file named."""
    from transferlab.models.saved import load_trained_model

    if not run_dir.exists():
        raise ConfigError(f"run directory '{run_dir}' does not exist; pass a folder a training run wrote (it holds model.keras)")
    if not run_dir.is_dir():
        raise ConfigError(f"'{run_dir}' is a file, not a run directory; pass the folder holding model.keras and summary.json")
    summary_path, model_path = run_dir / "summary.json", run_dir / "model.keras"
    if not model_path.is_file() or not summary_path.is_file():
        raise ConfigError(
            f"'{run_dir}' is not a finished run directory (it needs model.keras and summary.json{_status(summary_path)}); "
            "pass the folder of a completed run"
        )
    try:
        class_names = json.loads(summary_path.read_text()).get("class_names")
    except (OSError, ValueError, AttributeError) as exc:
        raise ConfigError(f"cannot read '{summary_path}' ({first_line(exc)}); the run's summary is damaged: rerun it") from exc
    if not class_names:
        raise ConfigError(f"'{summary_path}' lists no class names; was the run completed?")
    if not zipfile.is_zipfile(model_path):
        raise ModelError(
            f"'{model_path}' is damaged or incomplete (not a .keras zip archive); copy it again or rerun training"
        )
    try:
        model = load_trained_model(str(model_path))
    except Exception as exc:  # Keras raises ValueError, OSError, zipfile and h5py errors alike for a damaged file
        raise ModelError(
            f"cannot load '{model_path}' ({type(exc).__name__}: {first_line(exc)}); the file is damaged or incomplete: "
            "copy it again or rerun training"
        ) from exc
    classes = max(model.output_shape[-1], 2)  # one logit is two classes
    if classes != len(class_names):
        raise ModelError(
            f"'{model_path}' predicts {classes} classes but '{summary_path}' lists {len(class_names)}; "
            "the two files come from different runs: copy both from the same run"
        )
    on_bad_file, text_column = _data_settings(run_dir / "config.yaml")
    return TrainedRun(model, list(class_names), on_bad_file, text_column)


def _status(summary_path: Path) -> str:
    """The recorded status of an unfinished run, for the error that says why it has no model."""
    try:
        status = json.loads(summary_path.read_text()).get("status")
    except (OSError, ValueError, AttributeError):
        return ""
    return f"; its summary.json says status '{status}'" if status else ""


def _data_settings(config_path: Path) -> tuple[BadFilePolicy, str]:
    """The run's dataset.on_bad_file and dataset.text_column, or the defaults when config.yaml is absent."""
    from omegaconf import OmegaConf

    try:
        dataset = OmegaConf.to_container(OmegaConf.load(config_path)).get("dataset") or {}
        return BadFilePolicy(dataset.get("on_bad_file", "fail")), str(dataset.get("text_column", "text"))
    except Exception:  # a missing or hand-edited config.yaml leaves the defaults; the model itself is what counts
        return BadFilePolicy.fail, "text"


def run_config(run_dir: Path) -> "ExperimentConfig":
    """The run's own config.yaml, as the typed config it was trained with."""
    from omegaconf import OmegaConf

    from transferlab.config.convert import to_experiment_config

    config_path = run_dir / "config.yaml"
    if not config_path.is_file():
        raise ConfigError(f"'{run_dir}' is not a finished run directory (no config.yaml to rebuild its test split from); pass the folder of a completed run")
    return to_experiment_config(OmegaConf.load(config_path))


def held_out_examples(cfg: "ExperimentConfig", limit: Optional[int]) -> tuple[np.ndarray, np.ndarray]:
    """Up to `limit` examples of the run's test split, rebuilt from its config as the saved model takes them."""
    from transferlab.modalities.registry import modality_for

    modality = modality_for(cfg)
    plan = modality.plan(cfg)
    if not len(plan.test):
        raise DataError("the run has no test split to check its model on; train it with dataset.test_split above 0")
    return modality.test_examples(cfg, plan, limit)


def probabilities(logits: np.ndarray) -> np.ndarray:
    """Class probabilities from the model's logits: one logit means two classes (sigmoid)."""
    if logits.shape[-1] == 1:
        positive = 1.0 / (1.0 + np.exp(-logits[:, 0]))
        return np.stack([1.0 - positive, positive], axis=1)
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def top_k_rows(items: list, probs: np.ndarray, class_names: list[str], k: int, key: str = "file") -> list[dict]:
    rows = []
    for item, p in zip(items, probs, strict=True):
        for rank, index in enumerate(np.argsort(-p)[:k], start=1):
            rows.append({key: str(item), "rank": rank, "class": class_names[index], "probability": float(p[index])})
    return rows


def predict_with_run(
    run_dir: Path,
    inputs: list[str],
    k: int,
    batch_size: int = 32,
    text_column: Optional[str] = None,
    on_bad_file: Optional[BadFilePolicy] = None,
) -> list[dict]:
    """Top-k classes of images (files or folders) or of texts, with the run's own model.

    `text_column` and `on_bad_file` default to the run's own dataset settings.
    """
    check_top_k(k)
    import_tensorflow()
    run = load_run(run_dir)
    k = min(k, len(run.class_names))
    modality = modality_of(run.model)
    options = PredictOptions(on_bad_file or run.on_bad_file, text_column or run.text_column, batch_size)
    kept, logits = modality.predict(run.model, inputs, options)
    return top_k_rows(kept, probabilities(logits), run.class_names, k, key=modality.prediction_key)

def check_top_k(k: int) -> None:
    if k < 1:
        raise ConfigError(f"--top-k {k} must be at least 1 (the number of best classes listed per input)")
