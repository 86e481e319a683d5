"""Prediction with a trained run's model (images or texts), or with a stock ImageNet classifier from keras.applications.

Inputs are read as training read them: the same image suffixes, decoded and resized the same way
(grayscale, palette and RGBA become RGB; CMYK, TIFF and WebP go through PIL), and texts from the
same kinds of tables (CSV, TSV, Parquet, gzipped CSV/TSV) or plain text files, one text a line. A file that cannot be read stops prediction or is skipped and counted, like the run's
`dataset.on_bad_file`; an input of the wrong kind for the model is one clear error.
"""

from __future__ import annotations

import json
import logging
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional

import numpy as np

from transferlab.config import BadFilePolicy
from transferlab.data import IMAGE_SUFFIXES, TF_FORMATS
from transferlab.errors import ConfigError, DataError, ModelError
from transferlab.tf_runtime import import_tensorflow

if TYPE_CHECKING:
    import keras

log = logging.getLogger(__name__)

TABLE_SUFFIXES = (".csv", ".tsv", ".parquet", ".csv.gz", ".tsv.gz")
TEXT_SUFFIXES = (*TABLE_SUFFIXES, ".txt")
SKIP_HINT = "or pass --on-bad-file skip to leave unreadable inputs out"


@dataclass
class TrainedRun:
    """What prediction needs from a run directory: the model, its class names, and how the run read its data."""

    model: "keras.Model"
    class_names: list[str]
    on_bad_file: BadFilePolicy
    text_column: str


def load_run(run_dir: Path) -> TrainedRun:
    """A finished run's final model and class names, each missing or damaged file named."""
    from transferlab.models import load_trained_model

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
        raise ConfigError(f"cannot read '{summary_path}' ({_first_line(exc)}); the run's summary is damaged: rerun it") from exc
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
            f"cannot load '{model_path}' ({type(exc).__name__}: {_first_line(exc)}); the file is damaged or incomplete: "
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


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def image_files(inputs: list[str]) -> list[Path]:
    """The image files named, and those inside the folders named (recursively), in a stable order."""
    files: list[Path] = []
    for name in inputs:
        item = Path(name)
        if name == "-":
            raise DataError("'-' (stdin) gives texts, but this model classifies images; name image files or folders")
        if item.is_dir():
            files.extend(sorted(p for p in item.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES))
        elif not item.exists():
            raise DataError(f"'{item}' does not exist; name image files ({', '.join(IMAGE_SUFFIXES)}) or folders of them")
        elif item.name.lower().endswith(TEXT_SUFFIXES):
            raise DataError(f"'{item}' is a text file, but this model classifies images; name image files or folders")
        elif item.suffix.lower() not in IMAGE_SUFFIXES:
            raise DataError(f"'{item}' is not an image file ({', '.join(IMAGE_SUFFIXES)}); convert or rename it")
        else:
            files.append(item)
    if not files:
        raise DataError(f"no image files ({', '.join(IMAGE_SUFFIXES)}) in {', '.join(inputs)}; name image files or folders of them")
    return files


def read_image(path: Path, size: tuple[int, int]) -> np.ndarray:
    """RGB pixels 0..255 at `size`, decoded and resized exactly as training's pipeline does it."""
    import tensorflow as tf
    from PIL import Image

    try:
        with Image.open(path) as image:
            image.load()
            if image.format in TF_FORMATS and not (image.format == "JPEG" and image.mode == "CMYK"):
                pixels = tf.io.decode_image(path.read_bytes(), channels=3, expand_animations=False)
            else:  # what training converts to an RGB PNG first
                pixels = np.asarray(image.convert("RGB"))
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError, tf.errors.OpError) as exc:
        raise DataError(f"cannot decode image '{path}': {_first_line(exc)}") from exc
    return tf.image.resize(pixels, size).numpy()


def load_images(files: list[Path], size: tuple[int, int]) -> np.ndarray:
    """A batch of images as training fed them; the first unreadable one is an error."""
    return np.stack([read_image(file, size) for file in files])


