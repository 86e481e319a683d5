"""Values the schema's types accept but Keras (or the run) would reject: refused at start-up with the
allowed range, and options a combination never reads, warned about once."""

from __future__ import annotations

import logging

import pytest
from conftest import assert_accepted_or_one_line, compose_config, config_error_line, tiny_overrides
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from transferlab.config import validate as config_module
from transferlab.config.convert import to_experiment_config
from transferlab.config.validate import ACTIVATIONS, physical_memory
from transferlab.errors import ConfigError
from transferlab.training.setup import checked_setup

IMAGES = ["paths.output_dir=unused"]
TEXT = ["dataset=text_csv", "dataset.path=t.csv", "base_model=random_embedding", "head=conv", "paths.output_dir=unused"]


def resolved(overrides: list[str]):
    return to_experiment_config(compose_config(overrides))


@pytest.mark.parametrize(
    "override, expected",
    [
        ("optimizer.momentum=1.5", "optimizer.momentum=1.5 must be in [0, 1)"),
        ("optimizer.momentum=1.0", "optimizer.momentum=1.0 must be in [0, 1)"),
        ("optimizer.weight_decay=-0.1", "optimizer.weight_decay=-0.1 must be >= 0 or null"),
        ("optimizer.clipnorm=0", "optimizer.clipnorm=0.0 must be > 0, or null"),
        ("head.activation=relu7", "head.activation='relu7' is not a Keras activation; use one of"),
        ("trainer.seed=-1", "trainer.seed=-1 must be in [0, 4294967295]"),
        ("trainer.seed=4294967296", "trainer.seed=4294967296 must be in [0, 4294967295]"),
        ("trainer.verbose=3", "trainer.verbose=3 must be 0 (silent), 1 (progress bar) or 2"),
        ("trainer.logical_cpus=1000", "trainer.logical_cpus=1000 must be at most 64"),
        ("dataset.image_size=[4096,4096]", "dataset.image_size=[4096, 4096] must be [height, width] with sides in [1, 2048]"),
        ("schedule.head.lr=nan", "schedule.head.lr=nan must be a finite number"),
        ("schedule.fine_tune.lr=inf", "schedule.fine_tune.lr=inf must be a finite number"),
        ("baseline.C=inf", "baseline.C=inf must be a finite number"),
        ("augmentation.zoom=1.0", "augmentation.zoom=1.0 must be a factor in [0, 1)"),
        ("augmentation.rotation=1.5", "augmentation.rotation=1.5 must be a factor in [0, 1]"),
        ("augmentation.contrast=-0.1", "augmentation.contrast=-0.1 must be a factor in [0, 1]"),
        ("schedule.mode=max", "schedule.mode='max' would keep the worst epoch of val_loss; use schedule.mode=min or auto"),
        ("schedule.fine_tune.unfreeze=0", "schedule.fine_tune.unfreeze='0' must be a positive number of top layers"),
        ("schedule.fine_tune.unfreeze=-3", "schedule.fine_tune.unfreeze='-3' must be a positive number of top layers"),
        ("dataset.sha256=abc", "dataset.sha256='abc' must be 64 hexadecimal digits"),
        ("dataset.classes=[a,a]", "dataset.classes=['a', 'a'] must not name a class twice"),
        ("dataset.classes=[a]", "dataset.classes=['a'] must name at least two classes"),
        ("base_model.alpha=0.5", "base_model.alpha=0.5 has no effect: digits_cnn has no width multiplier"),
        ("optimized_metric=val_loss", "optimized_metric='val_loss' must name a summary metric starting with best/"),
        ("dataset.separator=';;'", "dataset.separator=';;' must be one character"),
        ("dataset.label_column=text", "dataset.label_column='text' must differ from dataset.text_column"),
        ("dataset.url=ftp://host/x.zip", "dataset.url='ftp://host/x.zip' must start with http://, https://, file://"),
        ("base_model.url=glove.zip", "for a file on disk set base_model.path"),
        ("paths.feature_cache=''", "paths.feature_cache='' must name a folder, or be null"),
        ("logger=neptune", None),  # the preset itself is valid
    ],
)
def test_values_keras_would_reject_are_refused_with_the_range(override, expected):
    if expected is None:
        resolved([override, *IMAGES])
        return
    with pytest.raises(ConfigError) as info:
        resolved([override, *IMAGES])
    message = str(info.value)
    assert expected in message and "\n" not in message


def test_every_listed_activation_is_one_keras_builds():
    import keras

    for name in ACTIVATIONS:
        assert callable(keras.activations.get(name)), name
    assert {"relu", "gelu", "linear", "tanh"} <= set(ACTIVATIONS) and "threshold" not in ACTIVATIONS


def test_an_input_batch_larger_than_memory_is_refused(monkeypatch):
    monkeypatch.setattr(config_module, "physical_memory", lambda: 2**30)  # a 1 GiB machine
    with pytest.raises(ConfigError, match=r"one input batch needs 1\.5 GiB .* more than half of this machine's 1\.0 GiB; "
                                          r"lower dataset\.batch_size or dataset\.image_size"):
        resolved(["dataset.batch_size=32", "dataset.image_size=[2048,2048]", *IMAGES])
    resolved(["dataset.batch_size=2", "dataset.image_size=[2048,2048]", *IMAGES])  # 96 MiB fits
    with pytest.raises(ConfigError, match=r"lower dataset\.batch_size, dataset\.max_length or dataset\.vocab_size"):
        resolved([*TEXT, "dataset.max_length=1000000", "base_model.dim=100"])
    assert physical_memory() is None or physical_memory() > 2**26


