"""Export for serving: each format written, reloaded in a separate process with its own runtime, and
matched against the Keras model; prediction from an ONNX export without TensorFlow; text models behind a
TF-free tokenizer on ONNX and LiteRT, and the refusal of a tokenizer that cannot be rebuilt, leaving
nothing behind; a hung verifier ended by its timeout."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import ROOT, compose_config, run_python, tiny_overrides, write_class_images
from test_text import sentences, text_overrides

import transferlab

pytest.importorskip("onnxruntime")
pytest.importorskip("tf2onnx")
pytest.importorskip("ai_edge_litert")

EXPORT_SCRIPT = ROOT / "scripts" / "export.py"
FORMATS = ("saved_model", "onnx", "litert")


def run_export(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(EXPORT_SCRIPT), *args], capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def image_run(tmp_path_factory, base_weights):
    data = write_class_images(tmp_path_factory.mktemp("export") / "shapes", 8, classes=("a", "b", "c"))
    out = tmp_path_factory.mktemp("export_run") / "run"
    transferlab.train(compose_config(tiny_overrides(data, out, base_weights, "schedule.fine_tune.epochs=0")))
    return data, out


@pytest.fixture(scope="module")
def exported(image_run):
    """All three formats from one command (a list for format=)."""
    _, out = image_run
    result = run_export(str(out), "format=[saved_model,onnx,litert]")
    assert result.returncode == 0, result.stderr[-3000:]
    return out


def test_each_format_is_verified_and_recorded(exported):
    assert sorted(p.name for p in (exported / "export").iterdir()) == sorted(FORMATS)  # no .writing left
    for fmt in FORMATS:
        manifest = json.loads((exported / "export" / fmt / "export.json").read_text())
        assert manifest["format"] == fmt and manifest["size_bytes"] > 0
        assert 0 <= manifest["max_abs_diff"] <= manifest["tolerance"] == 1e-4
        assert manifest["accuracy"] == manifest["keras_accuracy"]
        assert manifest["examples"] > 0 and manifest["latency_ms_per_example"] > 0
        assert manifest["class_names"] == ["a", "b", "c"] and manifest["input"]["shape"] == [None, 16, 16, 3]
    assert (exported / "export" / "onnx" / "model.onnx").is_file()
    assert (exported / "export" / "litert" / "model.tflite").is_file()
    assert (exported / "export" / "saved_model" / "saved_model.pb").is_file()
    for fmt in FORMATS:  # the run's model card travels with every artifact
        assert (exported / "export" / fmt / "MODEL_CARD.md").read_text() == (exported / "MODEL_CARD.md").read_text()


def test_artifacts_reload_in_a_fresh_process_and_match_keras(exported, image_run):
    from transferlab.data.inputs import image_files, load_images
    from transferlab.models.saved import load_trained_model

    data, out = image_run
    images = load_images(image_files([str(data)]), (16, 16)).astype(np.float32)
    expected = np.asarray(load_trained_model(str(out / "model.keras")).predict(images, verbose=0))
    np.save(out.parent / "images.npy", images)
    code = (
        "import sys, numpy as np; from pathlib import Path; from transferlab.export.runtime import load_artifact\n"
        f"x = np.load({str(out.parent / 'images.npy')!r}); export = Path({str(out / 'export')!r})\n"
        f"np.savez({str(out.parent / 'outputs.npz')!r}, **{{f: load_artifact(export / f, f).predict(x) for f in {FORMATS!r}}})\n"
    )
    run_python(code)
    outputs = np.load(out.parent / "outputs.npz")
    for fmt in FORMATS:
        assert np.max(np.abs(outputs[fmt] - expected)) < 1e-4, fmt


def predictions_without_tensorflow(folder, inputs: list[str], run, tmp_path):
    """`predict` on an export folder in a fresh process, which must not import TensorFlow, beside `predict` on
    the run's Keras model; the classes must agree."""
    import pandas as pd

    from transferlab.predict.run import predict_with_run

    run_python(
        "import sys; from transferlab.commands.predict import main\n"
        f"main([{str(folder)!r}, *{inputs!r}, '--top-k', '1', '--csv', {str(tmp_path / 'p.csv')!r}])\n"
        "assert 'tensorflow' not in sys.modules, 'tensorflow was imported'\n"
    )
    exported, with_keras = pd.read_csv(tmp_path / "p.csv"), pd.DataFrame(predict_with_run(run, inputs, 1))
    assert list(exported["class"]) == list(with_keras["class"])
    assert np.allclose(exported["probability"], with_keras["probability"], atol=1e-4)
    return exported


