"""Trackers, plots and run comparison, checked by reading back what each store recorded."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import (
    ROOT,
    TRAIN_SCRIPT,
    compose_config,
    config_error_line,
    run_python,
    run_train_script,
    tiny_overrides,
)
from PIL import Image

import transferlab
from transferlab.config.convert import to_experiment_config
from transferlab.errors import ConfigError
from transferlab.tracking.base import NoOpTracker, Trackers

# Learning rates too small to learn anything in 2+2 epochs, so the test split has mistakes to plot.
BARELY_TRAINED = ("schedule.head.lr=1e-6", "schedule.fine_tune.lr=1e-7")


def neptune_operations(cwd: Path) -> list[dict]:
    """Every operation Neptune's offline mode stored under <cwd>/.neptune (one JSON object a line), for its one
    run: a folder per process that wrote to it (`run__<id>__<pid>__<suffix>`), all synced as that run."""
    logs = sorted((cwd / ".neptune" / "offline").glob("*/data-1.log"))
    assert len({log.parent.name.split("__")[1] for log in logs}) == 1, logs
    return [json.loads(line)["obj"] for log in logs for line in log.read_text().splitlines()]


@pytest.fixture(scope="module")
def tracked_run(image_folder, base_weights, tmp_path_factory):
    """One run with TensorBoard and offline Neptune, started from a scratch working directory."""
    cwd = tmp_path_factory.mktemp("tracked")
    out = cwd / "run"
    overrides = tiny_overrides(
        image_folder, out, base_weights, "logger=tensorboard_neptune", "logger.neptune.mode=offline",
        "augmentation=flip_rotate", "tags=[probe]", *BARELY_TRAINED,
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(cwd)  # Neptune's offline store is ./.neptune
        summary = transferlab.train(compose_config(overrides))
    return cwd, out, summary


def test_neptune_offline_records_parameters_per_phase_metrics_results_and_files(tracked_run):
    cwd, out, summary = tracked_run
    ops = neptune_operations(cwd)
    values = {"/".join(op["path"]): op.get("value") for op in ops if "value" in op}
    assert values["parameters/base_model/name"] == "digits_cnn"
    assert values["parameters/schedule/head/lr"] == 1e-6
    assert values["parameters/dataset/image_size"] == "[16, 16]"  # a list, stored as a string
    assert values["results/test/accuracy"] == pytest.approx(summary.metrics["test/accuracy"])
    assert values["system/device"] == "CPU" and values["system/hostname"]
    series = {}
    for op in ops:
        if op["type"] == "LogFloats":
            series.setdefault("/".join(op["path"]), []).extend(v["step"] for v in op["values"])
    assert series["metrics/head/val_loss"] == [1, 2]
    assert series["metrics/fine_tune/val_loss"] == [3, 4]  # the run's one epoch axis
    assert series["metrics/all/loss"] == [1, 2, 3, 4]
    uploads = {"/".join(op["path"]) for op in ops if op["type"] == "UploadFile"}
    assert {
        "artifacts/config.yaml", "artifacts/model.keras", "artifacts/history.csv", "artifacts/summary.json",
        "plots/learning_curves", "plots/confusion_matrix", "plots/misclassified", "plots/augmentation_preview",
    } <= uploads
    tags = next(op["values"] for op in ops if op["path"] == ["sys", "tags"])
    assert {"probe", "dataset:image_folder", "base_model:digits_cnn"} <= set(tags)


def test_summary_records_the_neptune_run_id_and_tags(tracked_run):
    cwd, out, _ = tracked_run
    tracking = json.loads((out / "summary.json").read_text())["tracking"]
    run_folder = next((cwd / ".neptune" / "offline").iterdir()).name
    assert tracking["neptune"]["id"].startswith("offline/")
    assert tracking["neptune"]["id"].split("/")[1] in run_folder
    assert tracking["sweep"] is None and "probe" in tracking["tags"]


def test_tensorboard_hparams_hold_key_hyperparameters_and_final_metrics(tracked_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    _, out, summary = tracked_run
    events = EventAccumulator(str(out / "tensorboard"), size_guidance={"tensors": 0, "images": 0})
    events.Reload()
    content = events.PluginTagToContent("hparams")
    session = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
    hparams = session.session_start_info.hparams
    assert hparams["base_model.name"].string_value == "digits_cnn"
    assert hparams["schedule.fine_tune.lr"].number_value == pytest.approx(1e-7)
    assert hparams["head.hidden_units"].string_value == "[]"
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"]).experiment
    assert "test/accuracy" in {m.name.tag for m in experiment.metric_infos}
    final = events.Tensors("test/accuracy")
    assert len(final) == 1 and float(np.asarray(__import__("tensorflow").make_ndarray(final[0].tensor_proto))) == (
        pytest.approx(summary.metrics["test/accuracy"])
    )
    assert {"plots/learning_curves", "plots/confusion_matrix"} <= set(events.Tags()["tensors"])


def test_run_writes_every_plot_as_a_png(tracked_run):
    _, out, summary = tracked_run
    assert summary.metrics["test/accuracy"] < 1.0  # there are mistakes to show
    for name in ("learning_curves", "confusion_matrix", "misclassified", "augmentation_preview"):
        with Image.open(out / "plots" / f"{name}.png") as image:
            assert image.format == "PNG" and min(image.size) > 200, name


def test_an_export_adds_its_summary_to_the_runs_tensorboard_and_its_offline_neptune_run(tracked_run, monkeypatch):
    pytest.importorskip("onnxruntime")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from transferlab.export.config import ExportConfig, ExportFormat
    from transferlab.export.writer import export_run

    cwd, out, _ = tracked_run
    monkeypatch.chdir(cwd)  # where the run's offline Neptune data is
    manifest = export_run(ExportConfig(run_dir=str(out), format="onnx"), ExportFormat.onnx)
    events = EventAccumulator(str(out / "tensorboard" / "export"), size_guidance={"tensors": 0})
    events.Reload()
    import tensorflow as tf

    (diff,) = events.Tensors("onnx/max_abs_diff")
    assert float(tf.make_ndarray(diff.tensor_proto)) == pytest.approx(manifest["max_abs_diff"])
    (table,) = events.Tensors("onnx/summary")
    assert f"| runtime | {manifest['runtime']} |" in tf.make_ndarray(table.tensor_proto).item().decode()
    values = {"/".join(op["path"]): op.get("value") for op in neptune_operations(cwd) if "value" in op}
    assert values["export/onnx/max_abs_diff"] == pytest.approx(manifest["max_abs_diff"])
    assert values["export/onnx/size_bytes"] == manifest["size_bytes"] and values["export/onnx/runtime"].startswith("onnxruntime")
    assert values["results/test/accuracy"] is not None  # the training run's own fields, in the same offline run


def test_a_tracker_that_cannot_take_an_export_summary_is_one_warning(tmp_path, caplog):
    from transferlab.config.schema import LoggerConfig, NeptuneConfig
    from transferlab.tracking.export_summary import log_export_summary

    (tmp_path / "summary.json").write_text(json.dumps({"tracking": {"tags": []}}))  # Neptune never started
    manifest = {"format": "onnx", "size_bytes": 10, "max_abs_diff": 0.0, "accuracy": 1.0, "keras_accuracy": 1.0,
                "latency_ms_per_example": 0.1, "examples": 4, "runtime": "onnxruntime 1.32.0"}
    with caplog.at_level(logging.WARNING, logger="transferlab.tracking"):
        log_export_summary(tmp_path, LoggerConfig(tensorboard=False, neptune=NeptuneConfig()), manifest)
    assert [r.getMessage() for r in caplog.records if r.name.startswith("transferlab.tracking")] == [
        "Neptune did not get the onnx export's summary (LookupError: the run's summary.json records no Neptune run to "
        "add to); the export is kept"
    ]


def test_mlflow_records_into_a_local_sqlite_store(image_folder, base_weights, tmp_path):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    out = tmp_path / "run"
    summary = transferlab.train(compose_config(tiny_overrides(
        image_folder, out, base_weights, "logger=mlflow", f"logger.mlflow.tracking_uri={uri}", "name=mlflow_probe",
    )))
    run_id = summary.tracking["mlflow"]["run_id"]
    client = MlflowClient(tracking_uri=uri)
    run = client.get_run(run_id)
    assert client.get_experiment(run.info.experiment_id).name == "mlflow_probe"
    assert run.info.status == "FINISHED"
    assert run.data.params["base_model.name"] == "digits_cnn" and run.data.params["schedule.head.epochs"] == "2"
    assert run.data.metrics["test/accuracy"] == pytest.approx(summary.metrics["test/accuracy"])
    assert [m.step for m in client.get_metric_history(run_id, "head/val_loss")] == [1, 2]
    assert [m.step for m in client.get_metric_history(run_id, "fine_tune/val_loss")] == [3, 4]
    assert run.data.tags["dataset"] == "image_folder"
    artifacts = {a.path for folder in (None, "plots", "model", "model/data") for a in client.list_artifacts(run_id, folder)}
    assert {"config.yaml", "history.csv", "summary.json", "plots/learning_curves.png"} <= artifacts
    assert {"model/MLmodel", "model/data/model.keras", "model/input_example.json", "model/requirements.txt"} <= artifacts
    assert_pyfunc_reloads_and_predicts_as_keras(uri, run_id, out / "model.keras", tmp_path)


def assert_pyfunc_reloads_and_predicts_as_keras(uri: str, run_id: str, model_path: Path, tmp_path: Path) -> None:
    """`mlflow.pyfunc.load_model` in a fresh process runs the logged model on its input example, with the
    signature MLflow enforces, and gets the Keras model's logits."""
    from transferlab.models.saved import load_trained_model

    printed = run_python(
        "import mlflow, numpy as np\n"
        f"mlflow.set_tracking_uri({uri!r}); model = mlflow.pyfunc.load_model('runs:/{run_id}/model')\n"
        "example = model.input_example\n"
        f"np.savez({str(tmp_path / 'pyfunc.npz')!r}, x=example, y=model.predict(example))\n"
        "print(model.metadata.signature.inputs.to_json())\n"
    )
    saved = np.load(tmp_path / "pyfunc.npz")
    assert len(saved["x"]) == 1 and json.loads(printed.splitlines()[-1])[0]["type"] == "tensor"
    expected = load_trained_model(str(model_path)).predict(saved["x"], verbose=0)
    np.testing.assert_allclose(saved["y"], expected, rtol=0, atol=1e-6)


