"""Labelled text tables: read, check and split them before TensorFlow starts, then vectorize in tf.data.

The table is read with pandas (CSV, TSV or Parquet, one file or a glob of several). Labels become
class indices in a fixed order, saved with the run. Vectorization (`keras.layers.TextVectorization`)
is adapted on the training split only and runs in the `tf.data` pipeline, not inside the model:
it is CPU-only and fails inside a model under distribution strategies. The exported model gets the
layer in front, so it predicts from raw strings.
"""

from __future__ import annotations

import glob
import hashlib
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from transferlab.config.schema import DatasetConfig
from transferlab.data.download import fetch, fetch_and_unpack
from transferlab.data.tables import Table, drop_bad_rows, read_tables
from transferlab.errors import DataError

if TYPE_CHECKING:
    from transferlab.data.splits import SplitData


TABLE_SUFFIXES = (".csv", ".tsv", ".txt", ".parquet", ".csv.gz", ".tsv.gz")

ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz")


@dataclass
class TextSplit:
    texts: list[str] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def items(self) -> list[str]:
        return self.texts


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

    def example_keys(self, split: str) -> list[str]:
        files: TextSplit = getattr(self, split)
        return [f"{label}\t{text}" for text, label in zip(files.texts, files.labels, strict=True)]


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

    from transferlab.data.splits import assemble_splits

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


def build_raw_text_pipelines(plan: TextPlan, cfg: DatasetConfig, seed: int) -> "SplitData":
    """The splits as (string, label) batches, for a model that tokenizes inside (a KerasHub encoder)."""
    import tensorflow as tf

    from transferlab.data.splits import assemble_splits

    def raw(split: TextSplit) -> tf.data.Dataset:
        ds = tf.data.Dataset.from_tensor_slices((split.texts, split.labels))
        return ds.cache() if cfg.cache else ds

    return assemble_splits(plan, raw, cfg.batch_size, seed)