def test_predict_on_an_onnx_export_does_not_import_tensorflow(exported, image_run, tmp_path):
    data, out = image_run
    predictions_without_tensorflow(out / "export" / "onnx", [str(data)], out, tmp_path)


@pytest.mark.parametrize("fault", ["outputs_differ", "runtime_cannot_load"])
def test_a_failed_verification_keeps_the_previous_export_and_leaves_no_partial(exported, monkeypatch, fault):
    from transferlab.errors import ModelError
    from transferlab.export import writer
    from transferlab.export.config import ExportConfig, ExportFormat

    before = (exported / "export" / "onnx" / "export.json").read_text()
    if fault == "outputs_differ":
        real = writer.keras_outputs
        monkeypatch.setattr(writer, "keras_outputs", lambda *args: real(*args) + 1.0)
        expected = "differs from the Keras model by up to 1 on the test split, above tolerance=0.0001"
    else:
        monkeypatch.setattr(writer, "write_artifact", lambda model, folder, *_: (folder / "model.onnx").write_bytes(b"junk"))
        expected = "the onnx runtime cannot run the exported model"
    with pytest.raises(ModelError, match=expected) as error:
        writer.export_run(ExportConfig(run_dir=str(exported), format="onnx"), ExportFormat.onnx)
    assert "\n" not in str(error.value) and "format=saved_model" in str(error.value)
    assert (exported / "export" / "onnx" / "export.json").read_text() == before
    assert sorted(p.name for p in (exported / "export").iterdir()) == sorted(FORMATS)


@pytest.fixture(scope="module")
def text_run(tmp_path_factory):
    table = tmp_path_factory.mktemp("export_text") / "reviews.csv"
    sentences(60).to_csv(table, index=False)
    out = table.parent / "text_run"
    transferlab.train(compose_config(text_overrides(
        table, None, out, "schedule.head.epochs=1", "schedule.fine_tune.epochs=0")))
    return out


@pytest.mark.slow
def test_a_string_input_model_exports_to_a_saved_model_serving_raw_strings(text_run):
    result = run_export(str(text_run), "format=saved_model")
    assert result.returncode == 0, result.stderr[-3000:]
    manifest = json.loads((text_run / "export" / "saved_model" / "export.json").read_text())
    assert manifest["input"]["dtype"] == "string" and manifest["max_abs_diff"] <= 1e-6
    assert manifest["accuracy"] == manifest["keras_accuracy"]


# Raw strings the test split does not hold: case, punctuation, whitespace runs, accents, CJK, unknown words.
ODD_TEXTS = ["GREAT movie!!! Lovely...", "", "  the\tplot\nwas   awful  ", "Café naïve 東京 — €5 ½", "unknownword " * 20]


def raw_strings_match_keras(run, fmts: tuple[str, ...]) -> None:
    """Each export, loaded in a fresh process without TensorFlow, gives the Keras model's logits on the run's
    test texts and on odd ones, through its tokenizer."""
    import tensorflow as tf

    from transferlab.models.saved import load_trained_model
    from transferlab.predict.run import held_out_examples, run_config

    texts = np.array([*held_out_examples(run_config(run), None)[0], *ODD_TEXTS])
    np.save(run.parent / "texts.npy", texts)
    code = (
        "import sys, numpy as np; from pathlib import Path; from transferlab.export.runtime import load_artifact\n"
        f"x = np.load({str(run.parent / 'texts.npy')!r}); export = Path({str(run / 'export')!r})\n"
        f"np.savez({str(run.parent / 'outputs.npz')!r}, **{{f: load_artifact(export / f, f).predict(x, 4) for f in {fmts!r}}})\n"
        "assert 'tensorflow' not in sys.modules, 'tensorflow was imported'\n"
    )
    run_python(code)
    expected = load_trained_model(str(run / "model.keras"))(tf.constant(texts)).numpy()
    outputs = np.load(run.parent / "outputs.npz")
    for fmt in fmts:
        assert np.max(np.abs(outputs[fmt] - expected)) < 1e-4, fmt