def test_mlflow_logs_a_text_model_whose_pyfunc_takes_raw_strings(tmp_path):
    pytest.importorskip("mlflow")
    import mlflow.pyfunc
    import tensorflow as tf
    from mlflow.tracking import MlflowClient
    from test_text import sentences, text_overrides

    from transferlab.models.saved import load_trained_model

    table, out, uri = tmp_path / "reviews.csv", tmp_path / "run", f"sqlite:///{tmp_path / 'mlflow.db'}"
    sentences(40).to_csv(table, index=False)
    summary = transferlab.train(compose_config(text_overrides(
        table, None, out, "logger=mlflow", f"logger.mlflow.tracking_uri={uri}", "schedule.head.epochs=1",
        "schedule.fine_tune.epochs=0")))
    folder = MlflowClient(tracking_uri=uri).download_artifacts(summary.tracking["mlflow"]["run_id"], "model", str(tmp_path))
    model = mlflow.pyfunc.load_model(folder)
    assert model.metadata.signature.inputs.to_dict() == [{"type": "tensor", "tensor-spec": {"dtype": "str", "shape": (-1,)}}]
    assert str(model.input_example[0]) in set(pd.read_csv(table)["review"])  # a real text of the test split
    texts = np.array(["What a great movie", "awful, boring plot!", ""])
    expected = load_trained_model(str(out / "model.keras"))(tf.constant(texts)).numpy()
    np.testing.assert_allclose(model.predict(texts), expected, rtol=0, atol=1e-6)


