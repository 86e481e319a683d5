"""Labelled text tables: read, check and split them before TensorFlow starts, then vectorize in tf.data.

The table is read with pandas (CSV, TSV or Parquet, one file or a glob of several). Labels become
class indices in a fixed order, saved with the run. Vectorization (`keras.layers.TextVectorization`)
is adapted on the training split only and runs in the `tf.data` pipeline, not inside the model:
it is CPU-only and fails inside a model under distribution strategies. The exported model gets the
layer in front, so it predicts from raw strings.
"""

from __future__ import annotations

import csv
import glob
import gzip
import hashlib
import io
import logging
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from transferlab.config import BadFilePolicy, DatasetConfig, separator_char
from transferlab.download import fetch, fetch_and_unpack
from transferlab.errors import DataError

if TYPE_CHECKING:
    import keras
    import pandas as pd

    from transferlab.data import SplitData

log = logging.getLogger(__name__)

TABLE_SUFFIXES = (".csv", ".tsv", ".txt", ".parquet", ".csv.gz", ".tsv.gz")
ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz")


@dataclass
class TextSplit:
    texts: list[str] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.texts)


@dataclass
class TextPlan:
    """Which text goes to which split with which label; decided before TensorFlow is imported."""

    files: list[Path]
    class_names: list[str]
    train: TextSplit
    validation: TextSplit
    test: TextSplit
    # Rows left out under `dataset.on_bad_file=skip`, as "file:line".
    skipped: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {"train": len(self.train), "validation": len(self.validation), "test": len(self.test)}

    def fingerprint(self) -> str:
        """Hash of every text with its split and label: same data, same hash."""
        digest = hashlib.sha256()
        for name, split in (("train", self.train), ("validation", self.validation), ("test", self.test)):
            for text, label in zip(split.texts, split.labels, strict=True):
                digest.update(f"{name}\t{label}\t{text}\n".encode())
        return digest.hexdigest()[:16]


@dataclass
class Table:
    """Texts and raw labels of one or more files, with where each row came from (for error messages)."""

    texts: list[object]
    labels: list[object]
    origins: list[str]


def plan_text_data(cfg: DatasetConfig, data_dir: str, seed: int) -> TextPlan:
    """Read, check and split the configured tables."""
    files = locate_tables(cfg.path, cfg, data_dir)
    table = read_tables(files, cfg)
    test_table = read_tables(locate_tables(cfg.test_path, cfg, data_dir), cfg) if cfg.test_path else None
    skipped = drop_bad_rows(table, cfg.on_bad_file) + (drop_bad_rows(test_table, cfg.on_bad_file) if test_table else [])
    class_names = _class_names(table, cfg)
    labels = _label_indices(table, class_names)
    plan = _split(cfg, table.texts, labels, class_names, seed, has_test_table=test_table is not None)
    if test_table is not None:
        plan.test = TextSplit(list(map(str, test_table.texts)), _label_indices(test_table, class_names))
    plan.files, plan.skipped = files, skipped
    return plan


def locate_tables(path: str, cfg: DatasetConfig, data_dir: str) -> list[Path]:
    """The files `path` names (a glob allowed), downloaded from `dataset.url` first when there are none."""
    pattern = str(Path(path).expanduser())
    files = sorted(Path(p) for p in glob.glob(pattern))
    if not files and cfg.url and path == cfg.path:
        _download(cfg, Path(pattern), data_dir)
        files = sorted(Path(p) for p in glob.glob(pattern))
    key = "dataset.path" if path == cfg.path else "dataset.test_path"
    if not files:
        raise DataError(
            f"{key} '{path}' matches no file: point it at a CSV, TSV or Parquet file (or a glob of them)"
            + ("" if cfg.url else ", or set dataset.url to download one")
        )
    tables = [f for f in files if not f.is_dir()]
    if not tables:
        raise DataError(
            f"{key} '{path}' is a folder, not a table; name the file, or a glob such as {key}='{files[0] / '*.csv'}'"
        )
    return tables


def _download(cfg: DatasetConfig, pattern: Path, data_dir: str) -> None:
    """A table is saved as the configured path; an archive is unpacked into the path's folder."""
    cache = Path(data_dir) / "downloads"
    if cfg.url.lower().endswith(ARCHIVE_SUFFIXES):
        folder = next(p for p in [pattern, *pattern.parents] if not glob.has_magic(str(p)) and p != pattern)
        fetch_and_unpack(cfg.url, folder, cache, cfg.sha256, cfg.archive_subdir)
        return
    if glob.has_magic(str(pattern)):
        raise DataError(f"dataset.path '{pattern}' is a glob, but dataset.url '{cfg.url}' is one file; name the file")
    downloaded = fetch(cfg.url, cache, cfg.sha256)
    pattern.parent.mkdir(parents=True, exist_ok=True)
    pattern.write_bytes(downloaded.read_bytes())


