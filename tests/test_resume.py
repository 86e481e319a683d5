"""A killed run resumes where it was and ends exactly like an uninterrupted one."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import (
    ROOT,
    TRAIN_SCRIPT,
    run_train_script,
    tiny_overrides,
    write_class_images,
)

from transferlab.errors import ModelError
from transferlab.training.checkpoints import (
    ScheduleState,
    load_checkpoint,
    save_checkpoint,
)

METRICS = ["loss", "accuracy", "val_loss", "val_accuracy"]


@pytest.fixture(scope="module")
def slow_folder(tmp_path_factory) -> Path:
    """Enough images (decoded every epoch) that an epoch lasts long enough to be killed inside."""
    return write_class_images(tmp_path_factory.mktemp("resume") / "pets", 40, size=32)


def overrides(data: Path, weights: Path, *extra: str) -> list[str]:
    return [
        *(o for o in tiny_overrides(data, Path("unused"), weights) if not o.startswith("paths.")),
        "dataset.image_size=[32,32]",
        "dataset.cache=false",
        "schedule.head.epochs=2",
        "schedule.fine_tune.epochs=4",
        "schedule.fine_tune.patience=3",
        "trainer.deterministic=true",
        "logger=none",
        *extra,
    ]


def cli(args: list[str], run_dir: Path, cwd: Path) -> subprocess.Popen:
    # This checkout's package first, as in conftest.run_train_script.
    python_path = os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "TRANSFERLAB_DATA_DIR": str(cwd / "data"), "PYTHONPATH": python_path}
    return subprocess.Popen(
        [sys.executable, str(TRAIN_SCRIPT), *args, f"paths.output_dir={run_dir}", f"hydra.run.dir={run_dir}"],
        cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def wait_for_checkpoint(run_dir: Path, epoch: int, process: subprocess.Popen, timeout: float = 300) -> None:
    pointer = run_dir / "checkpoints" / "latest"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pointer.is_file() and pointer.read_text() >= f"epoch-{epoch:04d}":
            return
        assert process.poll() is None, process.communicate()[1][-3000:]
        time.sleep(0.005)
    raise AssertionError(f"no checkpoint of epoch {epoch} within {timeout}s")


def test_run_killed_in_phase_two_resumes_to_the_same_history(slow_folder, base_weights, tmp_path):
    args = overrides(slow_folder, base_weights)
    reference = cli(args, tmp_path / "reference" / "run", tmp_path)
    assert reference.wait(timeout=600) == 0, reference.stderr.read()[-3000:]

    killed_dir = tmp_path / "runs" / "killed"
    killed = cli(args, killed_dir, tmp_path)
    wait_for_checkpoint(killed_dir, 3, killed)  # first fine-tuning epoch done
    killed.send_signal(signal.SIGKILL)
    killed.wait(timeout=60)
    history_at_kill = pd.read_csv(killed_dir / "history.csv")
    assert 3 <= len(history_at_kill) < 6 and history_at_kill["phase"].iloc[-1] == "fine_tune"
    assert not (killed_dir / "summary.json").exists()

    resumed = cli([*args, "resume=true"], tmp_path / "runs" / "resumer", tmp_path)
    assert resumed.wait(timeout=600) == 0, resumed.stderr.read()[-3000:]
    assert [p.name for p in (tmp_path / "runs").iterdir()] == ["killed"]  # the resume left no folder of its own
    expected = pd.read_csv(tmp_path / "reference" / "run" / "history.csv")
    got = pd.read_csv(killed_dir / "history.csv")
    assert list(got["epoch"]) == list(expected["epoch"]) and list(got["phase"]) == list(expected["phase"])
    np.testing.assert_allclose(got[METRICS].to_numpy(), expected[METRICS].to_numpy(), rtol=0, atol=1e-6)
    summary = json.loads((killed_dir / "summary.json").read_text())
    reference_summary = json.loads((tmp_path / "reference" / "run" / "summary.json").read_text())
    assert summary["status"] == "completed"
    assert summary["metrics"]["test/accuracy"] == pytest.approx(reference_summary["metrics"]["test/accuracy"], abs=1e-6)


def test_run_killed_in_the_cached_head_phase_resumes_to_the_same_run(slow_folder, base_weights, tmp_path):
    """Head-phase checkpoints hold only what trains (no model file); the resumed run still ends identically."""
    args = overrides(slow_folder, base_weights, "schedule.head.epochs=15", "schedule.fine_tune.epochs=1",
                     "schedule.head.patience=20")
    reference = cli(args, tmp_path / "reference" / "run", tmp_path)
    assert reference.wait(timeout=600) == 0, reference.stderr.read()[-3000:]

    killed_dir = tmp_path / "runs" / "killed"
    killed = cli(args, killed_dir, tmp_path)
    wait_for_checkpoint(killed_dir, 2, killed)
    killed.send_signal(signal.SIGKILL)
    killed.wait(timeout=60)
    checkpoint = load_checkpoint(killed_dir / "checkpoints")
    assert checkpoint.state.phase == "head" and checkpoint.state.epoch < 15, "killed too late to test the head phase"
    assert checkpoint.frozen_base and not (checkpoint.folder / "model.keras").exists()

    resumed = cli([*args, "resume=true"], tmp_path / "runs" / "resumer", tmp_path)
    assert resumed.wait(timeout=600) == 0, resumed.stderr.read()[-3000:]
    expected = pd.read_csv(tmp_path / "reference" / "run" / "history.csv")
    got = pd.read_csv(killed_dir / "history.csv")
    assert list(got["phase"]) == list(expected["phase"]) == ["head"] * 15 + ["fine_tune"]
    np.testing.assert_allclose(got[METRICS].to_numpy(), expected[METRICS].to_numpy(), rtol=0, atol=1e-6)
    from transferlab.models.saved import load_trained_model

    for name in ("model.keras", "best.keras"):
        ours = load_trained_model(str(killed_dir / name)).get_weights()
        theirs = load_trained_model(str(tmp_path / "reference" / "run" / name)).get_weights()
        for a, b in zip(ours, theirs, strict=True):
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)


def test_run_killed_in_fine_tuning_before_it_beat_the_head_phase_keeps_that_best(slow_folder, base_weights, tmp_path):
    """The head phase's best is not written while fine-tuning may still beat it; killed in between, the
    checkpoint holds it, and the resumed run writes it on the pretrained base rebuilt from the config."""
    from transferlab.models.saved import load_trained_model

    # Validation accuracy reaches 1.0 in the head phase, which fine-tuning cannot beat.
    args = overrides(slow_folder, base_weights, "schedule.head.epochs=8", "schedule.monitor=val_accuracy")
    head_only = tmp_path / "reference" / "head_only"
    assert cli([*args, "schedule.fine_tune.epochs=0"], head_only, tmp_path).wait(timeout=600) == 0
    assert pd.read_csv(head_only / "history.csv")["val_accuracy"].max() == 1.0, "the head phase must reach 1.0 here"

    killed_dir = tmp_path / "runs" / "killed"
    killed = cli(args, killed_dir, tmp_path)
    wait_for_checkpoint(killed_dir, 9, killed)  # the first fine-tuning epoch done
    killed.send_signal(signal.SIGKILL)
    killed.wait(timeout=60)
    checkpoint = load_checkpoint(killed_dir / "checkpoints")
    assert checkpoint.state.phase == "fine_tune" and checkpoint.state.epoch < 12, "killed too late"
    assert not checkpoint.frozen_base and checkpoint.arrays("best_pending") is not None
    assert not (killed_dir / "best.keras").exists()

    resumed = cli([*args, "resume=true"], tmp_path / "runs" / "resumer", tmp_path)
    assert resumed.wait(timeout=600) == 0, resumed.stderr.read()[-3000:]
    theirs = load_trained_model(str(head_only / "best.keras")).get_weights()
    # The resumed run also ends on that best: its final model is the head phase's, as an uninterrupted run's is.
    for name in ("best.keras", "model.keras"):
        ours = load_trained_model(str(killed_dir / name)).get_weights()
        for a, b in zip(ours, theirs, strict=True):
            np.testing.assert_array_equal(a, b)
    summary = json.loads((killed_dir / "summary.json").read_text())
    assert summary["model_from"]["phase"] == "head", summary["model_from"]


def test_sigterm_stops_gracefully_and_the_run_resumes(slow_folder, base_weights, tmp_path):
    args = overrides(slow_folder, base_weights, "schedule.fine_tune.epochs=1")
    run_dir = tmp_path / "runs" / "preempted"
    process = cli(args, run_dir, tmp_path)
    wait_for_checkpoint(run_dir, 1, process)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130
    assert stderr.strip().splitlines()[-1].startswith("error: interrupted (received SIGTERM)")
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "interrupted" and summary["resume_with"] == f"resume={run_dir}"
    assert (run_dir / "best.keras").is_file(), "an interrupted run keeps the best model it found"
    assert load_checkpoint(run_dir / "checkpoints").state.epoch >= 1

    result = run_train_script([*args, f"resume={run_dir}", f"hydra.run.dir={tmp_path / 'again'}"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    history = pd.read_csv(run_dir / "history.csv")
    assert list(history["epoch"]) == [1, 2, 3] and list(history["phase"]) == ["head", "head", "fine_tune"]


def test_resume_refuses_a_changed_config_and_a_finished_run(slow_folder, base_weights, tmp_path):
    args = overrides(slow_folder, base_weights, "schedule.head.epochs=1", "schedule.fine_tune.epochs=0")
    done = tmp_path / "runs" / "done"
    assert cli(args, done, tmp_path).wait(timeout=300) == 0
    finished = run_train_script([*args, f"resume={done}", f"hydra.run.dir={tmp_path / 'x'}"], cwd=tmp_path)
    assert finished.returncode == 2 and "has completed; there is nothing to resume" in finished.stderr
    (done / "summary.json").unlink()
    changed = run_train_script(
        [*args, "schedule.head.lr=0.5", f"resume={done}", f"hydra.run.dir={tmp_path / 'y'}"], cwd=tmp_path
    )
    assert changed.returncode == 2
    assert "cannot resume" in changed.stderr and "schedule.head.lr: 0.01 there, 0.5 now" in changed.stderr


def test_a_crash_while_writing_a_checkpoint_keeps_the_previous_one(tmp_path):
    import keras

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    save_checkpoint(tmp_path, model, ScheduleState(phase="head", epoch=1))

    class Exploding(keras.Model):
        def save(self, *args, **kwargs):
            raise OSError("disk full")

    with pytest.raises(OSError):
        save_checkpoint(tmp_path, Exploding(), ScheduleState(phase="head", epoch=2))
    checkpoint = load_checkpoint(tmp_path)
    assert checkpoint.state.epoch == 1 and checkpoint.load_model().count_params() == 3


def test_a_frozen_base_checkpoint_refuses_a_base_with_other_weights(tmp_path):
    import keras

    def classifier(bias: float) -> keras.Model:
        inputs = keras.Input((2,))
        base = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2, kernel_initializer="ones", bias_initializer=keras.initializers.Constant(bias))], name="base")
        model = keras.Model(inputs, keras.layers.Dense(1)(base(inputs)))
        model.compile(optimizer="adam", loss="mse")
        model.optimizer.build(model.trainable_variables)
        return model

    trained = classifier(0.0)
    save_checkpoint(tmp_path, trained, ScheduleState(phase="head", epoch=1), frozen_base=True)
    checkpoint = load_checkpoint(tmp_path)
    restored = checkpoint.load_model(lambda: classifier(0.0))
    assert np.array_equal(restored.layers[-1].kernel.numpy(), trained.layers[-1].kernel.numpy())
    with pytest.raises(ModelError, match="other weights than the checkpoint was trained on"):
        checkpoint.load_model(lambda: classifier(1.0))


def _frozen_base_classifier(path: Path):
    """A tiny compiled classifier whose base is the layer `base`, and the best-model callback over it."""
    import keras

    from transferlab.training.callbacks import BestModelCheckpoint

    inputs = keras.Input((2,))
    base = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2)], name="base")
    model = keras.Model(inputs, keras.layers.Dense(1, name="head")(base(inputs)))
    best = BestModelCheckpoint(model, path, monitor="val_loss", mode="min", save_best_only=True)
    best.set_model(model)
    return model, best


def _shift(layer, by: float) -> None:
    for variable in layer.weights:
        variable.assign(variable.numpy() + by)


def test_the_head_phase_best_is_written_only_when_fine_tuning_never_beats_it_and_the_run_ends_on_it(tmp_path):
    from transferlab.models.saved import load_trained_model

    model, best = _frozen_base_classifier(tmp_path / "best.keras")
    pretrained = [w.copy() for w in model.get_layer("base").get_weights()]
    best.begin_phase(frozen_base=True, last=False)
    best.on_epoch_end(0, {"val_loss": 1.0})
    head_at_best = [w.copy() for w in model.get_layer("head").get_weights()]
    _shift(model.get_layer("head"), 1.0)
    best.on_epoch_end(1, {"val_loss": 1.5})
    best.on_train_end()
    assert not (tmp_path / "best.keras").exists(), "written at the head phase's end although fine-tuning follows"

    best.begin_phase(frozen_base=False, last=True)
    _shift(model.get_layer("base"), 0.5)  # fine-tuning changes the base
    best.on_epoch_end(2, {"val_loss": 1.2})
    best.on_train_end()
    written = load_trained_model(str(tmp_path / "best.keras"))
    for got, expected in zip(written.get_layer("base").get_weights() + written.get_layer("head").get_weights(),
                             pretrained + head_at_best, strict=True):
        np.testing.assert_array_equal(got, expected)
    # LP-FT: fine-tuning that never beat the head phase leaves the model the run evaluates and saves at that best.
    for got, expected in zip(model.get_layer("base").get_weights() + model.get_layer("head").get_weights(),
                             pretrained + head_at_best, strict=True):
        np.testing.assert_array_equal(got, expected)


def test_fine_tuning_that_improves_replaces_the_pending_head_phase_best(tmp_path):
    from transferlab.models.saved import load_trained_model

    model, best = _frozen_base_classifier(tmp_path / "best.keras")
    best.begin_phase(frozen_base=True, last=False)
    best.on_epoch_end(0, {"val_loss": 1.0})
    best.on_train_end()
    best.begin_phase(frozen_base=False, last=True)
    _shift(model.get_layer("base"), 0.5)
    best.on_epoch_end(1, {"val_loss": 0.5})
    improved = [w.copy() for w in model.get_weights()]
    assert best.pending is None and best.pending_base is None
    _shift(model.get_layer("head"), 1.0)
    best.on_epoch_end(2, {"val_loss": 0.7})
    best.on_train_end()
    for got, expected in zip(load_trained_model(str(tmp_path / "best.keras")).get_weights(), improved, strict=True):
        np.testing.assert_array_equal(got, expected)


def test_same_seed_gives_identical_runs_and_the_rerun_command_repeats_a_run(image_folder, base_weights, tmp_path):
    args = [o for o in tiny_overrides(image_folder, Path("unused"), base_weights) if not o.startswith("paths.")]
    first = tmp_path / "first"
    run = run_train_script([*args, "trainer.deterministic=true", "dataset.validation_split=0.3", f"hydra.run.dir={first}"], cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    summary = json.loads((first / "summary.json").read_text())
    assert "dataset.validation_split=0.3" in summary["environment"]["overrides"]
    assert summary["environment"]["command"].startswith("train.py ")
    # The documented re-run: the run's own composed config, nothing else on the command line.
    again = tmp_path / "again"
    rerun = run_train_script(
        ["--config-path", str(first / ".hydra"), "--config-name", "config", f"hydra.run.dir={again}"], cwd=tmp_path
    )
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    first_history, again_history = (pd.read_csv(d / "history.csv").drop(columns="epoch_time_s") for d in (first, again))
    pd.testing.assert_frame_equal(first_history, again_history, check_exact=True)
    assert json.loads((again / "summary.json").read_text())["data_fingerprint"] == summary["data_fingerprint"]
    from transferlab.models.saved import load_trained_model

    for a, b in zip(load_trained_model(str(first / "model.keras")).get_weights(),
                    load_trained_model(str(again / "model.keras")).get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