def test_a_model_mlflow_cannot_take_as_an_mlflow_model_is_logged_as_a_plain_file(tmp_path, caplog):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    from transferlab.config.schema import MlflowConfig
    from transferlab.tracking.mlflow_tracker import MlflowTracker

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = MlflowTracker(MlflowConfig(tracking_uri=uri), "probe", [])
    (tmp_path / "model.keras").write_bytes(b"not a keras archive")
    with caplog.at_level(logging.WARNING, logger="transferlab.tracking"):
        tracker.log_artifact(tmp_path / "model.keras")
    warnings = [r.getMessage().split(" (")[0] for r in caplog.records if r.name.startswith("transferlab.tracking")]
    assert warnings == ["MLflow got model.keras as a plain file, not as an MLflow model"]
    run_id = tracker.run_info()["mlflow"]["run_id"]
    assert [a.path for a in MlflowClient(tracking_uri=uri).list_artifacts(run_id)] == ["model.keras"]


def test_trackers_that_cannot_start_or_fail_mid_run_leave_training_and_outputs_intact(
    image_folder, base_weights, tmp_path, monkeypatch, caplog
):
    out = tmp_path / "run"
    (out / "csv" / "metrics.csv").mkdir(parents=True)  # the CSV tracker's first metrics write fails
    monkeypatch.setenv("NEPTUNE_API_TOKEN", "planted-token-5f1c9e")  # not a valid token: Neptune cannot start
    monkeypatch.chdir(tmp_path)
    with caplog.at_level(logging.WARNING, logger="transferlab.tracking"):
        summary = transferlab.train(compose_config(tiny_overrides(
            image_folder, out, base_weights, "logger=tensorboard_neptune", "logger.neptune.mode=async",
            "logger.neptune.project=nobody/nothing", "logger.csv=true",
        )))
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and r.name.startswith("transferlab.tracking")]
    assert len(warnings) == 2, warnings  # one for each broken tracker, however many calls followed
    assert warnings[0].startswith("Neptune tracker could not start (NeptuneInvalidApiTokenException")
    assert warnings[1].startswith("tracker CsvTracker failed in log_epoch")
    assert "planted-token-5f1c9e" not in caplog.text
    assert summary.status == "completed" and len(pd.read_csv(out / "history.csv")) == 4
    assert (out / "model.keras").is_file() and (out / "plots" / "learning_curves.png").is_file()
    assert (out / "csv" / "params.csv").is_file()  # written before the failure
    assert "neptune" not in summary.tracking