class ImageBatches:
    """Loads batches of images for `in_batches`; an unreadable one stops prediction or is skipped and counted."""

    def __init__(self, size: tuple[int, int], policy: BadFilePolicy, transform: Callable = lambda x: x):
        self.size, self.policy, self.transform = size, policy, transform
        self.skipped: dict[Path, str] = {}

    def __call__(self, files: list[Path]) -> tuple[list[Path], Optional[np.ndarray]]:
        kept, pixels = [], []
        for file in files:
            try:
                pixels.append(read_image(file, self.size))
                kept.append(file)
            except DataError as exc:
                if self.policy is BadFilePolicy.fail:
                    raise DataError(f"{exc}; delete or replace it, {SKIP_HINT}") from exc
                self.skipped[file] = _first_line(exc.__cause__) if exc.__cause__ else str(exc)
        return kept, self.transform(np.stack(pixels)) if pixels else None

    def report(self, total: int) -> None:
        """One warning for every skipped image, or the error when none could be read."""
        if not self.skipped:
            return
        first, reason = next(iter(self.skipped.items()))
        if len(self.skipped) == total:
            raise DataError(f"none of the {total} image(s) could be decoded, e.g. '{first}' ({reason}); give readable images")
        log.warning("skipped %d unreadable image(s) of %d, e.g. %s (%s)", len(self.skipped), total, first, reason)


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


def read_texts(inputs: list[str], column: str, policy: BadFilePolicy = BadFilePolicy.fail) -> list[str]:
    """Texts from tables (CSV/TSV/Parquet: the `column`), plain text files (one per line), or stdin ("-").

    An empty text in a table stops prediction or is skipped and counted, as training treats empty rows.
    """
    texts: list[str] = []
    empty: list[str] = []
    for item in inputs:
        if item == "-":
            text = sys.stdin.buffer.read().decode("utf-8", errors="replace")  # as files are read: bad bytes replaced
            texts.extend(line for line in text.splitlines() if line.strip())
            continue
        path = Path(item)
        if path.is_dir():
            raise DataError(f"'{item}' is a folder, but this model classifies texts; {_TEXT_INPUTS}")
        if not path.is_file():
            raise DataError(f"'{item}' does not exist; {_TEXT_INPUTS}")
        if path.suffix.lower() in IMAGE_SUFFIXES:
            raise DataError(f"'{item}' is an image, but this model classifies texts; {_TEXT_INPUTS}")
        if path.name.lower().endswith(TABLE_SUFFIXES):
            cells = _table_column(path, column)
            empty += [f"{path}:{row}" for row, text in enumerate(cells, start=2) if not text.strip()]
            texts.extend(text for text in cells if text.strip())
        else:
            texts.extend(line for line in _text_lines(path) if line.strip())
    if empty:
        if policy is BadFilePolicy.fail:
            more = f" (and {len(empty) - 1} more rows)" if len(empty) > 1 else ""
            raise DataError(f"{empty[0]}: empty text{more}; fix the rows, {SKIP_HINT}")
        log.warning("skipped %d row(s) with an empty text, e.g. %s", len(empty), empty[0])
    if not texts:
        raise DataError(f"no texts in {', '.join(inputs)}; {_TEXT_INPUTS}")
    return texts


_TEXT_INPUTS = "name CSV/TSV/Parquet tables, text files (one text a line), or - for stdin"


def _table_column(path: Path, column: str) -> list[str]:
    """The `column` of a CSV/TSV/Parquet table as strings, missing cells as empty ones."""
    import pandas as pd

    try:
        if path.suffix.lower() == ".parquet":
            table = pd.read_parquet(path)
        else:
            separator = "\t" if path.name.lower().endswith((".tsv", ".tsv.gz")) else ","
            table = pd.read_csv(path, sep=separator, dtype=str, keep_default_na=False, encoding_errors="replace")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError, OSError, ImportError) as exc:
        raise DataError(f"cannot read '{path}' as a table: {_first_line(exc)}; check the file") from exc
    if column not in table.columns:
        raise DataError(f"'{path}' has no column '{column}' (columns: {', '.join(map(str, table.columns))}); use --text-column")
    return ["" if value is None else str(value) for value in table[column]]


