"""Hostile input to predict, compare and extract: what training accepts is accepted, the rest is one clear line."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import ROOT, compose_config, tiny_overrides, write_class_images
from PIL import Image

import transferlab
from transferlab.config.schema import BadFilePolicy
from transferlab.errors import ConfigError, DataError, ModelError

SIZE = (16, 16)


def script_env() -> dict:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")]))}


def assert_one_error_line(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and result.stderr.strip().splitlines()[-1] == errors[0], result.stderr[-2000:]
    for fragment in fragments:
        assert fragment in errors[0], errors[0]


@pytest.fixture(scope="module")
def image_run(tmp_path_factory, base_weights) -> Path:
    """One tiny image run (1 epoch, no baseline), reused by every case below."""
    data = write_class_images(tmp_path_factory.mktemp("hostile_cmd") / "pets", 6)
    out = tmp_path_factory.mktemp("hostile_cmd_run") / "run"
    transferlab.train(compose_config(tiny_overrides(
        data, out, base_weights, "schedule.head.epochs=1", "schedule.fine_tune.epochs=0", "baseline.estimator=null",
    )))
    return out


@pytest.fixture(scope="module")
def text_run(tmp_path_factory) -> Path:
    """A run folder holding a small untrained string-input model, as a text run exports it (no training needed)."""
    import keras

    out = tmp_path_factory.mktemp("hostile_text_run")
    vectorizer = keras.layers.TextVectorization(max_tokens=50, output_sequence_length=5)
    vectorizer.adapt(["good film", "bad film", "great", "awful"])
    texts = keras.Input(shape=(), dtype="string")
    pooled = keras.layers.GlobalAveragePooling1D()(keras.layers.Embedding(50, 4)(vectorizer(texts)))
    keras.Model(texts, keras.layers.Dense(1)(pooled)).save(out / "model.keras")
    (out / "summary.json").write_text(json.dumps({"status": "completed", "class_names": ["neg", "pos"]}))
    return out


def photo(size=(30, 40), seed=0) -> Image.Image:
    """Noisy pixels, so a resize that differs from training's (antialiasing, another filter) shows."""
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (*size, 3)).astype(np.uint8))


def every_format(folder: Path) -> list[Path]:
    """One image in each form training reads: modes gray, RGBA, palette, CMYK; formats TF decodes and those PIL converts."""
    folder.mkdir(parents=True)
    saves = {
        "gray.png": lambda p: photo().convert("L").save(p),
        "rgba.png": lambda p: photo().convert("RGBA").save(p),
        "palette.gif": lambda p: photo().convert("P").save(p),
        "cmyk.jpg": lambda p: photo().convert("CMYK").save(p),
        "upper.JPG": lambda p: photo((50, 20)).save(p, format="JPEG"),
        "plain.bmp": lambda p: photo().save(p),
        "scan.tiff": lambda p: photo().save(p),
        "web.webp": lambda p: photo().save(p, lossless=True),
    }
    for name, save in saves.items():
        save(folder / name)
    (folder / "notes.txt").write_text("not an image; ignored inside a folder, as training ignores it")
    return sorted(folder / name for name in saves)


def test_predict_reads_every_image_training_reads_with_the_same_pixels(image_run, tmp_path):
    from transferlab.data.images import _inspect, _load_image
    from transferlab.data.inputs import read_image
    from transferlab.predict.run import predict_with_run

    files = every_format(tmp_path / "photos")
    rows = pd.DataFrame(predict_with_run(image_run, [str(tmp_path / "photos")], k=2))
    assert sorted(set(rows["file"])) == [str(f) for f in files] and len(rows) == 2 * len(files)
    for file in files:
        usable, problem = _inspect(str(file), tmp_path / "converted")  # what training's pipeline reads
        assert problem is None, problem
        trained_on = _load_image(usable, SIZE).numpy()
        np.testing.assert_allclose(read_image(file, SIZE), trained_on, atol=1e-3, err_msg=file.name)


def test_unreadable_images_stop_or_are_skipped_and_counted_like_on_bad_file(image_run, tmp_path, caplog):
    from transferlab.predict.run import predict_with_run

    folder = tmp_path / "mixed"
    folder.mkdir()
    photo().save(folder / "good.png")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(DataError, match=r"cannot decode image '.*broken\.jpg'.*pass --on-bad-file skip"):
        predict_with_run(image_run, [str(folder)], k=1)  # the run's own dataset.on_bad_file is fail
    with caplog.at_level(logging.WARNING, logger="transferlab.predict"):
        rows = predict_with_run(image_run, [str(folder)], k=1, on_bad_file=BadFilePolicy.skip)
    assert [row["file"] for row in rows] == [str(folder / "good.png")]
    assert [r.getMessage() for r in caplog.records] == [
        f"skipped 1 unreadable image(s) of 2, e.g. {folder / 'broken.jpg'} "
        f"(cannot identify image file '{folder / 'broken.jpg'}')"
    ]
    with pytest.raises(DataError, match=r"none of the 1 image\(s\) could be decoded"):
        predict_with_run(image_run, [str(folder / "broken.jpg")], k=1, on_bad_file=BadFilePolicy.skip)


