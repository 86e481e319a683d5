"""Bases from the registry, the head, augmentation and optimizers, built for real at small sizes."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import write_class_images

from transferlab.config.schema import (
    AugmentationConfig,
    BaseModelConfig,
    DatasetConfig,
    HeadConfig,
    OptimizerConfig,
    OptimizerName,
)
from transferlab.data.images import build_pipelines, plan_dataset
from transferlab.errors import ModelError
from transferlab.models.bases import BASES, SAVED_MODEL
from transferlab.models.heads import TaskSpec
from transferlab.models.image import build_model
from transferlab.models.saved import get_base


def _build(name: str, size: int, num_classes: int = 3, **base):
    return build_model(BaseModelConfig(name=name, weights=None, **base), HeadConfig(), TaskSpec((size, size), num_classes))


@pytest.mark.parametrize("name", ["mobilenet_v3_small", "efficientnet_b0", "resnet50_v2"])
def test_keras_application_bases_build_with_their_preprocessing(name):
    model = _build(name, 64)
    assert get_base(model).trainable and model.get_layer("head_output").units == 3
    logits = model.predict(np.random.default_rng(0).uniform(0, 255, (2, 64, 64, 3)), verbose=0)
    assert logits.shape == (2, 3) and np.isfinite(logits).all()


@pytest.fixture(scope="module")
def saved_model_dir(tmp_path_factory) -> str:
    """base_model=saved_model has no architecture of its own: it needs a SavedModel directory."""
    import keras

    inputs = keras.Input((32, 32, 3))
    path = tmp_path_factory.mktemp("hub") / "feature_vector"
    keras.Model(inputs, keras.layers.Conv2D(4, 3)(inputs)).export(str(path), verbose=False)
    return str(path)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(BASES))
def test_every_registered_base_builds_at_its_minimum_size(name, request):
    spec = BASES[name]
    size = max(spec.min_size, 32) if not name.startswith("nasnet") else spec.default_size
    weights = request.getfixturevalue("saved_model_dir") if name == SAVED_MODEL else None
    model = build_model(BaseModelConfig(name=name, weights=weights), HeadConfig(), TaskSpec((size, size), 3))
    assert model.predict(np.zeros((1, size, size, 3)), verbose=0).shape == (1, 3)


def test_alpha_is_passed_through_and_refused_where_meaningless():
    narrow, wide = _build("mobilenet_v2", 32, alpha=0.35), _build("mobilenet_v2", 32, alpha=1.0)
    assert get_base(narrow).count_params() < get_base(wide).count_params() / 3
    with pytest.raises(ModelError, match="resnet50 has no width multiplier"):
        _build("resnet50", 32, alpha=0.5)


def test_binary_task_has_one_logit_and_hidden_layers_are_added():
    model = build_model(
        BaseModelConfig(name="digits_cnn", weights=None),
        HeadConfig(hidden_units=[16, 8], dropout=0.5),
        TaskSpec((16, 16), 2),
    )
    assert model.get_layer("head_output").units == 1
    assert [model.get_layer(f"head_dense_{i}").units for i in (0, 1)] == [16, 8]
    assert model.get_layer("head_output").dtype_policy.compute_dtype == "float32"


@pytest.mark.parametrize(
    "name, cls, extra",
    [(OptimizerName.adam, "Adam", {}), (OptimizerName.adamw, "AdamW", {"weight_decay": 0.01}), (OptimizerName.sgd, "SGD", {})],
)
def test_optimizers_get_the_phase_learning_rate(name, cls, extra):
    from transferlab.training.optimizers import make_optimizer

    optimizer = make_optimizer(OptimizerConfig(name=name, **extra), 3e-4)
    assert type(optimizer).__name__ == cls
    assert float(optimizer.learning_rate) == pytest.approx(3e-4)
    if name is OptimizerName.sgd:
        assert float(optimizer.momentum) == pytest.approx(0.9)


def test_augmentation_changes_training_batches_only(tmp_path):
    root = write_class_images(tmp_path / "d", 6, size=16)
    cfg = DatasetConfig(name="t", path=str(root), batch_size=4, validation_split=0.34, test_split=0.0, cache=False)
    plan = plan_dataset(cfg, root, seed=0)
    augmentation = AugmentationConfig(flip="horizontal_and_vertical", rotation=0.2)
    plain = build_pipelines(plan, cfg, (16, 16), AugmentationConfig(), seed=0)
    augmented = build_pipelines(plan, cfg, (16, 16), augmentation, seed=0)

    def first_epoch(ds):
        return np.concatenate([x.numpy() for x, _ in ds])

    assert np.array_equal(first_epoch(plain.validation), first_epoch(augmented.validation))
    assert plain.steps_per_epoch == 2
    plain_train, augmented_train = (first_epoch(d.train_from(0).take(2)) for d in (plain, augmented))
    assert plain_train.shape == augmented_train.shape == (8, 16, 16, 3)
    assert not np.allclose(np.sort(plain_train, axis=None), np.sort(augmented_train, axis=None))


def test_training_order_depends_only_on_seed_and_epoch(tmp_path):
    root = write_class_images(tmp_path / "d", 6, size=8)
    cfg = DatasetConfig(name="t", path=str(root), batch_size=3, validation_split=0.2, test_split=0.0)
    data = build_pipelines(plan_dataset(cfg, root, seed=0), cfg, (8, 8), AugmentationConfig(), seed=5)
    steps = data.steps_per_epoch

    def epochs(ds, n):
        batches = [y.numpy().tolist() + [float(x.numpy().sum())] for x, y in ds.take(n * steps)]
        return [batches[i * steps : (i + 1) * steps] for i in range(n)]

    from_start = epochs(data.train_from(0, 4), 4)
    assert from_start[2] == epochs(data.train_from(2), 1)[0]
    assert from_start[0] != from_start[1]


@pytest.mark.parametrize("num_classes", [2, 3])
def test_one_pass_test_metrics_equal_keras_evaluate(num_classes):
    """evaluate_test computes loss and accuracy from the logits of its single pass; a last, smaller
    batch included, they are the numbers `model.evaluate` gives."""
    from types import SimpleNamespace

    import keras
    import tensorflow as tf

    from transferlab.reporting.evaluation import evaluate_test
    from transferlab.training.optimizers import compile_model

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(1 if num_classes == 2 else num_classes)])
    compile_model(model, OptimizerConfig(), 1e-3, TaskSpec((5, 5), num_classes))
    rng = np.random.default_rng(num_classes)
    test = tf.data.Dataset.from_tensor_slices((rng.normal(size=(37, 5)).astype("float32"), rng.integers(0, num_classes, 37))).batch(8)
    expected = model.evaluate(test, return_dict=True, verbose=0)
    metrics, report, matrix, _ = evaluate_test(model, SimpleNamespace(test=test, class_names=list("abc")[:num_classes]))
    assert metrics["test/loss"] == pytest.approx(expected["loss"], rel=1e-5)
    assert metrics["test/accuracy"] == pytest.approx(expected["accuracy"], abs=1e-6)
    assert sum(map(sum, matrix)) == 37 and report["accuracy"] == pytest.approx(expected["accuracy"], abs=1e-6)