def read_tables(files: list[Path], cfg: DatasetConfig) -> Table:
    """Text and label columns of every file, each row tagged with its file and line number."""
    table = Table([], [], [])
    for file in files:
        frame, shape = _read_frame(file, cfg)
        text_column, label_column = _columns(file, frame, shape, cfg)
        if frame.empty:
            raise DataError(f"'{file}' has no rows{' below its header line' if shape.header else ''}; add labelled texts")
        first_line = 2 if shape.header else 1  # 1-based, after the header line if there is one
        table.texts.extend(frame[text_column].tolist())
        table.labels.extend(frame[label_column].tolist())
        table.origins.extend(f"{file}:{first_line + i}" for i in range(len(frame)))
    return table


@dataclass(frozen=True)
class TableShape:
    """How one file is read: its separator (None for Parquet), and whether its first row names the columns."""

    separator: Optional[str]
    header: bool


# Separators tried when the configured one does not split the file.
COMMON_SEPARATORS = (",", "\t", ";", "|")
SNIFF_BYTES = 1 << 16


def sniff_shape(file: Path, cfg: DatasetConfig) -> TableShape:
    """The configured shape, corrected where the file's first lines contradict it.

    A separator that does not split the first lines alike (into the configured number of columns)
    is replaced by the common one that does; with `dataset.column_names` set, a first row holding
    the text column's name is a header line all the same (the tutorial's CSV given to a preset made
    for a headerless TSV).
    """
    by_suffix = "\t" if file.name.endswith((".tsv", ".txt", ".tsv.gz")) else ","
    separator = separator_char(cfg.separator) if cfg.separator else by_suffix
    rows = _first_rows(file)
    if "\0" in rows or _mostly_binary(rows):
        raise DataError(f"'{file}' is binary, not a CSV or TSV table; point dataset.path at a text table (or a .parquet file)")
    wanted = len(cfg.column_names) if cfg.column_names else None

    def splits(sep: str) -> bool:
        """Every sniffed line into the same number of fields: the configured number, else at least two."""
        counts = _field_counts(rows, sep)
        fields = next(iter(counts)) if len(counts) == 1 else 0
        return fields == wanted if wanted else fields > 1

    if rows and not splits(separator):
        for other in COMMON_SEPARATORS:
            if other != separator and splits(other):
                log.info("'%s': dataset.separator %r does not split its lines, %r does; reading it with %r",
                         file, separator, other, other)
                separator = other
                break
    header = cfg.column_names is None
    if not header and rows:
        first = next(csv.reader(io.StringIO(rows), delimiter=separator, quoting=_quoting(separator)), [])
        if cfg.text_column in (f.strip() for f in first):
            log.info("'%s': the first row names the columns (%s); reading it as a header line", file, ", ".join(first))
            header = True
    return TableShape(separator, header)


def _first_rows(file: Path) -> str:
    """The first complete lines of the file, decoded leniently (the last, possibly cut, line dropped)."""
    opener = gzip.open if file.name.endswith(".gz") else open
    try:
        with opener(file, "rb") as raw:
            chunk = raw.read(SNIFF_BYTES)
    except (OSError, EOFError) as exc:
        raise DataError(f"cannot open '{file}': {_one_line(exc)}; fix dataset.path or the file") from exc
    if not chunk.strip():
        raise DataError(f"'{file}' is empty; point dataset.path at a table of texts and labels")
    text = chunk.decode("utf-8", errors="replace")
    lines = text.splitlines(keepends=True)
    if len(chunk) == SNIFF_BYTES and len(lines) > 1:
        lines = lines[:-1]
    return "".join(line for line in lines[:20] if line.strip())


def _mostly_binary(text: str) -> bool:
    """Text undecodable as UTF-8 in more than a tenth of its characters: not a table in any encoding pandas reads."""
    return text.count("\ufffd") > len(text) / 10


def _quoting(separator: str) -> int:
    """Tab-separated sentence files quote nothing; a stray " must not swallow the next lines."""
    return csv.QUOTE_NONE if separator == "\t" else csv.QUOTE_MINIMAL


def _field_counts(rows: str, separator: str) -> set[int]:
    try:
        return {len(r) for r in csv.reader(io.StringIO(rows), delimiter=separator, quoting=_quoting(separator)) if r}
    except csv.Error:
        return set()