@pytest.mark.parametrize(
    "overrides, expected",
    [
        ([*IMAGES, "optimizer.momentum=0.5"], "optimizer.momentum=0.5 has no effect: optimizer.name=sgd only"),
        ([*IMAGES, "optimizer=sgd", "optimizer.name=adam"], "optimizer.nesterov=True has no effect"),
        ([*TEXT, "dataset.image_size=[64,64]"], "dataset.image_size=[64, 64] has no effect: images only"),
        ([*TEXT, "augmentation=flip_rotate"], "augmentation.flip='horizontal' has no effect: images only"),
        ([*IMAGES, "dataset.max_length=20"], "dataset.max_length=20 has no effect: text tables only"),
        ([*IMAGES, "base_model.dim=50"], "base_model.dim=50 has no effect: word vectors only"),
        ([*IMAGES, "head.kernel_size=3"], "head.kernel_size=3 has no effect: the conv head only"),
        ([*TEXT, "head.pooling=max"], "head.pooling='max' has no effect: the pool head only, not head.kind=conv"),
        ([*IMAGES, "trainer.logical_cpus=2"], "trainer.logical_cpus=2 has no effect: trainer.strategy=mirrored only"),
        ([*IMAGES, "baseline.estimator=knn", "baseline.C=3"], "baseline.C=3.0 has no effect"),
        ([*TEXT, "base_model.weights=w.h5"], "base_model.weights='w.h5' has no effect: image bases only"),
    ],
)
def test_options_the_combination_never_reads_are_warned_once(overrides, expected, caplog, monkeypatch):
    monkeypatch.setattr(config_module, "_warned", set())
    with caplog.at_level(logging.WARNING, logger="transferlab.config"):
        resolved(overrides)
        resolved(overrides)  # converted again, as a notebook rerunning the config would: still one warning
    warnings = [r.getMessage() for r in caplog.records if expected in r.getMessage()]
    assert len(warnings) == 1, [r.getMessage() for r in caplog.records]


@pytest.mark.parametrize("overrides", [IMAGES, TEXT, ["experiment=sentiment_glove_bilstm", "paths.output_dir=unused"],
                                       ["experiment=cats_dogs_xception", "paths.output_dir=unused"],
                                       [*IMAGES, "optimizer=sgd"], [*IMAGES, "augmentation=strong", "head=mlp"]])
def test_the_shipped_presets_warn_about_nothing(overrides, caplog, monkeypatch):
    monkeypatch.setattr(config_module, "_warned", set())
    with caplog.at_level(logging.WARNING, logger="transferlab.config"):
        resolved(overrides)
    assert not caplog.records, [r.getMessage() for r in caplog.records]


NEW_KEYS = [
    "optimizer.momentum", "optimizer.weight_decay", "optimizer.clipnorm", "head.activation", "head.units",
    "head.kernel_size", "trainer.seed", "trainer.verbose", "trainer.logical_cpus", "augmentation.zoom",
    "augmentation.contrast", "augmentation.translation", "dataset.separator", "dataset.column_names",
    "dataset.sha256", "schedule.mode", "schedule.fine_tune.lr", "optimized_metric", "base_model.dim",
]
NEW_VALUES = st.one_of(
    st.integers(-5, 2**33).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(lambda f: f"{f:g}"),
    st.sampled_from(["null", "true", "gelu", "relu7", "'\\t'", "[a,b]", "[a,a]", "max", "min", "''", "best/x"]),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(NEW_KEYS), NEW_VALUES), min_size=1, max_size=3, unique_by=lambda kv: kv[0]))
def test_any_value_of_the_checked_keys_is_accepted_or_refused_in_one_line(pairs):
    assert_accepted_or_one_line(lambda: resolved([f"{k}={v}" for k, v in pairs] + ["paths.output_dir=unused"]))


def test_a_knn_baseline_with_more_neighbours_than_training_rows_is_refused_before_training(image_folder, tmp_path):
    overrides = tiny_overrides(image_folder, tmp_path / "run", "null", "baseline.estimator=knn", "baseline.neighbors=500")
    with pytest.raises(ConfigError, match=r"baseline.neighbors=500 is more than the \d+ training examples; set baseline.neighbors to at most \d+"):
        checked_setup(to_experiment_config(compose_config(overrides)))
    assert not (tmp_path / "run").exists()  # refused before the run folder was made


def test_a_warmup_outside_the_phase_is_one_line(tmp_path):
    from transferlab.config.convert import to_experiment_config
    from transferlab.config.validate import validate
    from transferlab.errors import ConfigError

    with pytest.raises(ConfigError) as info:
        validate(to_experiment_config(compose_config(["schedule.fine_tune.warmup=1.5", f"paths.output_dir={tmp_path}"])))
    assert str(info.value).startswith("schedule.fine_tune.warmup=1.5 must be a fraction of the phase's steps in [0, 1)")
    assert "did you mean 'linear'?" in config_error_line(["schedule.head.decay=linaer"])