def _text_lines(path: Path) -> list[str]:
    """A plain text file's lines; a binary file is refused rather than read as garbage texts."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read '{path}' ({exc.strerror or exc}); check the file and its permissions") from exc
    if b"\x00" in data[:8192]:
        raise DataError(f"'{path}' is a binary file, not text; {_TEXT_INPUTS}")
    return data.decode("utf-8", errors="replace").splitlines()


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
    import tensorflow as tf

    run = load_run(run_dir)
    k = min(k, len(run.class_names))
    policy = on_bad_file or run.on_bad_file
    if takes_text(run.model):
        texts = read_texts(inputs, text_column or run.text_column, policy)
        kept, logits = in_batches(run.model, texts, lambda chunk: (chunk, tf.constant(chunk)), batch_size)
        return top_k_rows(kept, probabilities(logits), run.class_names, k, key="text")
    files = image_files(inputs)
    images = ImageBatches(tuple(run.model.input_shape[1:3]), policy)
    kept, logits = in_batches(run.model, files, images, batch_size)
    images.report(len(files))
    return top_k_rows(kept, probabilities(logits), run.class_names, k)


def check_top_k(k: int) -> None:
    if k < 1:
        raise ConfigError(f"--top-k {k} must be at least 1 (the number of best classes listed per input)")


def in_batches(model, items: list, load: Callable, batch_size: int) -> tuple[list, np.ndarray]:
    """The items `load` kept and the model's outputs for them, loaded a batch at a time (a folder of photos
    need not fit in memory) and run through one traced function, which a last, smaller batch does not
    trace again."""
    from transferlab.models import inference_function

    forward = inference_function(model)
    kept: list = []
    outputs: list[np.ndarray] = []
    for start in range(0, len(items), batch_size):
        chunk, inputs = load(items[start : start + batch_size])
        if len(chunk):
            kept.extend(chunk)
            outputs.append(np.asarray(forward(inputs)))
    return kept, np.concatenate(outputs) if outputs else np.zeros((0, 1))


def predict_with_imagenet(
    name: str, inputs: list[str], k: int, batch_size: int = 32, on_bad_file: BadFilePolicy = BadFilePolicy.fail
) -> list[dict]:
    """A keras.applications classifier with its ImageNet top, decoded to the 1,000 class names."""
    check_top_k(k)
    import_tensorflow()
    import keras

    from transferlab.bases import get_base_spec

    spec = get_base_spec(name)
    if spec.constructor.split(":")[0] != "keras.applications":
        raise ConfigError(f"'{name}' is not a keras.applications model with an ImageNet classifier")
    files = image_files(inputs)
    images = ImageBatches((spec.default_size, spec.default_size), on_bad_file, spec.load("preprocess"))
    try:
        model = spec.load("constructor")(weights="imagenet")
    except Exception as exc:  # Keras' downloader raises a bare Exception offline
        raise _imagenet_unavailable(name, exc) from exc
    kept, scores = in_batches(model, files, images, batch_size)
    images.report(len(files))
    try:
        predictions = keras.applications.imagenet_utils.decode_predictions(scores, top=min(k, 1000))
    except Exception as exc:  # the class index is downloaded like the weights
        raise _imagenet_unavailable(name, exc) from exc
    return [
        {"file": str(file), "rank": rank, "class": label, "probability": float(score)}
        for file, top in zip(kept, predictions, strict=True)
        for rank, (_, label, score) in enumerate(top, start=1)
    ]


def _imagenet_unavailable(name: str, exc: Exception) -> ModelError:
    return ModelError(
        f"cannot load the ImageNet classifier {name} or its class names ({_first_line(exc)}); "
        "they are downloaded once into $KERAS_HOME/models (default ~/.keras/models)"
    )
