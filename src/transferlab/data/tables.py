"""Reading labelled text tables (CSV, TSV, Parquet, one file or a glob): separator, header and columns sniffed, bad rows reported."""

from __future__ import annotations

import csv
import gzip
import io
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from transferlab.config.schema import BadFilePolicy, DatasetConfig
from transferlab.config.validate import separator_char
from transferlab.errors import DataError, first_line

if TYPE_CHECKING:
    import pandas as pd


log = logging.getLogger(__name__)


@dataclass
class Table:
    """Texts and raw labels of one or more files, with where each row came from (for error messages)."""

    texts: list[object]
    labels: list[object]
    origins: list[str]


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
        raise DataError(f"cannot open '{file}': {first_line(exc)}; fix dataset.path or the file") from exc
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
            raise DataError(f"cannot read '{file}': {first_line(exc)}; install pyarrow to read Parquet files") from exc
        except Exception as exc:  # pyarrow raises its own types for a corrupt or truncated file
            raise DataError(
                f"cannot read '{file}' as Parquet: {first_line(exc)}; replace the file (a corrupt or partial copy?)"
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
            f"cannot read '{file}' as a table: {first_line(exc)}; check dataset.separator and the file"
        ) from exc
    frame.columns = [str(c).strip() if shape.header else c for c in frame.columns]
    return frame, shape


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
