"""Text tables in shapes the config did not expect, and hostile files: the preset reads the tutorial's
CSV, and whatever cannot be read is one line naming the file and the fix."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
from conftest import SHARED_DATA, compose_config

from transferlab.config.convert import to_experiment_config
from transferlab.config.schema import BadFilePolicy, DatasetConfig, DatasetKind
from transferlab.data.text import plan_text_data
from transferlab.errors import DataError

SHARED_CSV = SHARED_DATA / "sentiment" / "sentiment.csv"
ROWS = [(f"a {'good' if i % 2 else 'bad'} thing, number {i}", i % 2) for i in range(40)]


def preset(path: Path, *extra: str) -> DatasetConfig:
    """The sentiment_glove_bilstm preset's dataset (a headerless TSV with columns text, label) pointed at `path`."""
    overrides = ["experiment=sentiment_glove_bilstm", f"dataset.path={path}", "paths.output_dir=unused", *extra]
    return to_experiment_config(compose_config(overrides)).dataset


def table(path: Path, header: str | None, separator: str = ",", rows=ROWS) -> Path:
    lines = [header] if header else []
    lines += [f'"{text}"{separator}{label}' if separator == "," else f"{text}{separator}{label}" for text, label in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def plain(path: Path | str, **changes) -> DatasetConfig:
    cfg = DatasetConfig(name="t", kind=DatasetKind.text, path=str(path), validation_split=0.2, test_split=0.2)
    for key, value in changes.items():
        setattr(cfg, key, value)
    return cfg


def refused(cfg: DatasetConfig, tmp_path: Path) -> str:
    with pytest.raises(DataError) as info:
        plan_text_data(cfg, str(tmp_path / "data"), 0)
    assert "\n" not in str(info.value)
    return str(info.value)


@pytest.mark.skipif(not SHARED_CSV.is_file(), reason="needs the shared real sentiment data")
@pytest.mark.parametrize("extra", [[], ["dataset.label_column=sentiment"]])
def test_the_glove_preset_reads_the_tutorials_csv(extra, caplog):
    with caplog.at_level(logging.INFO, logger="transferlab.data"):
        plan = plan_text_data(preset(SHARED_CSV, *extra), "unused", 0)
    assert plan.class_names == ["0", "1"] and sum(plan.counts().values()) == 2000
    assert any("reading it with ','" in r.getMessage() for r in caplog.records)
    assert any("as a header line" in r.getMessage() for r in caplog.records)


def test_the_preset_reads_its_own_headerless_tsv_and_a_headed_csv_alike(tmp_path):
    tsv = plan_text_data(preset(table(tmp_path / "s.txt", None, "\t")), "unused", 0)
    csv = plan_text_data(preset(table(tmp_path / "s.csv", "text,sentiment")), "unused", 0)
    assert tsv.fingerprint() == csv.fingerprint() and tsv.class_names == ["0", "1"]
    headerless_csv = plan_text_data(preset(table(tmp_path / "n.csv", None)), "unused", 0)
    assert headerless_csv.fingerprint() == tsv.fingerprint()
    # the same table separated by ';' under the default comma of a .csv, with its own header line
    semicolons = plan_text_data(plain(table(tmp_path / "semi.csv", "text;label", ";")), "unused", 0)
    assert rows_of(semicolons) == rows_of(tsv) == {(text, label) for text, label in ROWS}


def test_a_tab_typed_on_the_command_line_is_a_tab(tmp_path):
    file = table(tmp_path / "tabs.csv", "text\tlabel", "\t")
    overrides = ["dataset=text_csv", f"dataset.path={file}", "dataset.separator='\\t'", "paths.output_dir=unused"]
    cfg = to_experiment_config(compose_config(overrides)).dataset
    assert cfg.separator == "\\t"  # what Hydra hands over: a backslash and a t
    assert rows_of(plan_text_data(cfg, "unused", 0)) == set(ROWS)


def rows_of(plan) -> set[tuple[str, int]]:
    return {(t, int(plan.class_names[y])) for split in (plan.train, plan.validation, plan.test)
            for t, y in zip(split.texts, split.labels)}


def test_a_label_column_missing_from_the_header_names_the_exact_override(tmp_path):
    file = table(tmp_path / "sentiment.csv", "text,sentiment")
    message = refused(plain(file), tmp_path)
    assert message == (f"'{file}' has no column 'label' (dataset.label_column; columns: text, sentiment); "
                       "add dataset.label_column=sentiment")
    wide = table(tmp_path / "wide.csv", "text,stars,sentiment", rows=[(t, f"{l},{l}") for t, l in ROWS])
    assert "set dataset.text_column and dataset.label_column" in refused(plain(wide), tmp_path)


@pytest.mark.parametrize("policy", list(BadFilePolicy))
def test_a_table_whose_every_row_is_bad_points_at_the_shape_not_at_skipping(tmp_path, policy):
    file = tmp_path / "one_column.txt"
    file.write_text("".join(f"just a sentence number {i}\n" for i in range(30)))
    message = refused(preset(file, f"dataset.on_bad_file={policy.value}"), tmp_path)
    assert message.startswith(f"every row has an empty or missing label (first: {file}:1)")
    assert "dataset.separator" in message and "on_bad_file" not in message


def test_some_bad_rows_still_suggest_skipping(tmp_path):
    file = table(tmp_path / "gaps.csv", "text,label", rows=[*ROWS, ("no label here", "")])
    assert "set dataset.on_bad_file=skip" in refused(plain(file), tmp_path)


def hostile_files(tmp_path: Path) -> dict[str, tuple[Path | str, str]]:
    """name -> (dataset.path, expected part of the message)."""
    (tmp_path / "empty.csv").write_bytes(b"")
    (tmp_path / "folder.csv").mkdir()
    (tmp_path / "garbage.csv").write_bytes(bytes(range(256)) * 20)
    (tmp_path / "broken.parquet").write_bytes(b"PAR1" + os.urandom(200))
    table(tmp_path / "same.csv", "text,label", rows=[(t, 1) for t, _ in ROWS])
    (tmp_path / "header_only.csv").write_text("text,label\n")
    (tmp_path / "loop.csv").symlink_to(tmp_path / "loop.csv")
    return {
        "empty": (tmp_path / "empty.csv", "empty.csv' is empty; point dataset.path at a table"),
        "directory": (tmp_path / "folder.csv", "is a folder, not a table; name the file, or a glob such as"),
        "glob matching nothing": (tmp_path / "nothing*.csv", "matches no file: point it at a CSV, TSV or Parquet"),
        "binary": (tmp_path / "garbage.csv", "garbage.csv' is binary, not a CSV or TSV table"),
        "corrupt parquet": (tmp_path / "broken.parquet", "broken.parquet' as Parquet: "),
        "one label": (tmp_path / "same.csv", "only one class (['1']); a classifier needs at least two: check dataset.label_column"),
        "header only": (tmp_path / "header_only.csv", "header_only.csv' has no rows below its header line"),
        "symlink loop": (tmp_path / "loop.csv", "cannot open '"),
    }


@pytest.mark.parametrize("name", ["empty", "directory", "glob matching nothing", "binary", "corrupt parquet",
                                  "one label", "header only", "symlink loop"])
def test_hostile_tables_are_one_line_naming_the_file_and_the_fix(tmp_path, name):
    path, expected = hostile_files(tmp_path)[name]
    message = refused(plain(path), tmp_path)
    assert expected in message, message
    if name != "glob matching nothing":
        assert Path(str(path)).name in message
