"""Disk and filesystem faults: a full disk ends the run with one line and leaves no partial model."""

from __future__ import annotations

import errno
import json
import logging
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, TRAIN_SCRIPT, compose_config, tiny_overrides

import transferlab
from transferlab.atomic import save_model
from transferlab.errors import StorageError
from transferlab.training import recipe as training
from transferlab.training.checkpoints import load_checkpoint

# Above every small file a run writes (config, logs, state and RNG JSON, cached features), below a model file (~1 MB).
FILE_SIZE_LIMIT = 256 * 1024


def _limit_file_size() -> None:
    """In the child: writes past the limit fail with EFBIG (as they would with ENOSPC on a full disk)."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_SIZE_LIMIT, FILE_SIZE_LIMIT))


def test_a_disk_that_fills_mid_run_ends_with_one_line_and_no_partial_model(image_folder, base_weights, tmp_path):
    run_dir = tmp_path / "run"
    args = [o for o in tiny_overrides(image_folder, run_dir, base_weights, "logger=none") if not o.startswith("paths.output_dir")]
    python_path = os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")]))
    result = subprocess.run(
        [sys.executable, str(TRAIN_SCRIPT), *args, f"paths.output_dir={run_dir}", f"hydra.run.dir={run_dir}"],
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": python_path, "TRANSFERLAB_DATA_DIR": str(tmp_path / "data")},
        capture_output=True, text=True, timeout=600, preexec_fn=_limit_file_size,
    )
    assert result.returncode == 2, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert errors[0].startswith(f"error: file too large writing {run_dir / 'best.keras'} ([Errno 27]")
    assert errors[0].endswith(f"free space and resume with resume={run_dir}")
    # The first fine-tuning epoch's best.keras was the first file too large: neither it nor its temporary file is left.
    assert not list(run_dir.glob("*.keras")) and not list(run_dir.glob(".*.keras"))
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "failed" and summary["resume_with"] == f"resume={run_dir}"
    assert summary["error"].startswith("OSError: [Errno 27] File too large") and "best.keras" in summary["error"]
    checkpoint = load_checkpoint(run_dir / "checkpoints")  # the head phase's checkpoints are complete
    assert checkpoint.state.epoch == 2 and checkpoint.frozen_base

    # Space freed, the command the message gives finishes the run.
    resumed = transferlab.train(compose_config([*args, f"paths.output_dir={tmp_path / 'unused'}", f"resume={run_dir}"]))
    assert resumed.status == "completed" and resumed.epochs == 4
    assert (run_dir / "best.keras").stat().st_size > FILE_SIZE_LIMIT


def test_a_model_file_that_cannot_be_written_leaves_the_previous_one(tmp_path):
    import keras

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    path = tmp_path / "best.keras"
    save_model(model, path)
    before = path.read_bytes()

    class FullDisk(keras.Sequential):
        def save(self, filepath, *args, **kwargs):
            Path(filepath).write_bytes(b"half a zip")
            raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError) as error:
        save_model(FullDisk([keras.Input((2,)), keras.layers.Dense(1)]), path)
    assert error.value.filename == str(path)
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["best.keras"]


@pytest.mark.parametrize("first", [OSError(errno.ENOSPC, "No space left on device"), RuntimeError("the first error")])
def test_a_failure_summary_that_cannot_be_written_does_not_hide_the_first_error(first, image_folder, base_weights, tmp_path, monkeypatch, caplog):
    def fail(*args):
        raise first

    def full_disk(*args):
        raise OSError(errno.ENOSPC, "No space left on device", "summary.json.tmp")

    monkeypatch.setattr(training, "run_experiment", fail)
    monkeypatch.setattr(training, "write_json", full_disk)
    cfg = compose_config(tiny_overrides(image_folder, tmp_path / "run", base_weights, "logger=none"))
    with caplog.at_level(logging.WARNING, logger="transferlab.training"), pytest.raises(Exception) as raised:
        transferlab.train(cfg)
    if isinstance(first, OSError):
        assert isinstance(raised.value, StorageError) and raised.value.__cause__ is first
        assert str(raised.value) == (
            f"no space left ([Errno 28] No space left on device); free space and resume with resume={tmp_path / 'run'}"
        )
    else:
        assert raised.value is first
    assert any("could not record the failure" in r.getMessage() and "summary.json.tmp" in r.getMessage() for r in caplog.records)
