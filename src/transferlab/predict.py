"""Prediction with a trained run's model (images or texts), or with a stock ImageNet classifier from keras.applications."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from transferlab.data import IMAGE_SUFFIXES
from transferlab.errors import ConfigError, DataError, ModelError


def image_files(inputs: list[str]) -> list[Path]:
    """The image files named, and those inside the folders named (recursively), in a stable order."""
    files: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            files.extend(sorted(p for p in item.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES))
        elif item.is_file():
            files.append(item)
        else:
            raise DataError(f"'{item}' is neither an image file nor a folder")
    if not files:
        raise DataError(f"no image files ({', '.join(IMAGE_SUFFIXES)}) in {', '.join(inputs)}")
    return files


def load_images(files: list[Path], size: tuple[int, int]) -> np.ndarray:
    """RGB pixels 0..255 at the model's input size, as training fed them."""
    from PIL import Image

    batch = []
    for file in files:
        try:
            with Image.open(file) as image:
                batch.append(np.asarray(image.convert("RGB").resize((size[1], size[0]), Image.BILINEAR), "float32"))
        except OSError as exc:
            raise DataError(f"cannot read image '{file}': {exc}") from exc
    return np.stack(batch)


def load_run(run_dir: Path):
    """A finished run's final model and class names."""
    from transferlab.models import load_trained_model

    summary_path, model_path = run_dir / "summary.json", run_dir / "model.keras"
    if not model_path.is_file() or not summary_path.is_file():
        raise ConfigError(f"'{run_dir}' is not a finished run directory (it needs model.keras and summary.json)")
    class_names = json.loads(summary_path.read_text()).get("class_names")
    if not class_names:
        raise ConfigError(f"'{summary_path}' lists no class names; was the run completed?")
    return load_trained_model(str(model_path)), class_names


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


def takes_text(model) -> bool:
    return model.inputs[0].dtype == "string"


def read_texts(inputs: list[str], column: str) -> list[str]:
    """Texts from tables (CSV/TSV/Parquet: the `column`), plain text files (one per line), or stdin ("-")."""
    import pandas as pd

    texts: list[str] = []
    for item in inputs:
        if item == "-":
            texts.extend(line.rstrip("\n") for line in sys.stdin if line.strip())
            continue
        path = Path(item)
        if not path.is_file():
            raise DataError(f"'{item}' is not a file; give CSV/TSV/Parquet tables, text files, or - for stdin")
        if path.suffix in (".csv", ".tsv", ".parquet"):
            table = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(
                path, sep="\t" if path.suffix == ".tsv" else ",", dtype=str, keep_default_na=False
            )
            if column not in table.columns:
                raise DataError(f"'{path}' has no column '{column}' (columns: {', '.join(table.columns)}); use --text-column")
            texts.extend(table[column].astype(str))
        else:
            texts.extend(line for line in path.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip())
    if not texts:
        raise DataError(f"no texts in {', '.join(inputs)}")
    return texts


def predict_with_run(
    run_dir: Path, inputs: list[str], k: int, batch_size: int = 32, text_column: str = "text"
) -> list[dict]:
    """Top-k classes of images (files or folders) or of texts, with the run's own model."""
    import tensorflow as tf

    model, class_names = load_run(run_dir)
    k = min(k, len(class_names))
    if takes_text(model):
        texts = read_texts(inputs, text_column)
        logits = in_batches(model, texts, lambda chunk: tf.constant(chunk), batch_size)
        return top_k_rows(texts, probabilities(logits), class_names, k, key="text")
    files = image_files(inputs)
    size = tuple(model.input_shape[1:3])
    logits = in_batches(model, files, lambda chunk: load_images(chunk, size), batch_size)
    return top_k_rows(files, probabilities(logits), class_names, k)


def in_batches(model, items: list, load, batch_size: int) -> np.ndarray:
    """The model's outputs for every item, loaded a batch at a time (a folder of photos need not fit in
    memory) and run through one traced function, which a last, smaller batch does not trace again."""
    from transferlab.models import inference_function

    forward = inference_function(model)
    return np.concatenate(
        [np.asarray(forward(load(items[i : i + batch_size]))) for i in range(0, len(items), batch_size)]
    )


def predict_with_imagenet(name: str, inputs: list[str], k: int, batch_size: int = 32) -> list[dict]:
    """A keras.applications classifier with its ImageNet top, decoded to the 1,000 class names."""
    import keras

    from transferlab.bases import get_base_spec

    spec = get_base_spec(name)
    if spec.constructor.split(":")[0] != "keras.applications":
        raise ConfigError(f"'{name}' is not a keras.applications model with an ImageNet classifier")
    files = image_files(inputs)
    size, preprocess = (spec.default_size, spec.default_size), spec.load("preprocess")
    try:
        model = spec.load("constructor")(weights="imagenet")
        scores = in_batches(model, files, lambda chunk: preprocess(load_images(chunk, size)), batch_size)
        predictions = keras.applications.imagenet_utils.decode_predictions(scores, top=k)
    except Exception as exc:  # Keras' downloader raises a bare Exception offline
        raise ModelError(
            f"cannot load the ImageNet classifier {name} or its class names ({str(exc).splitlines()[0]}); "
            "they are downloaded once into $KERAS_HOME/models (default ~/.keras/models)"
        ) from exc
    return [
        {"file": str(file), "rank": rank, "class": label, "probability": float(score)}
        for file, top in zip(files, predictions, strict=True)
        for rank, (_, label, score) in enumerate(top, start=1)
    ]
