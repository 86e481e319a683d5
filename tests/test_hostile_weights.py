"""Hostile input, weights family: another base's weights, unknown names, broken or foreign weight files."""

from __future__ import annotations

import pytest
from conftest import compose_config, run_train_script, tiny_overrides
from hydra.errors import HydraException

from transferlab.cli import describe_config_error
from transferlab.config.convert import to_experiment_config
from transferlab.errors import ConfigError, ModelError
from transferlab.modalities.images import check_model_config
from transferlab.models.bases import (
    DIGITS_WEIGHTS_FILE,
    WeightsKind,
    get_base_spec,
    resolve_weights,
)


def configured(*overrides: str):
    return to_experiment_config(compose_config([*overrides, "paths.output_dir=unused"]))


@pytest.mark.parametrize("name", ["densenet201", "resnet50", "efficientnet_b3"])
def test_switching_the_base_by_name_brings_that_bases_own_weights(name):
    cfg = configured(f"base_model.name={name}")
    check_model_config(cfg)
    source = resolve_weights(get_base_spec(name), cfg.base_model.weights)
    assert (source.kind, source.value) == (WeightsKind.named, "imagenet")


def test_the_default_base_still_gets_the_shipped_digits_weights():
    cfg = configured()
    source = resolve_weights(get_base_spec(cfg.base_model.name), cfg.base_model.weights)
    assert source.kind is WeightsKind.file and source.value.endswith(DIGITS_WEIGHTS_FILE)


def test_a_base_without_a_config_file_points_at_base_model_name():
    with pytest.raises(HydraException) as caught:
        compose_config(["base_model=densenet201"])
    message = describe_config_error(caught.value)
    assert "unknown base_model 'densenet201'" in message and "base_model.name=densenet201" in message
    assert "\n" not in message


def test_a_misspelt_base_name_gets_a_did_you_mean():
    with pytest.raises(ConfigError, match=r"unknown base_model.name 'resnet5': did you mean resnet50"):
        check_model_config(configured("base_model.name=resnet5"))


@pytest.mark.parametrize(
    "weights,error,match",
    [
        ("missing.weights.h5", ModelError, r"weights file not found: '.*missing.weights.h5'; check base_model.weights"),
        ("model.pt", ConfigError, r"unsupported file type: use a Keras weights file"),
        ("imagenett", ConfigError, r"'imagenett' is not a weight set of digits_cnn \(known: default, digits_0_4, null\)"),
    ],
)
def test_weights_that_cannot_work_are_refused_before_anything_is_built(weights, error, match, tmp_path):
    with pytest.raises(error, match=match):
        check_model_config(configured(f"base_model.weights={tmp_path / weights if '.' in weights else weights}"))


def _build_base(weights: str):
    from transferlab.models.image import build_base

    cfg = configured("base_model=digits_cnn", f"base_model.weights={weights}")
    return build_base(get_base_spec("digits_cnn"), cfg.base_model, (16, 16))


def test_a_truncated_weights_file_is_named_in_one_line(base_weights, tmp_path):
    broken = tmp_path / "broken.weights.h5"
    broken.write_bytes(base_weights.read_bytes()[:2000])
    with pytest.raises(ModelError, match=r"cannot load weights '.*broken.weights.h5' into digits_cnn") as caught:
        _build_base(str(broken))
    assert "\n" not in str(caught.value)


def test_weights_of_another_architecture_are_refused(tmp_path):
    import keras

    other = keras.Sequential([keras.Input((16, 16, 3)), keras.layers.Conv2D(4, 3), keras.layers.Dense(2)])
    other.save_weights(tmp_path / "other.weights.h5")
    with pytest.raises(ModelError, match=r"the file must come from the same architecture"):
        _build_base(str(tmp_path / "other.weights.h5"))


def test_a_keras_file_that_is_not_a_model_is_named(tmp_path):
    fake = tmp_path / "base.keras"
    fake.write_text("not a zip")
    with pytest.raises(ModelError, match=r"cannot load the base model '.*base.keras'"):
        _build_base(str(fake))


def test_the_command_line_prints_one_line_for_a_corrupt_weights_file(image_folder, base_weights, tmp_path):
    broken = tmp_path / "broken.weights.h5"
    broken.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 64)
    result = run_train_script(tiny_overrides(image_folder, tmp_path / "run", broken), cwd=tmp_path)
    # TensorFlow's C++ start-up chatter is kept off stderr: the error is the only line there.
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.startswith("error: cannot load weights '") and len(result.stderr.splitlines()) == 1, result.stderr
    # Said once: not repeated as an [ERROR] log line on stdout, but kept in the run's log file.
    assert "cannot load weights" not in result.stdout
    assert any("cannot load weights" in log.read_text() for log in tmp_path.glob("outputs/**/train.log"))


def test_tensorflow_start_up_chatter_is_held_back_and_anything_else_passed_on(capsys):
    from transferlab.compat.tensorflow import _pass_on

    _pass_on(
        "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
        "I0000 00:00:1796230279.969979   11139 port.cc:153] oneDNN custom operations are on.\n"
        "E0000 00:00:1796230283.550517   11139 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error\n"
        "E0000 00:00:1796230283.550517   11139 op_kernel.cc:9] a real failure\n"
        "Fatal Python error: something else\n"
    )
    assert capsys.readouterr().err.splitlines() == [
        "E0000 00:00:1796230283.550517   11139 op_kernel.cc:9] a real failure", "Fatal Python error: something else",
    ]


@pytest.mark.parametrize("name,alpha", [("mobilenet", 0.3), ("mobilenet_v2", 0.25), ("mobilenet_v3_small", 0.5)])
def test_a_width_without_imagenet_weights_is_refused_before_anything_is_built(name, alpha):
    with pytest.raises(ConfigError, match=rf"base_model.alpha={alpha:g} has no ImageNet weights for {name} \(they exist for "):
        check_model_config(configured(f"base_model.name={name}", f"base_model.alpha={alpha}"))
    check_model_config(configured(f"base_model.name={name}", f"base_model.alpha={alpha}", "base_model.weights=null"))
    check_model_config(configured(f"base_model.name={name}", "base_model.alpha=0.75"))