def assert_text_export(folder, kind: str, model_inputs: dict) -> None:
    manifest = json.loads((folder / "export.json").read_text())
    assert manifest["input"] == {"shape": [None], "dtype": "string"} and manifest["model_inputs"] == model_inputs
    assert manifest["tokenizer"]["kind"] == kind and manifest["tokenizer"]["file"] == "text_inputs.json"
    assert manifest["tokenizer"]["identical_ids"] == manifest["tokenizer"]["texts"] == manifest["examples"] > 0
    assert manifest["max_abs_diff"] <= 1e-4 and manifest["accuracy"] == manifest["keras_accuracy"]
    assert json.loads((folder / "text_inputs.json").read_text())["kind"] == kind


@pytest.fixture(scope="module")
def text_export(text_run):
    """The word-vector run (TextVectorization + embedding + conv head) exported to ONNX and LiteRT in one command."""
    result = run_export(str(text_run), "format=[onnx,litert]")
    assert result.returncode == 0, result.stderr[-3000:]
    return text_run


def test_a_word_vector_text_model_exports_to_onnx_and_litert_behind_a_tokenizer_without_tensorflow(text_export):
    for fmt in ("onnx", "litert"):
        folder = text_export / "export" / fmt
        assert_text_export(folder, "text_vectorization", {"token_ids": {"shape": [None, 8], "dtype": "int64"}})
        assert json.loads((folder / "text_inputs.json").read_text())["vocabulary"][:2] == ["", "[UNK]"]
    raw_strings_match_keras(text_export, ("onnx", "litert"))


def test_predict_on_a_text_onnx_export_takes_a_quoted_text_or_a_file_without_tensorflow(text_export, tmp_path):
    (tmp_path / "reviews.txt").write_text("The plot was awful\nLovely, great phone\n")
    inputs = ["What a great movie", str(tmp_path / "reviews.txt")]
    rows = predictions_without_tensorflow(text_export / "export" / "onnx", inputs, text_export, tmp_path)
    assert list(rows["text"]) == ["What a great movie", "The plot was awful", "Lovely, great phone"]


def test_a_tokenizer_that_cannot_be_rebuilt_is_refused_in_one_line_leaving_nothing(text_run, tmp_path):
    import keras

    from transferlab.errors import ModelError
    from transferlab.export import writer
    from transferlab.export.config import ExportConfig, ExportFormat

    run = tmp_path / "run"
    shutil.copytree(text_run, run, ignore=shutil.ignore_patterns("export"))
    vectorizer = keras.layers.TextVectorization(max_tokens=40, output_sequence_length=8, ngrams=2)
    vectorizer.adapt(["the movie was good", "the plot was awful"])
    strings = keras.Input(shape=(), dtype="string")
    pooled = keras.layers.GlobalAveragePooling1D()(keras.layers.Embedding(40, 4)(vectorizer(strings)))
    keras.Model(strings, keras.layers.Dense(1)(pooled)).save(run / "model.keras")
    with pytest.raises(ModelError) as error:
        writer.export_run(ExportConfig(run_dir=str(run), format="litert"), ExportFormat.litert)
    assert str(error.value) == ("format=litert cannot rebuild the model's TextVectorization without TensorFlow (ngrams=2); "
                                "use format=saved_model, which serves raw strings")
    assert not (run / "export").exists()