def test_inputs_of_the_wrong_kind_for_the_model_are_refused_by_name(image_run, text_run, tmp_path):
    from transferlab.predict.run import predict_with_run

    table, empty, picture = tmp_path / "texts.csv", tmp_path / "empty", tmp_path / "p.png"
    table.write_text("text\nfine film\n")
    empty.mkdir()
    photo().save(picture)
    cases = [
        (image_run, [str(table)], "'.*texts.csv' is a text file, but this model classifies images"),
        (image_run, ["-"], r"'-' \(stdin\) gives texts, but this model classifies images"),
        (image_run, [str(empty)], "no image files .* in .*empty; name image files"),
        (image_run, [str(tmp_path / "gone.png")], "'.*gone.png' does not exist"),
        (text_run, [str(picture)], "'.*p.png' is an image, but this model classifies texts"),
        (text_run, [str(empty)], "'.*empty' is a folder, but this model classifies texts"),
    ]
    for run, inputs, message in cases:
        with pytest.raises(DataError, match=message):
            predict_with_run(run, inputs, k=1)
    with pytest.raises(ConfigError, match="--top-k 0 must be at least 1"):
        predict_with_run(image_run, [str(picture)], k=0)


def test_text_model_reads_tables_and_text_files_and_treats_empty_texts_like_on_bad_file(text_run, tmp_path):
    from transferlab.predict.run import predict_with_run

    (tmp_path / "a.tsv").write_text("review\tlabel\ngood film\t1\n\t0\n")
    (tmp_path / "b.txt").write_text("awful\n\ngreat\n")
    (tmp_path / "c.bin").write_bytes(b"\x00\x01binary")
    with pytest.raises(DataError, match=r"a\.tsv:3: empty text; fix the rows, or pass --on-bad-file skip"):
        predict_with_run(text_run, [str(tmp_path / "a.tsv")], k=1, text_column="review")
    rows = predict_with_run(
        text_run, [str(tmp_path / "a.tsv"), str(tmp_path / "b.txt")], k=2, text_column="review",
        on_bad_file=BadFilePolicy.skip,
    )
    assert [row["text"] for row in rows if row["rank"] == 1] == ["good film", "awful", "great"]
    with pytest.raises(DataError, match="has no column 'text' .*columns: review, label.*use --text-column"):
        predict_with_run(text_run, [str(tmp_path / "a.tsv")], k=1)
    with pytest.raises(DataError, match="is a binary file, not text"):
        predict_with_run(text_run, [str(tmp_path / "c.bin")], k=1)


def test_broken_run_folders_are_named_with_what_is_wrong(image_run, tmp_path):
    from transferlab.predict.run import load_run

    failed, damaged, mismatched = (tmp_path / name for name in ("failed", "damaged", "mismatched"))
    failed.mkdir()
    (failed / "summary.json").write_text(json.dumps({"status": "failed", "error": "TrainingError: nan"}))
    shutil.copytree(image_run, damaged, ignore=shutil.ignore_patterns("checkpoints", "tensorboard", "plots"))
    (damaged / "model.keras").write_bytes((image_run / "model.keras").read_bytes()[:2000])  # cut off mid-copy
    shutil.copytree(damaged, mismatched)
    shutil.copy(image_run / "model.keras", mismatched / "model.keras")
    summary = json.loads((mismatched / "summary.json").read_text())
    (mismatched / "summary.json").write_text(json.dumps({**summary, "class_names": ["a", "b", "c"]}))
    cases = [
        (tmp_path / "nowhere", ConfigError, "run directory '.*nowhere' does not exist"),
        (damaged / "config.yaml", ConfigError, "is a file, not a run directory"),
        (failed, ConfigError, "not a finished run directory .*its summary.json says status 'failed'"),
        (damaged, ModelError, r"model.keras' is damaged or incomplete \(not a .keras zip archive\)"),
        (mismatched, ModelError, "predicts 2 classes but .* lists 3; the two files come from different runs"),
    ]
    for run_dir, error, message in cases:
        with pytest.raises(error, match=message):
            load_run(run_dir)


def test_predict_script_ends_bad_options_and_bad_images_in_one_line(image_run, tmp_path):
    script = [sys.executable, str(ROOT / "scripts" / "predict.py"), str(image_run)]
    (tmp_path / "x.png").write_text("a text file named like an image")
    for extra, fragments in (
        (["--top-k", "two"], ["argument --top-k: invalid int value: 'two'", "--help"]),
        ([str(tmp_path / "x.png")], ["cannot decode image", "x.png", "--on-bad-file skip"]),
    ):
        result = subprocess.run([*script, *extra], capture_output=True, text=True, timeout=300, env=script_env())
        assert_one_error_line(result, *fragments)