def _columns(file: Path, frame: "pd.DataFrame", shape: TableShape, cfg: DatasetConfig) -> tuple[str, str]:
    """The text and label columns of this file, named by the fix when one is missing.

    When the file's own header replaced `dataset.column_names`, the configured names still say which
    position holds what: a label column under another name there is taken by its position.
    """
    columns = [str(c) for c in frame.columns]
    text_column, label_column = cfg.text_column, cfg.label_column
    by_position = shape.header and cfg.column_names and len(cfg.column_names) == len(columns)
    if by_position and text_column in columns and label_column not in columns and label_column in cfg.column_names:
        position = list(cfg.column_names).index(label_column)
        if columns.index(text_column) == list(cfg.column_names).index(text_column) and columns[position] != text_column:
            log.info("'%s': label column '%s' of dataset.column_names is named '%s' in the file's header; using it",
                     file, label_column, columns[position])
            label_column = columns[position]
    wanted = (("text_column", text_column), ("label_column", label_column))
    missing = [(key, name) for key, name in wanted if name not in columns]
    if not missing:
        return text_column, label_column
    others = [c for c in columns if c not in (text_column, label_column)]
    if len(missing) == 1 and len(others) == 1:
        fix = f"add dataset.{missing[0][0]}={others[0]}"
    else:
        fix = "set dataset.text_column and dataset.label_column" + (
            ", or dataset.column_names for a file without a header line" if shape.header else "")
    names = ", ".join(repr(name) for _, name in missing)
    keys = ", ".join(f"dataset.{key}" for key, _ in missing)
    raise DataError(f"'{file}' has no column {names} ({keys}; columns: {', '.join(columns)}); {fix}")


def _read_frame(file: Path, cfg: DatasetConfig) -> tuple["pd.DataFrame", TableShape]:
    import pandas as pd

    if file.suffix == ".parquet":
        try:
            return pd.read_parquet(file), TableShape(None, header=True)
        except ImportError as exc:
            raise DataError(f"cannot read '{file}': {_one_line(exc)}; install pyarrow to read Parquet files") from exc
        except Exception as exc:  # pyarrow raises its own types for a corrupt or truncated file
            raise DataError(
                f"cannot read '{file}' as Parquet: {_one_line(exc)}; replace the file (a corrupt or partial copy?)"
            ) from exc
    shape = sniff_shape(file, cfg)
    try:
        frame = pd.read_csv(
            file,
            sep=shape.separator,
            header="infer" if shape.header else None,
            names=None if shape.header else cfg.column_names,
            quoting=_quoting(shape.separator),
            dtype={cfg.text_column: str},
            keep_default_na=False,
            na_values=[""],
            encoding_errors="replace",
        )
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError, OSError) as exc:
        raise DataError(
            f"cannot read '{file}' as a table: {_one_line(exc)}; check dataset.separator and the file"
        ) from exc
    frame.columns = [str(c).strip() if shape.header else c for c in frame.columns]
    return frame, shape


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def drop_bad_rows(table: Table, policy: BadFilePolicy) -> list[str]:
    """Rows with an empty or missing text or label: the first named in an error, or dropped and counted."""
    bad = [i for i, (text, label) in enumerate(zip(table.texts, table.labels, strict=True))
           if _missing(label) or _missing(text) or not str(text).strip()]
    if not bad:
        return []
    first = bad[0]
    what = "label" if _missing(table.labels[first]) else "text"
    if len(bad) == len(table.texts):  # not bad rows but a table read in the wrong shape
        raise DataError(
            f"every row has an empty or missing {what} (first: {table.origins[first]}): the file is not read as "
            "the config describes it; check dataset.separator, dataset.column_names, dataset.text_column and "
            "dataset.label_column against the file"
        )
    if policy is BadFilePolicy.fail:
        more = f" (and {len(bad) - 1} more rows)" if len(bad) > 1 else ""
        raise DataError(
            f"{table.origins[first]}: empty or missing {what}{more}; fix the rows, "
            "or set dataset.on_bad_file=skip to leave them out"
        )
    log.warning("skipping %d row(s) with an empty text or label, e.g. %s", len(bad), table.origins[first])
    drop = set(bad)
    skipped = [table.origins[i] for i in bad]
    for column in ("texts", "labels", "origins"):
        setattr(table, column, [v for i, v in enumerate(getattr(table, column)) if i not in drop])
    return skipped


