"""Hostile or damaged run folders: resume executes nothing from them, and a damaged checkpoint is one line."""

from __future__ import annotations

import json
import logging
import os
import pickle
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import compose_config, tiny_overrides

import transferlab
from transferlab.errors import CheckpointError
from transferlab.training.checkpoints import (
    ScheduleState,
    load_checkpoint,
    save_checkpoint,
)


class Planted:
    """Unpickling this creates the marker file: proof that a pickle from the run folder was loaded."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch '{self.marker}'",)


def test_resume_runs_nothing_from_the_run_folder_and_falls_back_past_a_planted_npz(image_folder, base_weights, tmp_path, caplog):
    run_dir, marker = tmp_path / "run", tmp_path / "pwned"
    args = tiny_overrides(image_folder, run_dir, base_weights, "logger=none", "trainer.deterministic=true")
    transferlab.train(compose_config(args))
    reference = pd.read_csv(run_dir / "history.csv")
    (run_dir / "summary.json").unlink()  # as if killed after its last checkpoint
    for folder in (run_dir / "checkpoints").glob("epoch-*"):
        (folder / "rng.pkl").write_bytes(pickle.dumps(Planted(marker)))  # where older versions kept the RNG states
    latest = load_checkpoint(run_dir / "checkpoints").folder
    np.savez(latest / "early_stopping_best.npz", w0=np.array([Planted(marker)], dtype=object))  # pickled inside

    with caplog.at_level(logging.WARNING, logger="transferlab.training.checkpoints"):
        summary = transferlab.train(compose_config([*args, f"resume={run_dir}"]))
    assert not marker.exists(), "resume unpickled a file from the run folder"
    assert summary.status == "completed"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("early_stopping_best.npz" in w and "resuming from the checkpoint epoch-0003" in w for w in warnings), warnings
    resumed = pd.read_csv(run_dir / "history.csv")
    assert list(resumed["epoch"]) == [1, 2, 3, 4]
    metrics = ["loss", "accuracy", "val_loss", "val_accuracy"]
    np.testing.assert_allclose(resumed[metrics].to_numpy(), reference[metrics].to_numpy(), rtol=0, atol=1e-6)


def _two_checkpoints(root: Path, frozen_base: bool = False) -> None:
    import keras

    inputs = keras.Input((2,))
    base = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2)], name="base")
    model = keras.Model(inputs, keras.layers.Dense(1)(keras.layers.Dropout(0.5)(base(inputs))))
    model.compile(optimizer="adam", loss="mse")
    model.optimizer.build(model.trainable_variables)
    for epoch in (1, 2):
        save_checkpoint(root, model, ScheduleState(phase="head", epoch=epoch), frozen_base=frozen_base)


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


# kind: (frozen-base checkpoints, what the warning names, the damage done to the newer one, the one resumed from)
DAMAGE = {
    "truncated model.keras": (False, "model.keras", lambda f: _truncate(f / "model.keras"), 1),
    "truncated trained.npz": (True, "trained.npz", lambda f: _truncate(f / "trained.npz"), 1),
    "invalid state.json": (False, "state.json", lambda f: (f / "state.json").write_text('{"phase": "head", "epoch": '), 1),
    "state.json of other fields": (False, "state.json", lambda f: (f / "state.json").write_text('{"epoch": "two"}'), 1),
    "state.json with broken early stopping": (False, "state.json", lambda f: (f / "state.json").write_text(
        json.dumps(asdict(ScheduleState(phase="head", epoch=2, early_stopping={"wait": 1})))), 1),
    "invalid rng.json": (False, "rng.json", lambda f: (f / "rng.json").write_text('{"python": [1, 2], "numpy": {}}'), 1),
    "object array in seeds.npz": (False, "seeds.npz", lambda f: np.savez(f / "seeds.npz", w0=np.array([{}], dtype=object)), 1),
    "an old checkpoint with rng.pkl": (False, "no rng.json", lambda f: (f / "rng.json").rename(f / "rng.pkl"), 1),
    # The pointer damaged: the newest complete folder is used.
    "latest names a missing folder": (False, "latest' names epoch-0009", lambda f: (f.parent / "latest").write_text("epoch-0009"), 2),
    "latest names a path outside": (False, "not a checkpoint folder", lambda f: (f.parent / "latest").write_text("../../etc"), 2),
    "latest is missing": (False, "latest' is missing", lambda f: (f.parent / "latest").unlink(), 2),
}


@pytest.mark.parametrize("kind", DAMAGE)
def test_a_damaged_checkpoint_falls_back_to_the_previous_one_and_then_is_one_line(kind, tmp_path, caplog):
    frozen_base, named, damage, fallback = DAMAGE[kind]
    root = tmp_path / "checkpoints"
    _two_checkpoints(root, frozen_base)
    damage(root / "epoch-0002")
    with caplog.at_level(logging.WARNING, logger="transferlab.training.checkpoints"):
        checkpoint = load_checkpoint(root)
    assert checkpoint.state.epoch == fallback and checkpoint.folder.name == f"epoch-{fallback:04d}"
    assert checkpoint.frozen_base or checkpoint.load_model().count_params() == 9
    warnings = [r.getMessage() for r in caplog.records if r.name == "transferlab.training.checkpoints"]
    assert len(warnings) == 1 and named in warnings[0] and "\n" not in warnings[0]
    assert f"resuming from the checkpoint epoch-{fallback:04d}" in warnings[0]

    for folder in root.glob("epoch-*"):  # now the one resumed from, and any older, are damaged too
        if int(folder.name.removeprefix("epoch-")) <= fallback:
            (folder / "state.json").write_text("not json")
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(root)
    message = str(error.value)
    assert "\n" not in message and message.startswith("cannot resume: ") and named in message
    assert "delete that folder and resume again" in message and str(root) in message


def test_a_checkpoint_model_that_would_run_code_is_refused_by_safe_mode(tmp_path):
    import keras

    marker = tmp_path / "pwned"
    # A literal lambda: Keras stores its bytecode, and would run it when loading outside safe mode.
    touch = eval(f"lambda x: (__import__('os').system(\"touch '{marker}'\"), x)[1]")
    model = keras.Sequential([keras.Input((2,)), keras.layers.Lambda(touch), keras.layers.Dense(1)])
    save_checkpoint(tmp_path / "checkpoints", model, ScheduleState(phase="head", epoch=1))
    marker.unlink(missing_ok=True)  # building the model above ran the lambda once
    with pytest.raises(CheckpointError, match=r"model\.keras' cannot be loaded .*[Ll]ambda"):
        load_checkpoint(tmp_path / "checkpoints")
    assert not marker.exists()


def test_the_last_two_checkpoints_are_kept(tmp_path):
    import keras

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    root = tmp_path / "checkpoints"
    for epoch in (1, 2, 3):
        save_checkpoint(root, model, ScheduleState(phase="head", epoch=epoch))
    assert sorted(p.name for p in root.iterdir()) == ["epoch-0002", "epoch-0003", "latest"]
    # A phase's end saves its last epoch again: the one before stays.
    save_checkpoint(root, model, ScheduleState(phase="head", epoch=3, finished_phases=["head"]))
    assert sorted(p.name for p in root.iterdir()) == ["epoch-0002", "epoch-0003", "latest"]
    assert json.loads((root / "epoch-0003" / "state.json").read_text())["finished_phases"] == ["head"]


def test_a_sigterm_whose_interrupt_was_swallowed_still_ends_the_run_at_the_next_epoch():
    """Python prints and drops an exception raised in a finalizer; the recorded signal still stops the run."""
    import os
    import signal

    from transferlab.training.runs import raise_if_signalled, stop_on_signals

    with stop_on_signals():
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            signal.getsignal(signal.SIGTERM)  # any bytecode: the handler runs here
        except KeyboardInterrupt:
            pass  # what a finalizer or a broad except would do with it
        with pytest.raises(KeyboardInterrupt, match="received SIGTERM"):
            raise_if_signalled()
    raise_if_signalled()  # outside the run, nothing is pending
