"""Reading prediction inputs as training read them: image files, or texts from tables, text files or stdin."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from transferlab.config.schema import BadFilePolicy
from transferlab.data.images import IMAGE_SUFFIXES, TF_FORMATS
from transferlab.errors import DataError, first_line

log = logging.getLogger(__name__)


TABLE_SUFFIXES = (".csv", ".tsv", ".parquet", ".csv.gz", ".tsv.gz")

TEXT_SUFFIXES = (*TABLE_SUFFIXES, ".txt")

SKIP_HINT = "or pass --on-bad-file skip to leave unreadable inputs out"


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
        raise DataError(f"cannot decode image '{path}': {first_line(exc)}") from exc
    return tf.image.resize(pixels, size).numpy()


def load_images(files: list[Path], size: tuple[int, int]) -> np.ndarray:
    """A batch of images as training fed them; the first unreadable one is an error."""
    return np.stack([read_image(file, size) for file in files])


class ImageBatches:
    """Loads batches of images for `in_batches`; an unreadable one stops prediction or is skipped and counted."""

    def __init__(
        self, size: tuple[int, int], policy: BadFilePolicy, transform: Callable = lambda x: x,
        read: Callable[[Path, tuple[int, int]], np.ndarray] = read_image,
    ):
        # `read`: an export folder's prediction reads without TensorFlow (transferlab.export.serve).
        self.size, self.policy, self.transform, self.read = size, policy, transform, read
        self.skipped: dict[Path, str] = {}

    def __call__(self, files: list[Path]) -> tuple[list[Path], Optional[np.ndarray]]:
        kept, pixels = [], []
        for file in files:
            try:
                pixels.append(self.read(file, self.size))
                kept.append(file)
            except DataError as exc:
                if self.policy is BadFilePolicy.fail:
                    raise DataError(f"{exc}; delete or replace it, {SKIP_HINT}") from exc
                self.skipped[file] = first_line(exc.__cause__) if exc.__cause__ else str(exc)
        return kept, self.transform(np.stack(pixels)) if pixels else None

    def report(self, total: int) -> None:
        """One warning for every skipped image, or the error when none could be read."""
        if not self.skipped:
            return
        first, reason = next(iter(self.skipped.items()))
        if len(self.skipped) == total:
            raise DataError(f"none of the {total} image(s) could be decoded, e.g. '{first}' ({reason}); give readable images")
        log.warning("skipped %d unreadable image(s) of %d, e.g. %s (%s)", len(self.skipped), total, first, reason)


def read_texts(inputs: list[str], column: str, policy: BadFilePolicy = BadFilePolicy.fail) -> list[str]:
    """Texts from tables (CSV/TSV/Parquet: the `column`), plain text files (one per line), stdin ("-"), or
    the argument itself when it is a text (see `is_literal_text`).

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
        if is_literal_text(item):
            texts.append(item)
            continue
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


_TEXT_INPUTS = "name CSV/TSV/Parquet tables, text files (one text a line), - for stdin, or quote a text of several words"


def is_literal_text(item: str) -> bool:
    """An argument that is a text to classify, not a file: several words, naming no file that exists and not
    ending like one (so a mistyped 'my reviews.csv' is still reported missing)."""
    if len(item.split()) < 2 or item.lower().endswith((*TEXT_SUFFIXES, *IMAGE_SUFFIXES)):
        return False
    try:
        return not Path(item).exists()
    except (OSError, ValueError):  # a name too long for the file system, or with a NUL in it
        return True


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
        raise DataError(f"cannot read '{path}' as a table: {first_line(exc)}; check the file") from exc
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