def _missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _label_key(value: object) -> str:
    """Labels as class names: 1, 1.0 and "1" are the same class."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip()


def _class_names(table: Table, cfg: DatasetConfig) -> list[str]:
    present = sorted({_label_key(v) for v in table.labels}, key=lambda s: (not _is_number(s), _number_or_text(s)))
    if cfg.classes is not None:
        return [str(name) for name in cfg.classes]
    if len(present) < 2:
        raise DataError(
            f"the label column of '{cfg.path}' has only one class ({present}); a classifier needs at least two: "
            "check dataset.label_column, or add rows of another class"
        )
    return present


def _label_indices(table: Table, class_names: list[str]) -> list[int]:
    index = {name: i for i, name in enumerate(class_names)}
    labels = []
    for label, origin in zip(table.labels, table.origins, strict=True):
        key = _label_key(label)
        if key not in index:
            raise DataError(
                f"{origin}: label '{key}' is not one of the configured classes {class_names}; "
                "fix the label or set dataset.classes"
            )
        labels.append(index[key])
    return labels


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _number_or_text(text: str) -> float | str:
    return float(text) if _is_number(text) else text


def _split(
    cfg: DatasetConfig, texts: list, labels: list[int], class_names: list[str], seed: int, has_test_table: bool
) -> TextPlan:
    """Seeded, stratified train/validation/test split (scikit-learn), then the optional per-class cap."""
    from sklearn.model_selection import train_test_split

    texts = [str(t) for t in texts]
    counts = {name: labels.count(i) for i, name in enumerate(class_names)}
    if missing := [name for name, n in counts.items() if n == 0]:
        raise DataError(f"class(es) {missing} have no rows in the table; remove them from dataset.classes")
    test_fraction = 0.0 if has_test_table else cfg.test_split
    held_out = test_fraction + cfg.validation_split
    needed = math.ceil(2 / held_out) if held_out else 1
    if (few := min(counts.values())) < needed:
        raise DataError(
            f"a class has only {few} rows, too few to stratify the held-out splits; add rows "
            "or lower dataset.validation_split / dataset.test_split"
        )
    if not cfg.validation_split:
        raise DataError(
            "the validation split is empty, but early stopping and checkpoints need it; "
            "set dataset.validation_split above 0"
        )
    indices = list(range(len(texts)))
    try:
        rest, test = (indices, []) if not test_fraction else train_test_split(
            indices, test_size=test_fraction, random_state=seed, stratify=labels
        )
        train, validation = train_test_split(
            rest, test_size=cfg.validation_split / (1 - test_fraction), random_state=seed,
            stratify=[labels[i] for i in rest],
        )
    except ValueError as exc:  # e.g. a held-out split smaller than the number of classes
        raise DataError(
            f"cannot split {len(texts)} rows of {len(class_names)} classes by class: {exc}; add rows "
            "or raise dataset.validation_split / dataset.test_split"
        ) from exc
    if cfg.train_per_class:
        train = _first_per_class(train, labels, cfg.train_per_class)

    def split(rows: list[int]) -> TextSplit:
        return TextSplit([texts[i] for i in rows], [labels[i] for i in rows])

    return TextPlan([], class_names, split(train), split(validation), split(test))


def _first_per_class(rows: list[int], labels: list[int], limit: int) -> list[int]:
    seen: Counter[int] = Counter()
    kept = []
    for i in rows:
        seen[labels[i]] += 1
        if seen[labels[i]] <= limit:
            kept.append(i)
    return kept


def build_text_pipelines(plan: TextPlan, cfg: DatasetConfig, seed: int) -> "SplitData":
    """Vectorized splits for `fit`; the adapted vectorizer travels with them for export."""
    import keras
    import tensorflow as tf

    from transferlab.data import assemble_splits

    vectorizer = keras.layers.TextVectorization(
        max_tokens=cfg.vocab_size, output_sequence_length=cfg.max_length, name="vectorize"
    )
    vectorizer.adapt(tf.data.Dataset.from_tensor_slices(plan.train.texts).batch(1024))

    def vectorized(split: TextSplit) -> tf.data.Dataset:
        ds = tf.data.Dataset.from_tensor_slices((split.texts, split.labels)).batch(1024)
        ds = ds.map(lambda text, y: (vectorizer(text), y), num_parallel_calls=tf.data.AUTOTUNE).unbatch()
        # unbatch() hides the length; Keras needs it to end epochs without running the input dry.
        ds = ds.apply(tf.data.experimental.assert_cardinality(len(split)))
        return ds.cache() if cfg.cache else ds

    return assemble_splits(plan, vectorized, cfg.batch_size, seed, vectorizer=vectorizer)


def with_vectorizer(model: "keras.Model", vectorizer: "keras.layers.TextVectorization") -> "keras.Model":
    """The trained model behind its vectorizer: raw strings in, logits out (what `model.keras` holds)."""
    import keras

    texts = keras.Input(shape=(), dtype="string", name="text")
    return keras.Model(texts, model(vectorizer(texts)), name=f"{model.name}_text")