def test_a_tracker_failing_is_warned_about_once_and_the_others_keep_receiving(caplog):
    class Broken(NoOpTracker):
        def log_epoch(self, epoch, phase, metrics):
            raise OSError("No space left on device")

    class Recorder(NoOpTracker):
        def __init__(self):
            self.epochs = []

        def log_epoch(self, epoch, phase, metrics):
            self.epochs.append(epoch)

    recorder = Recorder()
    trackers = Trackers([Broken(), recorder])
    with caplog.at_level(logging.WARNING):
        for epoch in (1, 2, 3):
            trackers.log_epoch(epoch, "head", {"loss": 1.0})
    assert recorder.epochs == [1, 2, 3]
    assert [r.getMessage() for r in caplog.records] == [
        "tracker Broken failed in log_epoch (OSError: No space left on device); "
        "continuing without it, local outputs are unaffected"
    ]


def test_planted_api_token_appears_in_no_file_or_log(image_folder, base_weights, tmp_path):
    token = "tl-planted-7c2e41b9d0aa"
    out = tmp_path / "run"
    result = run_train_script(
        [*tiny_overrides(image_folder, out, base_weights, "logger=tensorboard_neptune"), f"hydra.run.dir={out}"],
        cwd=tmp_path, env={"NEPTUNE_API_TOKEN": token, "NEPTUNE_MODE": "offline"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    files = [p for folder in (out, tmp_path / ".neptune") for p in folder.rglob("*") if p.is_file()]
    assert any(p.name == "data-1.log" for p in files) and any(p.name == "train.log" for p in files)
    assert len(files) >= 15
    leaks = [str(p) for p in files if token.encode() in p.read_bytes()]
    assert leaks == []
    assert token not in result.stdout + result.stderr


def test_neptune_keys_are_typed_and_the_mode_checked():
    with pytest.raises(Exception, match="projct"):
        compose_config(["logger=neptune", "logger.neptune.projct=a/b"])
    assert "logger.neptune.mode='online' must be one of async, sync, offline, debug" in config_error_line(
        ["logger=neptune", "logger.neptune.mode=online", "paths.output_dir=x"])


def test_tracker_presets_compose_and_do_not_import_tracker_packages_for_cfg_job():
    result = subprocess.run(
        [sys.executable, "-X", "importtime", str(TRAIN_SCRIPT), "--cfg", "job", "logger=tensorboard_neptune"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "neptune:\n    project:" in result.stdout and "tensorboard: true" in result.stdout
    modules = {line.split("|")[-1].strip().split(".")[0] for line in result.stderr.splitlines() if "import time:" in line}
    assert not modules & {"tensorflow", "keras", "neptune", "mlflow", "matplotlib"}


# --- comparing runs -------------------------------------------------------------------------------------------

def write_run(root: Path, run: str, accuracy: float, *overrides: str, tags=("study",), sweep=None) -> Path:
    """A finished run's files as a real run writes them: resolved config.yaml, summary.json, history.csv."""
    from transferlab.training.runs import prepare_run_dir

    run_dir = root / run
    cfg = to_experiment_config(compose_config(["name=study", f"paths.output_dir={run_dir}", *overrides]))
    prepare_run_dir(cfg)
    summary = {
        "status": "completed",
        "metrics": {"test/accuracy": accuracy, "test/loss": 1 - accuracy, "best/val_loss": 1.1 - accuracy},
        "phases": {"head": {"wall_time_s": 3.0}, "fine_tune": {"wall_time_s": 5.0}},
        "wall_time_s": 9.0,
        "tracking": {"tags": list(tags), "sweep": sweep, "neptune": {"id": f"offline/{run}"}},
    }
    (run_dir / "summary.json").write_text(json.dumps(summary))
    pd.DataFrame({"epoch": [1, 2], "phase": ["head", "fine_tune"], "val_accuracy": [0.5, accuracy]}).to_csv(
        run_dir / "history.csv", index=False
    )
    return run_dir


@pytest.fixture
def three_runs(tmp_path) -> Path:
    root = tmp_path / "outputs"
    write_run(root, "study/2026-01-01_10-00-00", 0.70, "schedule.head.lr=0.01", tags=("study", "baseline"))
    write_run(root, "study/multirun/2026-01-02_09-00-00/0", 0.90, "schedule.head.lr=0.001", sweep="2026-01-02_09-00-00")
    write_run(root, "study/multirun/2026-01-02_09-00-00/1", 0.80, "schedule.head.lr=0.0001", "head.dropout=0.5",
              sweep="2026-01-02_09-00-00")
    return root


def test_compare_script_sorts_runs_and_shows_only_what_differs(three_runs, tmp_path):
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "compare.py"), str(three_runs), "--sort", "test/accuracy",
         "--out", str(tmp_path / "report")],
        capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.splitlines()
    assert lines[0].split()[:5] == ["run", "name", "status", "head.dropout", "schedule.head.lr"]
    assert [line.split()[0] for line in lines[1:4]] == [
        "study/multirun/2026-01-02_09-00-00/0", "study/multirun/2026-01-02_09-00-00/1", "study/2026-01-01_10-00-00",
    ]
    table = pd.read_csv(tmp_path / "report" / "comparison.csv")
    assert list(table["test/accuracy"]) == [0.9, 0.8, 0.7]
    assert list(table["schedule.head.lr"]) == [0.001, 0.0001, 0.01]
    assert list(table["time/fine_tune"]) == [5.0, 5.0, 5.0] and table["neptune_id"][0].startswith("offline/")
    assert not [c for c in table.columns if c.startswith(("paths.", "dataset.", "base_model."))]
    page = (tmp_path / "report" / "comparison.html").read_text()
    assert "<table" in page and page.count('<img src="data:image/png;base64,') == 3  # lr, dropout, curves


def test_compare_filters_by_tag_name_and_sweep_and_sorts_losses_ascending(three_runs):
    from transferlab.reporting.compare import Filters, comparison_table, load_runs

    assert list(load_runs(three_runs, Filters(tags=("baseline",)))["run"]) == ["study/2026-01-01_10-00-00"]
    sweep = load_runs(three_runs, Filters(sweep="2026-01-02_09-00-00"))
    assert len(sweep) == 2 and set(sweep["sweep"]) == {"2026-01-02_09-00-00"}
    assert load_runs(three_runs, Filters(name="other")).empty
    by_loss = comparison_table(load_runs(three_runs), "test/loss")
    assert list(by_loss["test/loss"]) == sorted(by_loss["test/loss"])
    with pytest.raises(ConfigError, match="cannot sort by 'test/f1'"):
        comparison_table(load_runs(three_runs), "test/f1")
