"""The config surface: composition, schema checks, one-line errors, and a fast CLI."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import CONF_DIR, ROOT, TRAIN_SCRIPT, compose_config, run_train_script
from omegaconf import OmegaConf

from transferlab.config.convert import to_experiment_config
from transferlab.errors import ConfigError
from transferlab.models.bases import BASES, get_base_spec, resolve_weights


def _imports(args: list[str]) -> tuple[subprocess.CompletedProcess, set[str]]:
    result = subprocess.run(
        [sys.executable, "-X", "importtime", str(TRAIN_SCRIPT), *args],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    modules = {line.split("|")[-1].strip() for line in result.stderr.splitlines() if line.startswith("import time:")}
    return result, modules


@pytest.mark.parametrize("flag", ["--help", "--cfg job"])
def test_help_and_cfg_job_do_not_import_tensorflow(flag):
    result, modules = _imports(flag.split())
    assert result.returncode == 0, result.stderr[-2000:]
    assert not {m for m in modules if m.split(".")[0] in ("tensorflow", "keras")}
    assert len(modules) > 50  # the import log was really read


def test_help_lists_every_config_group():
    result = subprocess.run([sys.executable, str(TRAIN_SCRIPT), "--help"], cwd=ROOT, capture_output=True, text=True)
    for group in ("dataset", "base_model", "head", "augmentation", "optimizer", "schedule", "trainer", "logger", "paths", "experiment"):
        assert f"{group}:" in result.stdout


def test_cfg_job_prints_the_composed_overrides():
    result = subprocess.run(
        [sys.executable, str(TRAIN_SCRIPT), "--cfg", "job", "base_model=xception", "schedule.fine_tune.epochs=7"],
        cwd=ROOT, capture_output=True, text=True,
    )
    cfg = OmegaConf.create(result.stdout)
    assert cfg.base_model.name == "xception" and cfg.schedule.fine_tune.epochs == 7


@pytest.mark.parametrize(
    "override, expected",
    [
        ("dataset.batchsize=3", "unknown config key 'dataset.batchsize': did you mean 'dataset.batch_size'?"),
        ("schedule.head.epochs=many", "invalid value for 'schedule.head.epochs'"),
        ("dataset.on_bad_file=ignore", "dataset.on_bad_file='ignore' must be one of fail, skip;"),
        ("base_model=xceptoin", "unknown base_model 'xceptoin'; available:"),
        ("schedule.fine_tune.lr=-1e-5", "schedule.fine_tune.lr=-1e-05 must be a positive learning rate"),
        ("dataset.batch_size=0", "dataset.batch_size=0 must be a positive integer"),
        ("base_model.name=xceptoin", "unknown base_model.name 'xceptoin': did you mean xception"),
        ("dataset.image_size=[32,32]", "too small for xception, which needs at least 71x71"),
        ("base_model.weights=imagenet21k", "'imagenet21k' is not a weight set of xception"),
        ("schedule.monitor=val_acc", "schedule.monitor='val_acc' must be one of val_loss, val_accuracy, loss, accuracy"),
    ],
)
def test_bad_config_fails_with_one_clear_line(tmp_path, override, expected):
    args = ["base_model=xception", override] if "xception" in expected else [override]
    result = run_train_script(args, cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("error: ") and expected in lines[-1], result.stderr[-2000:]
    assert not (tmp_path / "outputs").exists() or not list((tmp_path / "outputs").rglob("summary.json"))


# Options that leave a value to the user (???).
REQUIRED = {"image_folder": ["dataset.path=my_images"], "text_csv": ["dataset.path=my.csv"],
            "word2vec": ["base_model.path=vectors.txt"]}


def test_every_config_option_composes():
    for group_dir in sorted(p for p in CONF_DIR.iterdir() if p.is_dir()):
        for option in sorted(group_dir.glob("*.yaml")):
            overrides = [f"{group_dir.name}={option.stem}", "paths.output_dir=unused"]
            overrides += REQUIRED.get(option.stem, [])
            cfg = compose_config(overrides)
            experiment = to_experiment_config(cfg)
            assert experiment.dataset.name and experiment.base_model.name, option


def test_tutorial_preset_reproduces_the_keras_recipe():
    cfg = to_experiment_config(compose_config(["experiment=cats_dogs_xception", "paths.output_dir=unused"]))
    assert (cfg.base_model.name, cfg.base_model.weights) == ("xception", "imagenet")
    assert cfg.dataset.image_size == [150, 150]
    assert (cfg.augmentation.flip, cfg.augmentation.rotation) == ("horizontal", 0.1)
    assert (cfg.head.pooling.value, cfg.head.dropout, cfg.head.hidden_units) == ("avg", 0.2, [])
    assert cfg.optimizer.name.value == "adam"
    fine = cfg.schedule.fine_tune
    assert (fine.lr, fine.patience, fine.unfreeze) == (1e-5, 5, "all") and fine.epochs > 0
    assert cfg.schedule.head.epochs > 0


def test_text_preset_reproduces_the_glove_tutorial_recipe():
    cfg = to_experiment_config(compose_config(["experiment=sentiment_glove_bilstm", "paths.output_dir=unused"]))
    assert cfg.name == "sentiment_glove_bilstm"
    assert (cfg.dataset.kind.value, cfg.dataset.vocab_size, cfg.dataset.max_length) == ("text", 10000, 100)
    assert (cfg.base_model.name, cfg.base_model.dim) == ("glove", 100)
    assert (cfg.head.kind.value, cfg.head.units, cfg.head.hidden_units) == ("bilstm", 150, [64])
    assert cfg.schedule.head.patience is not None and cfg.schedule.fine_tune.epochs == 0


def test_a_required_value_left_unset_is_named():
    with pytest.raises(ConfigError, match=r"^dataset.path has no value \(\?\?\?\); set it, e.g. dataset.path=<value>$"):
        to_experiment_config(compose_config(["dataset=text_csv", "paths.output_dir=unused"]))


def test_group_choice_on_the_command_line_beats_the_dataset_schedule():
    default = to_experiment_config(compose_config(["paths.output_dir=unused"]))
    chosen = to_experiment_config(compose_config(["schedule=two_phase", "paths.output_dir=unused"]))
    assert default.schedule.head.lr != chosen.schedule.head.lr == 1e-3


def test_registry_covers_every_keras_application():
    import keras

    constructors = {n for n in dir(keras.applications) if n[0].isupper()}
    registered = {spec.constructor.split(":")[1] for spec in BASES.values() if spec.constructor.startswith("keras.")}
    assert constructors == registered
    for spec in BASES.values():
        assert callable(spec.load("preprocess")), spec.name


def test_weights_resolution_rejects_missing_files_and_unknown_types(tmp_path):
    spec = get_base_spec("mobilenet_v2")
    assert resolve_weights(spec, None).kind.value == "none"
    assert resolve_weights(spec, "imagenet").value == "imagenet"
    with pytest.raises(Exception, match="weights file not found"):
        resolve_weights(spec, str(tmp_path / "missing.weights.h5"))
    (tmp_path / "w.pt").write_text("x")
    with pytest.raises(ConfigError, match="unsupported file type"):
        resolve_weights(spec, str(tmp_path / "w.pt"))


def _enum_fields(schema: type, prefix: str = ""):
    """Every schema key typed by an Enum, with its Enum, walking the nested sections."""
    import dataclasses
    import enum

    from transferlab.config.convert import schema_field

    for f in dataclasses.fields(schema):
        key = f"{prefix}{f.name}"
        field_type, _ = schema_field(key)
        if isinstance(field_type, type) and issubclass(field_type, enum.Enum):
            yield key, field_type
        elif dataclasses.is_dataclass(field_type):
            yield from _enum_fields(field_type, f"{key}.")


def test_every_fixed_choice_is_an_enum_and_a_typo_gets_the_closest_choice():
    from conftest import config_error_line

    from transferlab.config.schema import ExperimentConfig

    fields = dict(_enum_fields(ExperimentConfig))
    assert {"trainer.strategy", "trainer.precision", "schedule.monitor", "logger.neptune.mode",
            "baseline.estimator", "augmentation.flip", "dataset.kind", "head.kind"} <= set(fields)
    for key, choices in fields.items():
        first = next(iter(choices)).value
        line = config_error_line(["logger=neptune", f"{key}={first}x"])
        listed = ", ".join(c.value for c in choices)
        assert line.startswith(f"{key}='{first}x' must be one of {listed}"), line
        assert f"(did you mean '{first}'?)" in line, line


def test_a_config_built_without_hydra_gets_the_same_choice_error():
    with pytest.raises(ConfigError, match=r"trainer.strategy='mirorred' must be one of .* \(did you mean 'mirrored'\?\)"):
        to_experiment_config(OmegaConf.create({"trainer": {"strategy": "mirorred"}}))
