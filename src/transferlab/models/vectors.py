"""Pretrained word vectors (GloVe, word2vec text format, fastText `.vec`) as a vocabulary's embedding matrix.

Only the lines of words in the run's vocabulary are parsed, and those all at once with NumPy,
instead of turning every one of the file's (often 400,000) lines into an array first. The matrix is
then cached under the data directory, keyed by the file and the vocabulary, so the next run with
the same data reads a small `.npz` instead of the vectors file.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import logging
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Iterator, Optional

import numpy as np

from transferlab.atomic import write_arrays
from transferlab.config.schema import BaseModelConfig
from transferlab.data.download import fetch
from transferlab.errors import ConfigError, DataError

log = logging.getLogger(__name__)

# Base names of text experiments: the three vector formats share one loader; random_embedding
# learns its vectors from scratch (the no-transfer comparison).
VECTOR_BASES = ("glove", "word2vec", "fasttext")
RANDOM_EMBEDDING = "random_embedding"
TEXT_BASES = (*VECTOR_BASES, RANDOM_EMBEDDING)


@dataclass(frozen=True)
class VectorsFile:
    """A vectors file on disk; `member` names the file inside a `.zip`."""

    path: Path
    member: Optional[str] = None

    def __str__(self) -> str:
        return f"{self.path}!{self.member}" if self.member else str(self.path)


@dataclass
class Embeddings:
    """One row per vocabulary entry; padding, out-of-vocabulary and uncovered words are zero rows."""

    matrix: np.ndarray
    found: int
    source: str

    @property
    def coverage(self) -> float:
        """Words with a pretrained vector / vocabulary size (padding and OOV tokens excluded)."""
        words = len(self.matrix) - 2
        return self.found / words if words > 0 else 0.0


def check_text_base(cfg: BaseModelConfig) -> None:
    """The base settings a text run needs, checked before anything is read."""
    if cfg.name not in TEXT_BASES:
        raise ConfigError(
            f"base_model.name='{cfg.name}' is an image base, but the dataset is text; "
            f"use base_model={' / base_model='.join(TEXT_BASES)}"
        )
    if cfg.dim is None:
        raise ConfigError("base_model.dim is not set: give the word vectors' size, e.g. base_model.dim=100")
    has_source = cfg.path is not None or cfg.url is not None
    if cfg.name == RANDOM_EMBEDDING and has_source:
        raise ConfigError("base_model=random_embedding learns vectors from scratch; remove base_model.path/url")
    if cfg.name != RANDOM_EMBEDDING and not has_source:
        raise ConfigError(
            f"base_model={cfg.name} needs its vectors: set base_model.path to a vectors file "
            "(.txt, .vec, .gz or .zip) or base_model.url to download one"
        )


def locate_vectors(cfg: BaseModelConfig, data_dir: str) -> Optional[VectorsFile]:
    """The configured vectors file (downloaded once when only a URL is given), its dimension checked."""
    if cfg.name == RANDOM_EMBEDDING:
        return None
    if cfg.path is not None:
        path = Path(cfg.path).expanduser()
        if not path.is_file():
            raise DataError(f"base_model.path '{path}' does not exist; point it at a word vectors file")
    else:
        path = fetch(cfg.url, Path(data_dir) / "downloads", cfg.sha256, key="base_model")
    source = VectorsFile(path, _zip_member(path, cfg.member, cfg.dim))
    check_dimension(source, cfg.dim)
    return source


def _zip_member(path: Path, member: Optional[str], dim: int) -> Optional[str]:
    """The member of a zip to read: the configured one, the only text file, or the one named for `dim`."""
    if not zipfile.is_zipfile(path):
        if member is not None:
            raise ConfigError(f"base_model.member is set but '{path}' is not a zip file; remove base_model.member")
        return None
    with zipfile.ZipFile(path) as archive:
        names = [n for n in archive.namelist() if not n.endswith("/")]
    if member is not None:
        if member not in names:
            raise DataError(f"'{path}' has no member '{member}'; it holds {', '.join(names)}")
        return member
    candidates = [n for n in names if n.endswith((".txt", ".vec"))]
    by_dim = [n for n in candidates if f"{dim}d" in Path(n).name]
    if len(candidates) == 1 or len(by_dim) == 1:
        return (by_dim or candidates)[0]
    raise ConfigError(f"'{path}' holds several vector files ({', '.join(candidates)}); choose one with base_model.member")


@contextmanager
def open_lines(source: VectorsFile) -> Iterator[IO[bytes]]:
    """The file's lines as bytes, whether plain, gzip-compressed or a zip member."""
    try:
        if source.member is not None:
            with zipfile.ZipFile(source.path) as archive, archive.open(source.member) as raw:
                yield io.BufferedReader(raw, buffer_size=1 << 20)
        elif source.path.suffix == ".gz":
            with gzip.open(source.path, "rb") as raw:
                yield raw
        else:
            with open(source.path, "rb", buffering=1 << 20) as raw:
                yield raw
    except (OSError, zipfile.BadZipFile, EOFError) as exc:
        raise DataError(f"cannot read the word vectors '{source}': {exc}") from exc