@pytest.mark.slow
def test_a_kerashub_bert_model_exports_to_onnx_and_litert_behind_a_wordpiece_tokenizer(tmp_path):
    pytest.importorskip("keras_hub")
    from test_hub_text import hub_overrides, save_tiny_bert_preset

    table = tmp_path / "reviews.csv"
    sentences(48).to_csv(table, index=False)
    out = tmp_path / "run"
    transferlab.train(compose_config(hub_overrides(
        table, save_tiny_bert_preset(tmp_path / "bert"), out, "schedule.head.epochs=1", "schedule.fine_tune.epochs=0")))
    result = run_export(str(out), "format=[onnx,litert]")
    assert result.returncode == 0, result.stderr[-3000:]
    spec = {"shape": [None, 12], "dtype": "int32"}
    for fmt in ("onnx", "litert"):
        assert_text_export(out / "export" / fmt, "wordpiece", {name: spec for name in ("padding_mask", "segment_ids", "token_ids")})
    raw_strings_match_keras(out, ("onnx", "litert"))


def test_a_hung_verifier_is_ended_by_its_timeout_in_one_line_keeping_the_previous_export(exported, monkeypatch):
    from transferlab.errors import ModelError
    from transferlab.export import writer
    from transferlab.export.config import ExportConfig, ExportFormat

    before = (exported / "export" / "onnx" / "export.json").read_text()
    monkeypatch.setattr(writer, "VERIFIER", (sys.executable, "-c", "import time; time.sleep(120)"))
    started = time.monotonic()
    with pytest.raises(ModelError) as error:
        writer.export_run(ExportConfig(run_dir=str(exported), format="onnx", verify_timeout_s=2), ExportFormat.onnx)
    assert time.monotonic() - started < 60
    assert str(error.value).startswith("the onnx verifier did not finish within verify_timeout_s=2 s") and "\n" not in str(error.value)
    assert (exported / "export" / "onnx" / "export.json").read_text() == before
    assert sorted(p.name for p in (exported / "export").iterdir()) == sorted(FORMATS)


def test_the_verify_timeout_must_be_positive():
    from transferlab.errors import ConfigError
    from transferlab.export.config import ExportConfig, check_export_config

    with pytest.raises(ConfigError, match=r"^verify_timeout_s=0 must be above 0"):
        check_export_config(ExportConfig(run_dir="run", verify_timeout_s=0))


def test_a_format_typo_gets_the_choices_without_tensorflow(image_run):
    _, out = image_run
    result = run_export(str(out), "format=onxx")
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "error: format='onxx' must be one of saved_model, onnx, litert (did you mean 'onnx'?); "
        "fix it in the config or on the command line"
    )
    assert not (out / "export").exists() or not (out / "export" / "onxx").exists()


def test_help_is_fast_and_names_the_formats_without_tensorflow():
    code = (
        "import sys; from transferlab.commands import export\n"
        "sys.argv = ['transferlab-export', '--help']\n"
        "try: export.main()\n"
        "except SystemExit as exc: print('exit', exc.code or 0)\n"
        "print('tensorflow' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.stdout.splitlines()[-2:] == ["exit 0", "False"], result.stderr[-2000:]
    assert "saved_model (TF Serving" in result.stdout and "litert" in result.stdout


def test_export_commands_in_the_docs_compose(tmp_path, monkeypatch):
    from hydra import compose, initialize_config_dir
    from test_readme import COMMANDS, script_and_args, sweep_point

    from transferlab.commands.export import with_run_dir
    from transferlab.export.config import formats

    shown = [(where, c) for where, c in COMMANDS if "scripts/export.py" in c]
    assert shown, "the docs show no export command"
    monkeypatch.chdir(tmp_path)
    for where, command in shown:
        _, args = script_and_args(command, tmp_path)
        (tmp_path / args[0]).mkdir(parents=True, exist_ok=True)
        overrides = sweep_point(with_run_dir(args)) if "-m" in args else with_run_dir(args)
        with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
            cfg = compose(config_name="export", overrides=overrides)
        assert formats(cfg.format), where


def test_resizing_without_tensorflow_matches_tf_image_resize():
    import tensorflow as tf

    from transferlab.export.serve import resize_bilinear

    pixels = np.random.default_rng(0).uniform(0, 255, (20, 13, 3)).astype(np.float32)
    for size in ((16, 16), (40, 7), (20, 13)):
        assert np.allclose(resize_bilinear(pixels, size), tf.image.resize(pixels, size).numpy(), atol=1e-3), size
