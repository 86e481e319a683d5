"""Prediction from an export folder (<run>/export/<format>/), on the artifact's own runtime.

An ONNX or LiteRT export runs without TensorFlow: images are decoded with PIL and resized by the
same bilinear rule (half-pixel centres, no antialiasing) `tf.image.resize` applies in training, so the
pixels a PNG gives match; a JPEG may differ in the last bit, as two JPEG decoders do. What the artifact
reads and the class names come from its export.json, not from the run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from transferlab.config.schema import BadFilePolicy
from transferlab.errors import DataError, first_line


def is_export_folder(path: Optional[Path]) -> bool:
    return path is not None and (path / "export.json").is_file()


def predict_with_export(
    folder: Path, inputs: list[str], k: int, text_column: Optional[str] = None,
    on_bad_file: Optional[BadFilePolicy] = None, batch_size: int = 32,
) -> list[dict]:
    """Top-k classes of images (or, for a SavedModel of a text run, texts) from the export in `folder`."""
    from transferlab.data.inputs import ImageBatches, image_files, read_texts
    from transferlab.export.runtime import load_artifact, read_manifest
    from transferlab.predict.run import check_top_k, probabilities, top_k_rows

    check_top_k(k)
    manifest = read_manifest(folder)
    artifact = load_artifact(folder, manifest["format"])
    names, policy = manifest["class_names"], on_bad_file or BadFilePolicy.fail
    if manifest["input"]["dtype"] == "string":
        texts = read_texts(list(inputs), text_column or "text", policy)
        logits = artifact.predict(np.array(texts, dtype=str), batch_size)
        return top_k_rows(texts, probabilities(logits), names, min(k, len(names)), key="text")
    files = image_files(list(inputs))
    images = ImageBatches(tuple(manifest["input"]["shape"][1:3]), policy, read=read_image_without_tensorflow)
    kept, outputs = [], []
    for start in range(0, len(files), batch_size):
        chunk, pixels = images(files[start : start + batch_size])
        if len(chunk):
            kept.extend(chunk)
            outputs.append(artifact.predict(pixels.astype(np.float32), batch_size))
    images.report(len(files))
    return top_k_rows(kept, probabilities(np.concatenate(outputs)), names, min(k, len(names)))


def read_image_without_tensorflow(path: Path, size: tuple[int, int]) -> np.ndarray:
    """RGB pixels 0..255 at `size`, as float32."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            pixels = np.asarray(image.convert("RGB"), dtype=np.float32)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise DataError(f"cannot decode image '{path}': {first_line(exc)}") from exc
    return resize_bilinear(pixels, size)


def resize_bilinear(pixels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """`tf.image.resize(pixels, size)` (bilinear, half-pixel centres, no antialiasing) in numpy."""
    rows, cols = (_sample_points(n_in, n_out) for n_in, n_out in zip(pixels.shape[:2], size, strict=True))
    (y0, y1, wy), (x0, x1, wx) = rows, cols
    top = pixels[y0][:, x0] * (1 - wx)[None, :, None] + pixels[y0][:, x1] * wx[None, :, None]
    bottom = pixels[y1][:, x0] * (1 - wx)[None, :, None] + pixels[y1][:, x1] * wx[None, :, None]
    return (top * (1 - wy)[:, None, None] + bottom * wy[:, None, None]).astype(np.float32)


def _sample_points(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    centres = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
    lower = np.floor(centres).astype(int)
    return lower, np.minimum(lower + 1, n_in - 1), (centres - lower).astype(np.float32)