def _header(line: bytes) -> Optional[tuple[int, int]]:
    """word2vec and fastText files open with "<count> <dim>"; GloVe files do not."""
    parts = line.split()
    if len(parts) == 2 and all(p.isdigit() for p in parts):
        return int(parts[0]), int(parts[1])
    return None


def check_dimension(source: VectorsFile, dim: int) -> None:
    """Compare the file's vector size with `base_model.dim` on its header or first vector line."""
    with open_lines(source) as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            header = _header(line)
            found = header[1] if header else len(line.split()) - 1
            if found != dim:
                raise DataError(
                    f"'{source}' line {number} has {found}-d vectors but base_model.dim={dim}; "
                    f"set base_model.dim={found} or use the {dim}-d vectors file"
                )
            return
    raise DataError(f"the word vectors file '{source}' is empty")


def load_embeddings(source: VectorsFile, dim: int, vocabulary: list[str], cache_dir: Path) -> Embeddings:
    """The embedding matrix of `vocabulary`, from the cache when this file and vocabulary were seen before."""
    cache = cache_dir / f"{_cache_key(source, dim, vocabulary)}.npz"
    if cache.is_file():
        with np.load(cache) as stored:
            return Embeddings(stored["matrix"], int(stored["found"]), str(source))
    with open_lines(source) as lines:
        matrix, found = parse_vectors(lines, dim, vocabulary, str(source))
    write_arrays(cache, matrix=matrix, found=np.int64(found))
    return Embeddings(matrix, found, str(source))


def parse_vectors(lines: IO[bytes], dim: int, vocabulary: list[str], source: str) -> tuple[np.ndarray, int]:
    """Rows of the vocabulary's words; the first occurrence of a word wins, as in dictionary loaders.

    Entries 0 and 1 of a TextVectorization vocabulary are padding and the OOV token: never looked up.
    """
    wanted = {word.encode("utf-8"): row for row, word in enumerate(vocabulary) if row >= 2}
    rows, values, line_numbers = [], [], []
    for number, line in enumerate(lines, start=1):
        word, _, rest = line.partition(b" ")
        row = wanted.pop(word, None)
        if row is None:
            if number == 1 and _header(line):
                continue
            if not wanted:
                break
            continue
        rows.append(row)
        values.append(rest)
        line_numbers.append(number)
    matrix = np.zeros((len(vocabulary), dim), dtype=np.float32)
    if rows:
        with np.errstate(over="ignore"):  # a value beyond float32 becomes inf, refused just below
            parsed = _parse_floats(values, dim, line_numbers, source)
        # A nan or inf vector would turn every loss it touches into nan, epochs later.
        if not (finite := np.isfinite(parsed).all(axis=1)).all():
            number = line_numbers[int(np.argmin(finite))]
            raise DataError(
                f"'{source}' line {number} has a value that is nan or infinite; fix or delete the line "
                "(or use an intact copy of the vectors file)"
            )
        matrix[rows] = parsed
    return matrix, len(rows)


def _parse_floats(values: list[bytes], dim: int, line_numbers: list[int], source: str) -> np.ndarray:
    """All selected lines in one NumPy parse; if that fails, line by line to name the bad line."""
    try:
        flat = np.array(b" ".join(values).split(), dtype=np.float32)
        if flat.size == len(values) * dim:
            return flat.reshape(len(values), dim)
    except ValueError:
        pass
    return np.stack([_parse_line(raw, dim, number, source) for raw, number in zip(values, line_numbers, strict=True)])


def _parse_line(raw: bytes, dim: int, number: int, source: str) -> np.ndarray:
    fields = raw.split()
    if len(fields) != dim:
        raise DataError(
            f"'{source}' line {number} has {len(fields)} values, not base_model.dim={dim}; "
            "fix or delete the line, or set base_model.dim to the file's vector size"
        )
    try:
        return np.array(fields, dtype=np.float32)
    except ValueError:
        raise DataError(f"'{source}' line {number} has a value that is not a number; fix or delete the line") from None


def _cache_key(source: VectorsFile, dim: int, vocabulary: list[str]) -> str:
    stat = source.path.stat()
    digest = hashlib.sha256(f"{source.path.resolve()}|{source.member}|{stat.st_size}|{stat.st_mtime_ns}|{dim}".encode())
    digest.update("\n".join(vocabulary).encode("utf-8"))
    return digest.hexdigest()[:24]