def copy_run(source: Path, target: Path) -> Path:
    target.mkdir(parents=True)
    for name in ("summary.json", "config.yaml", "history.csv"):
        shutil.copy(source / name, target / name)
    return target


def test_compare_lists_broken_run_folders_as_unreadable_and_compares_the_others(image_run, tmp_path):
    root = tmp_path / "outputs"
    copy_run(image_run, root / "good")
    (copy_run(image_run, root / "bad_json") / "summary.json").write_text("{truncated")
    (copy_run(image_run, root / "bad_yaml") / "config.yaml").write_text("dataset: [unclosed")
    (copy_run(image_run, root / "bad_metric") / "summary.json").write_text(json.dumps({"metrics": {"test/accuracy": "high"}}))
    (copy_run(image_run, root / "bad_history") / "history.csv").write_text('epoch,loss\n1,"unterminated\n')
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "compare.py"), str(root)],
        capture_output=True, text=True, timeout=120, env=script_env(),
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert [line.split()[0] for line in result.stdout.splitlines()[1:3]] == ["bad_history", "good"]
    assert "unreadable run bad_json: summary.json: JSONDecodeError: " in result.stdout
    assert "unreadable run bad_yaml: config.yaml: " in result.stdout
    assert "unreadable run bad_metric: summary.json: metric 'test/accuracy' is not a number" in result.stdout
    assert "no curves for" in result.stderr and "Traceback" not in result.stderr
    page = (root / "comparison" / "comparison.html").read_text()
    assert "Unreadable runs" in page and "bad_json: summary.json: JSONDecodeError" in page
    assert list(pd.read_csv(root / "comparison" / "comparison.csv")["run"]) == ["bad_history", "good"]


def test_compare_refuses_only_when_no_run_is_readable(image_run, tmp_path):
    from transferlab.reporting.compare import scan_runs, write_reports

    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no runs under '.*empty' .*pass the outputs folder"):
        scan_runs(tmp_path / "empty")
    (copy_run(image_run, tmp_path / "broken" / "r1") / "summary.json").write_text("[]")
    with pytest.raises(DataError, match=r"none of the 1 run\(s\) .* could be read, e.g. 'r1' \(summary.json: holds a list"):
        scan_runs(tmp_path / "broken")
    found = scan_runs(copy_run(image_run, tmp_path / "one").parent)
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    with pytest.raises(ConfigError, match="cannot write the comparison to .*choose a writable folder with --out"):
        write_reports(found.runs, tmp_path, blocker / "report", "run")


def test_option_errors_are_one_line_with_the_fix(capsys):
    from transferlab.commands import OneLineArgumentParser

    parser = OneLineArgumentParser(prog="compare.py")
    parser.add_argument("--sort")
    with pytest.raises(SystemExit) as exit_info:
        parser.parse_args(["--srot", "x"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == "error: unrecognized arguments: --srot x; see compare.py --help\n"


def test_extract_script_names_the_closest_key_for_an_unknown_one(tmp_path):
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "extract.py"), "extract.formt=parquet", f"hydra.run.dir={tmp_path}"],
        capture_output=True, text=True, timeout=120, env=script_env(), cwd=tmp_path,
    )
    assert_one_error_line(result, "unknown config key 'extract.formt': did you mean 'extract.format'?")


def test_the_flags_the_cli_knows_are_hydras_own():
    from hydra._internal.utils import (
        get_args_parser,  # upstream's parser: this fails loudly if it moves
    )

    from transferlab.cli import HYDRA_FLAGS

    assert HYDRA_FLAGS == {s for action in get_args_parser()._actions for s in action.option_strings}


def test_an_unknown_flag_is_one_line_with_a_did_you_mean(capsys):
    from transferlab.cli import check_flags

    check_flags(["-m", "--cfg", "job", "schedule.head.lr=1e-3,1e-2", "--config-name=config"])
    with pytest.raises(SystemExit) as exit_info:
        check_flags(["dataset=digits", "--cfgg", "job"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == (
        "error: unknown option '--cfgg'; did you mean --cfg? config values are given as key=value, and --help lists the options\n"
    )


def test_texts_from_stdin_or_an_unreadable_file_never_end_in_a_traceback(tmp_path, monkeypatch):
    import io

    from transferlab.data.inputs import read_texts

    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"a good film\n\xff not utf-8\n\n")))
    assert read_texts(["-"], "text") == ["a good film", "\ufffd not utf-8"]
    locked = tmp_path / "reviews.txt"
    locked.write_text("fine\n")
    monkeypatch.setattr("pathlib.Path.read_bytes", lambda self: (_ for _ in ()).throw(PermissionError(13, "Permission denied")))
    with pytest.raises(DataError, match=r"cannot read '.*reviews.txt' \(Permission denied\); check the file and its permissions"):
        read_texts([str(locked)], "text")
