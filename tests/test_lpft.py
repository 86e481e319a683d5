"""LP-FT: the head phase solved to the linear probe's optimum, fine-tuning that keeps what it found, and the
numbers set side by side (head, fine-tuned, baseline; validation and test)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import SHARED_DATA, compose_config, config_error_line, run_train_script, tiny_overrides

import transferlab
from transferlab.config.schema import BaselineConfig, BaselineEstimator
from transferlab.errors import TrainingError


def head_model(features: int, units: int, hidden: tuple[int, ...] = ()):
    import keras

    inputs = keras.Input((features,))
    x = keras.layers.Dropout(0.2)(inputs)
    for size in hidden:
        x = keras.layers.Dense(size, activation="relu")(x)
    return keras.Model(inputs, keras.layers.Dense(units)(x))


def blobs(n: int, classes: int, features: int = 12, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Overlapping classes on features of very different scales (what pooled CNN features look like)."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    centres = rng.normal(size=(classes, features))
    x = (centres[y] + rng.normal(scale=1.5, size=(n, features))) * rng.uniform(0.01, 20, size=features)
    return x.astype(np.float32), y


@pytest.mark.parametrize("classes", [2, 4])
def test_the_solved_head_predicts_what_the_scikit_learn_fit_predicts(classes):
    from scipy.special import expit, softmax

    from transferlab.features.baseline import make_estimator
    from transferlab.training.head_solver import solve_linear_head

    train, validation = blobs(120, classes), blobs(60, classes, seed=1)
    units = 1 if classes == 2 else classes
    head = head_model(train[0].shape[1], units)
    probe = solve_linear_head(head, train, validation, [0.01, 1.0, 100.0])
    fit = make_estimator(BaselineConfig(C=probe.C)).fit(*train)
    logits = np.asarray(head(validation[0], training=False), dtype=np.float64)
    ours = np.column_stack([1 - expit(logits[:, 0]), expit(logits[:, 0])]) if classes == 2 else softmax(logits, axis=1)
    np.testing.assert_allclose(ours, fit.predict_proba(validation[0]), atol=1e-5)
    np.testing.assert_array_equal(ours.argmax(axis=1), fit.predict(validation[0]))
    # The C kept is the one the validation split scores best among those tried.
    scores = {c: make_estimator(BaselineConfig(C=c)).fit(*train).score(*validation) for c in (0.01, 1.0, 100.0)}
    assert probe.validation_accuracy == pytest.approx(max(scores.values()))
    assert scores[probe.C] == max(scores.values())


def test_only_a_linear_head_on_feature_vectors_is_solved():
    import keras

    from transferlab.training.head_solver import linear_output

    assert linear_output(head_model(8, 3)) is not None
    assert linear_output(head_model(8, 3, hidden=(16,))) is None
    tokens = keras.Input((10, 8))
    assert linear_output(keras.Model(tokens, keras.layers.Dense(3)(tokens))) is None


def test_the_probe_always_tries_the_baselines_own_C():
    from transferlab.training.head_solver import probe_grid

    assert probe_grid([0.01, 0.1], BaselineConfig(C=3.0)) == [0.01, 0.1, 3.0]
    assert probe_grid([0.01], BaselineConfig(estimator=BaselineEstimator.knn, C=3.0)) == [0.01]


def test_a_training_split_without_every_class_is_refused_in_one_line():
    from transferlab.training.head_solver import solve_linear_head

    x, y = blobs(40, 3)
    with pytest.raises(TrainingError, match="holds 2 of the head's 4 classes.*solver=sgd"):
        solve_linear_head(head_model(x.shape[1], 4), (x, y % 2), None, [1.0])


@pytest.mark.parametrize("extra, expected", [
    (["head=mlp", "schedule.head.solver=lbfgs"], "schedule.head.solver='lbfgs' solves a linear head only"),
    (["schedule.head.solver=lbfgs", "schedule.head.cache_features=false"], "solves the head on cached base features"),
    (["schedule.head.solver_grid=[]"], "schedule.head.solver_grid=[] must be a non-empty list of positive C values"),
    (["schedule.fine_tune.base_lr_scale=0"], "schedule.fine_tune.base_lr_scale=0.0 must be in (0, 1]"),
])
def test_solver_and_learning_rate_scale_settings_that_cannot_work_are_one_line(image_folder, tmp_path, extra, expected):
    line = config_error_line(tiny_overrides(image_folder, tmp_path / "run", "null", *extra))
    assert expected in line and "\n" not in line


def test_lbfgs_with_augmentation_is_refused_before_training(image_folder, base_weights, tmp_path):
    from transferlab.errors import ConfigError

    overrides = tiny_overrides(image_folder, tmp_path / "run", base_weights, "schedule.head.solver=lbfgs",
                               "augmentation=flip_rotate")
    with pytest.raises(ConfigError, match="runs on the inputs .*augmentation.*solver=sgd"):
        transferlab.train(compose_config(overrides))
    assert not (tmp_path / "run" / "history.csv").exists()


@pytest.fixture(scope="module")
def solved_run(image_folder, base_weights, tmp_path_factory):
    out = tmp_path_factory.mktemp("lpft") / "solved"
    overrides = tiny_overrides(image_folder, out, base_weights, "schedule.head.solver=auto", "schedule.fine_tune.epochs=3")
    return out, transferlab.train(compose_config(overrides))


def test_the_default_head_phase_is_one_solved_epoch_that_reaches_the_baseline(solved_run):
    out, summary = solved_run
    history = pd.read_csv(out / "history.csv")
    assert list(history["phase"]) == ["head", "fine_tune", "fine_tune", "fine_tune"]
    head = summary.phases["head"]
    assert head["solver"] == "lbfgs" and head["epochs_run"] == 1
    assert head["solver_C"] == history["solver_C"][0] and head["solver_C"] in (0.001, 0.01, 0.1, 1.0, 10.0)
    # The baseline is one of the fits the solver chose among: the head starts at least as good on validation.
    metrics = summary.metrics
    assert metrics["head/best_val_accuracy"] >= metrics["baseline/validation_accuracy"] - 1e-6, metrics
    assert {"head/test_accuracy", "head/test_loss", "fine_tune/best_val_accuracy", "baseline/test_accuracy"} <= set(metrics)


def test_the_run_ends_on_its_best_epoch_and_says_which(solved_run):
    from transferlab.models.saved import load_trained_model

    out, summary = solved_run
    written = json.loads((out / "summary.json").read_text())
    history = pd.read_csv(out / "history.csv")
    best = history.loc[history["val_loss"].idxmin()]
    assert written["model_from"] == {"phase": best["phase"], "epoch": int(best["epoch"]), "monitor": "val_loss",
                                     "value": pytest.approx(best["val_loss"])}
    for final, kept in zip(load_trained_model(str(out / "model.keras")).get_weights(),
                           load_trained_model(str(out / "best.keras")).get_weights(), strict=True):
        np.testing.assert_array_equal(final, kept)


def test_a_model_below_its_baseline_on_validation_says_so_in_one_warning():
    from transferlab.reporting.summary import baseline_warnings

    assert baseline_warnings({"best/val_accuracy": 0.93, "baseline/validation_accuracy": 0.93}) == []
    (warning,) = baseline_warnings({"best/val_accuracy": 0.88, "baseline/validation_accuracy": 0.93})
    assert "0.8800 is below its own baseline's 0.9300" in warning and "schedule.head.solver" in warning
    assert "\n" not in warning


def test_a_scaled_base_rate_moves_the_base_by_that_fraction_of_the_heads_step(tmp_path):
    import keras

    from transferlab.config.schema import OptimizerConfig, OptimizerName
    from transferlab.models.saved import load_trained_model
    from transferlab.training.optimizers import make_optimizer

    inputs = keras.Input((3,))
    base = keras.Sequential([keras.layers.Dense(4)], name="base")
    model = keras.Model(inputs, keras.layers.Dense(1, name="head_output")(base(inputs)))
    before = [np.array(v) for v in model.trainable_variables]
    optimizer = make_optimizer(OptimizerConfig(name=OptimizerName.sgd, momentum=0.0), 0.1, scaled=[0, 1],
                               base_lr_scale=0.25)
    optimizer.apply([keras.ops.ones_like(v) for v in model.trainable_variables], model.trainable_variables)
    steps = [float(np.abs(b - np.array(v)).max()) for b, v in zip(before, model.trainable_variables, strict=True)]
    assert steps == pytest.approx([0.025, 0.025, 0.1, 0.1])
    # A model compiled with it saves and loads in a fresh process's way (the class is registered for loading).
    model.compile(optimizer=optimizer, loss="mse")
    model.save(tmp_path / "m.keras")
    loaded = load_trained_model(str(tmp_path / "m.keras")).optimizer
    assert type(loaded).__name__ == "BaseScaledSGD" and loaded.base_lr_scale == 0.25 and loaded.scaled == {0, 1}


def test_fine_tuning_with_a_scaled_base_rate_trains_and_resumes_its_optimizer(image_folder, base_weights, tmp_path):
    out = tmp_path / "scaled"
    summary = transferlab.train(compose_config(tiny_overrides(
        image_folder, out, base_weights, "schedule.fine_tune.base_lr_scale=0.1")))
    assert summary.phases["fine_tune"]["epochs_run"] == 2
    from transferlab.training.checkpoints import load_checkpoint

    optimizer = load_checkpoint(out / "checkpoints").model.optimizer
    assert type(optimizer).__name__ == "BaseScaledAdam" and optimizer.base_lr_scale == pytest.approx(0.1)


CATS_DOGS = SHARED_DATA / "cats_dogs"
MOBILENET_WEIGHTS = SHARED_DATA / "weights" / "mobilenet_2_5_224_tf_no_top.h5"


@pytest.mark.slow
@pytest.mark.skipif(not (CATS_DOGS.is_dir() and MOBILENET_WEIGHTS.is_file()), reason="shared real data not available")
def test_on_real_photos_the_head_reaches_the_baseline_and_fine_tuning_keeps_it(tmp_path):
    """The issue's case: MobileNet 0.25 ImageNet at 224, the shared cats and dogs, 10 head + 5 fine-tune epochs;
    before LP-FT the fine-tuned model scored 0.86 on the 100 test photos against the baseline's 0.93."""
    (tmp_path / "keras_home" / "models").mkdir(parents=True)
    shutil.copy(MOBILENET_WEIGHTS, tmp_path / "keras_home" / "models" / MOBILENET_WEIGHTS.name)
    out = tmp_path / "run"
    result = run_train_script(
        ["dataset=image_folder", f"dataset.path={CATS_DOGS}", "dataset.image_size=[224,224]",
         "dataset.validation_split=0.15", "dataset.test_split=0.25", "base_model=mobilenet", "base_model.alpha=0.25",
         "base_model.weights=imagenet", "schedule.head.epochs=10", "schedule.fine_tune.epochs=5",
         "schedule.monitor=val_accuracy", "trainer.verbose=0", f"hydra.run.dir={out}"],
        cwd=tmp_path, env={"KERAS_HOME": str(tmp_path / "keras_home")},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    metrics = summary["metrics"]
    assert metrics["head/best_val_accuracy"] >= metrics["baseline/validation_accuracy"] - 0.02, metrics
    assert metrics["best/val_accuracy"] >= metrics["head/best_val_accuracy"], metrics
    assert metrics["best/val_accuracy"] >= metrics["baseline/validation_accuracy"], metrics
    assert summary["warnings"] == []

