"""A TensorFlow SavedModel directory as the base: head phase, fine-tuning, saved model, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import compose_config, run_train_script, tiny_overrides

import transferlab
from transferlab.errors import ConfigError, ModelError


def saved_model_overrides(data: Path, out: Path, saved_model: Path | str, *extra: str) -> list[str]:
    base = [o for o in tiny_overrides(data, out, "unused") if not o.startswith("base_model")]
    return [*base, "base_model=saved_model", f"base_model.weights={saved_model}", *extra]


@pytest.fixture(scope="module")
def exported_base(tmp_path_factory) -> Path:
    """A small conv base exported the way `model.export` writes a SavedModel (inputs in [0, 1])."""
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(8, 3, activation="relu", name="conv")(inputs)
    path = tmp_path_factory.mktemp("hub") / "feature_vector"
    keras.Model(inputs, x).export(str(path), verbose=False)
    return path


def test_saved_model_base_trains_both_phases_and_the_model_reloads(image_folder, exported_base, tmp_path):
    import keras

    out = tmp_path / "run"
    result = run_train_script([*saved_model_overrides(image_folder, out, exported_base), f"hydra.run.dir={out}"],
                              cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "completed" and set(summary["phases"]) == {"head", "fine_tune"}
    assert summary["phases"]["head"]["feature_extraction_s"] > 0  # phase 1 ran on cached features

    from transferlab.models.saved import load_trained_model

    model = load_trained_model(str(out / "model.keras"))
    original = keras.layers.TFSMLayer(str(exported_base)).get_weights()
    tuned = model.get_layer("base").get_layer("saved_model").get_weights()
    assert any(not np.array_equal(a, b) for a, b in zip(original, tuned, strict=True)), "phase 2 trained nothing"
    assert model.get_layer("preprocess").base_name == "unit"
    logits = model.predict(np.full((1, 16, 16, 3), 128.0, dtype="float32"), verbose=0)
    assert logits.shape == (1, 1) and np.isfinite(logits).all()
    with pytest.raises(ValueError, match="TFSMLayer"):  # elsewhere Keras' safe mode still guards
        keras.saving.load_model(out / "model.keras")


def test_saved_model_without_trainable_variables_refuses_fine_tuning(image_folder, tmp_path):
    import tensorflow as tf

    class Frozen(tf.Module):
        def __init__(self):
            self.kernel = tf.Variable(tf.ones((3, 3, 3, 4)) / 27.0, trainable=False)

        @tf.function(input_signature=[tf.TensorSpec([None, 16, 16, 3], tf.float32)])
        def serve(self, images):
            return tf.nn.conv2d(images, self.kernel, 1, "SAME")

    path = tmp_path / "frozen"
    tf.saved_model.save(Frozen(), str(path))
    with pytest.raises(ConfigError, match="nothing to fine-tune.*schedule.fine_tune.epochs=0"):
        transferlab.train(compose_config(saved_model_overrides(image_folder, tmp_path / "r", path)))
    summary = transferlab.train(compose_config(
        saved_model_overrides(image_folder, tmp_path / "head_only", path, "schedule.fine_tune.epochs=0")
    ))
    assert summary.status == "completed" and list(summary.phases) == ["head"]


def test_missing_saved_model_directory_fails_in_one_line(image_folder, tmp_path):
    missing = tmp_path / "no_such_model"
    result = run_train_script([*saved_model_overrides(image_folder, tmp_path / "r", missing),
                               f"hydra.run.dir={tmp_path / 'r'}"], cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: SavedModel directory not found: '{missing}'; check base_model.weights"
    )


def test_corrupt_saved_model_fails_clearly(image_folder, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelError, match="not a TensorFlow SavedModel directory .no saved_model.pb"):
        transferlab.train(compose_config(saved_model_overrides(image_folder, tmp_path / "a", empty)))
    corrupt = tmp_path / "corrupt"
    (corrupt / "variables").mkdir(parents=True)
    (corrupt / "saved_model.pb").write_bytes(b"not a protobuf")
    with pytest.raises(ModelError, match="cannot load the SavedModel .*corrupt.* check base_model.weights") as info:
        transferlab.train(compose_config(saved_model_overrides(image_folder, tmp_path / "b", corrupt)))
    assert "\n" not in str(info.value)


def test_only_the_saved_model_the_run_configured_is_trusted_on_reload(exported_base, tmp_path):
    """A planted model file that names another SavedModel directory would run that graph: safe mode refuses it."""
    import shutil

    from transferlab.models.image import _load_saved_model_base
    from transferlab.models.saved import load_trained_model

    other = tmp_path / "other_graph"
    shutil.copytree(exported_base, other)
    run = tmp_path / "run"
    run.mkdir()
    _load_saved_model_base(str(other), "serve", (16, 16)).save(run / "model.keras")
    (run / "config.yaml").write_text(f"base_model:\n  name: saved_model\n  weights: {exported_base}\n")
    with pytest.raises(ValueError, match="safe_mode"):
        load_trained_model(str(run / "model.keras"))
    (run / "config.yaml").write_text(f"base_model:\n  name: saved_model\n  weights: {other}\n")
    assert load_trained_model(str(run / "model.keras")).output_shape == (None, 14, 14, 8)
