"""Hostile input: whatever the config or the files, a clear error or a run, never a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import (
    assert_accepted_or_one_line,
    compose_config,
    run_train_script,
    tiny_overrides,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import transferlab
from transferlab.config.convert import to_experiment_config
from transferlab.errors import TrainingError, TransferlabError
from transferlab.modalities.images import check_model_config

KEYS = [
    "dataset.batch_size", "dataset.image_size", "dataset.validation_split", "dataset.test_split",
    "dataset.train_per_class", "dataset.on_bad_file", "dataset.classes", "base_model.name", "base_model.weights",
    "base_model.alpha", "head.dropout", "head.hidden_units", "head.pooling", "augmentation.flip",
    "augmentation.rotation", "optimizer.name", "schedule.head.epochs", "schedule.head.lr",
    "schedule.fine_tune.unfreeze", "schedule.fine_tune.patience", "schedule.mode", "trainer.seed",
    "dataset.batchsize", "schedule.head.epoch", "nonsense",
]
VALUES = st.one_of(
    st.integers(-5, 300).map(str),
    st.floats(-2, 2, allow_nan=False).map(lambda f: f"{f:g}"),
    st.sampled_from(["null", "true", "abc", "[]", "[1,2]", "[0,0]", "[64,64]", "imagenet", "xception", "all", "-1e-3", "''", "nan", "inf"]),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(KEYS), VALUES), min_size=1, max_size=4, unique_by=lambda kv: kv[0]))
def test_any_override_is_accepted_or_refused_with_one_clear_line(pairs):
    overrides = [f"{k}={v}" for k, v in pairs] + ["paths.output_dir=unused"]
    assert_accepted_or_one_line(lambda: check_model_config(to_experiment_config(compose_config(overrides))))


def test_non_finite_loss_stops_the_run_and_marks_it_failed(image_folder, tmp_path):
    import keras

    from transferlab.models.digits import digits_cnn

    base = digits_cnn(input_shape=(16, 16, 3))
    kernel = base.get_layer("block1_conv").kernel
    kernel.assign(np.full(kernel.shape, np.nan, dtype="float32"))
    base.save_weights(tmp_path / "nan.weights.h5")
    keras.utils.set_random_seed(0)
    with pytest.raises(TrainingError, match=r"the training loss became nan at epoch \d of phase (head|fine_tune); lower schedule\.\w+\.lr"):
        transferlab.train(compose_config(tiny_overrides(image_folder, tmp_path / "r", tmp_path / "nan.weights.h5")))
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["status"] == "failed" and "TrainingError" in summary["error"]


def test_unwritable_output_directory_is_a_clear_error(image_folder, base_weights, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    with pytest.raises(TransferlabError, match="cannot write the run directory .*choose a writable folder"):
        transferlab.train(compose_config(tiny_overrides(image_folder, blocker / "run", base_weights)))


def test_a_bad_value_in_a_sweep_fails_only_that_job(image_folder, base_weights, tmp_path):
    args = [o for o in tiny_overrides(image_folder, Path("unused"), base_weights) if not o.startswith("paths.")]
    args = [a for a in args if not a.startswith("schedule.head.lr")]
    result = run_train_script(
        ["-m", *args, "schedule.head.lr=-1,0.01", "schedule.fine_tune.epochs=0", f"hydra.sweep.dir={tmp_path / 'sweep'}"],
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-2000:]  # the sweep ran every job and wrote its summary
    assert "job 0 (" in result.stdout and "schedule.head.lr=-1.0 must be a positive learning rate" in result.stdout
    assert (tmp_path / "sweep" / "sweep_summary.csv").is_file()
    assert json.loads((tmp_path / "sweep" / "1" / "summary.json").read_text())["status"] == "completed"
    assert not (tmp_path / "sweep" / "0" / "summary.json").exists()
