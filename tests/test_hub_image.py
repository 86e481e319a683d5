"""KerasHub image backbones as bases, on a 2-block ViT and a 1-block ResNet preset the tests build and save themselves."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import compose_config, run_train_script, write_class_images
from test_hub_text import modality_check, save_tiny_bert_preset, trained

pytest.importorskip("keras_hub", reason="the `hub` extra (keras-hub) is not installed")

SIZE = 32  # what both presets' converters resize to
BLOCKS, HEADS, HIDDEN = 2, 2, 16
HEAD_UNITS = 8
NO_ATTENTION = "adapts the query and value projections of attention layers, and ResNetBackbone has none"


def save_tiny_vit_preset(folder: Path) -> Path:
    """A randomly initialised 2-block ViT on 32x32 images (16 patches and a class token) with its converter."""
    import keras
    import keras_hub

    keras.utils.set_random_seed(0)
    backbone = keras_hub.models.ViTBackbone(
        image_shape=(SIZE, SIZE, 3), patch_size=8, num_layers=BLOCKS, num_heads=HEADS, hidden_dim=HIDDEN, mlp_dim=32,
    )
    converter = keras_hub.layers.ViTImageConverter(image_size=(SIZE, SIZE), scale=1 / 127.5, offset=-1.0)
    backbone.save_to_preset(str(folder))
    keras_hub.models.ViTImageClassifierPreprocessor(converter).save_to_preset(str(folder))
    return folder


def save_tiny_resnet_preset(folder: Path) -> Path:
    """A randomly initialised ResNet (a 64-filter stem and one basic block, KerasHub's minimum) with its converter."""
    import keras
    import keras_hub

    keras.utils.set_random_seed(0)
    backbone = keras_hub.models.ResNetBackbone(
        input_conv_filters=[64], input_conv_kernel_sizes=[3], stackwise_num_filters=[64], stackwise_num_blocks=[1],
        stackwise_num_strides=[1], block_type="basic_block",
    )
    converter = keras_hub.layers.ResNetImageConverter(
        image_size=(SIZE, SIZE), scale=[1 / (255 * s) for s in (0.229, 0.224, 0.225)],
        offset=[-m / s for m, s in ((0.485, 0.229), (0.456, 0.224), (0.406, 0.225))],
    )
    backbone.save_to_preset(str(folder))
    keras_hub.models.ResNetImageClassifierPreprocessor(converter).save_to_preset(str(folder))
    return folder


@pytest.fixture(scope="module")
def vit(tmp_path_factory) -> Path:
    return save_tiny_vit_preset(tmp_path_factory.mktemp("hub") / "tiny_vit")


@pytest.fixture(scope="module")
def resnet(tmp_path_factory) -> Path:
    return save_tiny_resnet_preset(tmp_path_factory.mktemp("hub") / "tiny_resnet")


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """Two classes of 16x16 images, 12 each: the pipeline resizes them to the converters' 32x32."""
    return write_class_images(tmp_path_factory.mktemp("hub_image") / "pets", 12)


def hub_overrides(folder: Path, preset: Path, out: Path, *extra: str) -> list[str]:
    return [
        "dataset=image_folder", f"dataset.path={folder}", "dataset.batch_size=8", "dataset.validation_split=0.25",
        "dataset.test_split=0.25", "base_model=hub_image", f"base_model.preset={preset}", "head=mlp",
        f"head.hidden_units=[{HEAD_UNITS}]", "schedule=two_phase", "schedule.head.epochs=2", "schedule.head.lr=1e-2",
        "schedule.fine_tune.epochs=2", "schedule.fine_tune.lr=1e-3", "baseline.estimator=null", "trainer.verbose=0",
        f"paths.output_dir={out}", f"paths.data_dir={out.parent / 'data'}", *extra,
    ]


def images_of(folder: Path) -> tuple[list[str], np.ndarray]:
    """Every fourth file, read as prediction reads it: at the converter's size, raw 0..255 pixels."""
    from transferlab.data.inputs import read_image

    files = sorted(str(p) for p in folder.rglob("*.png"))[::4]
    return files, np.stack([read_image(Path(f), (SIZE, SIZE)) for f in files])


def phases_of(out: Path) -> dict:
    return json.loads((out / "summary.json").read_text())["phases"]


HEAD_PARAMS = HIDDEN * HEAD_UNITS + HEAD_UNITS + HEAD_UNITS + 1  # the hidden layer and one logit, on a 16-vector


def test_vit_runs_both_phases_through_the_train_script_and_the_best_model_reloads_exactly(photos, vit, tmp_path):
    from transferlab.models.saved import load_trained_model
    from transferlab.predict.run import predict_with_run

    out = tmp_path / "run"
    result = run_train_script(hub_overrides(photos, vit, out), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    phases = phases_of(out)
    assert set(phases) == {"head", "fine_tune"}
    assert phases["head"]["feature_extraction_s"] > 0  # phase 1 trained on the cached class tokens
    assert phases["head"]["trainable_params"] == HEAD_PARAMS
    assert phases["fine_tune"]["trainable_params"] > 10 * HEAD_PARAMS
    model = load_trained_model(str(out / "best.keras"))
    assert model.input_shape == (None, SIZE, SIZE, 3)  # the converter's size, raw pixels in
    files, pixels = images_of(photos)
    again = load_trained_model(str(out / "best.keras"))
    np.testing.assert_array_equal(model(pixels).numpy(), again(pixels).numpy())
    rows = predict_with_run(out, files, k=1)
    final = load_trained_model(str(out / "model.keras"))
    assert [r["class"] for r in rows] == ["dog" if x > 0 else "cat" for x in final(pixels).numpy()[:, 0]]


def test_resnet_runs_both_phases_through_the_train_script_and_keeps_its_batchnorm_statistics(photos, resnet, tmp_path):
    import keras
    import keras_hub

    from transferlab.models.saved import load_trained_model

    out = tmp_path / "run"
    result = run_train_script(hub_overrides(photos, resnet, out), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    phases = phases_of(out)
    assert phases["head"]["feature_extraction_s"] > 0
    assert phases["head"]["trainable_params"] == 64 * HEAD_UNITS + HEAD_UNITS + HEAD_UNITS + 1  # on the pooled map
    model = load_trained_model(str(out / "model.keras"))
    assert model.get_layer("head_pool") is not None  # the feature map is pooled by the head, as for keras.applications
    pretrained = keras_hub.models.Backbone.from_preset(str(resnet))
    backbone = model.get_layer("base").backbone
    norms = [layer for layer in backbone.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert len(norms) >= 3
    moved = 0
    for layer in norms:
        before = pretrained.get_layer(layer.name)
        np.testing.assert_array_equal(layer.moving_mean.numpy(), before.moving_mean.numpy())
        np.testing.assert_array_equal(layer.moving_variance.numpy(), before.moving_variance.numpy())
        np.testing.assert_array_equal(layer.gamma.numpy(), before.gamma.numpy())  # not trainable, as for CNN bases
    for now, before in zip(backbone.weights, pretrained.weights, strict=True):
        moved += not np.array_equal(now.numpy(), before.numpy())
    assert moved > 0  # the convolutions themselves were fine-tuned


def test_phase_one_leaves_the_backbone_unchanged(photos, vit, tmp_path):
    import keras_hub

    from transferlab.models.saved import load_trained_model

    out = tmp_path / "run"
    trained(hub_overrides(photos, vit, out, "schedule.fine_tune.epochs=0", "schedule.head.cache_features=false",
                          "base_model.token_pooling=mean"))
    pretrained = keras_hub.models.Backbone.from_preset(str(vit)).weights
    model = load_trained_model(str(out / "model.keras"))
    after = model.get_layer("base").backbone.weights
    assert len(after) == len(pretrained) > 20
    for before, now in zip(pretrained, after, strict=True):
        np.testing.assert_array_equal(before.numpy(), now.numpy())
    assert np.abs(model.get_layer("head_output").get_weights()[0]).sum() > 0


def test_lora_trains_only_the_factors_and_the_head_and_reloads_with_the_same_predictions(photos, vit, tmp_path):
    from transferlab.models.saved import load_trained_model

    out = tmp_path / "run"
    trained(hub_overrides(photos, vit, out, "schedule.fine_tune.lora_rank=2"))
    phases = phases_of(out)
    # Query and value projections of each block's attention (EinsumDense, kernel hidden x heads x head size):
    # A is hidden x heads x rank, B is rank x head size.
    rank = 2
    factors = BLOCKS * 2 * (HIDDEN * HEADS * rank + rank * HIDDEN // HEADS)
    assert phases["head"]["trainable_params"] == HEAD_PARAMS
    assert phases["fine_tune"]["trainable_params"] == HEAD_PARAMS + factors
    _, pixels = images_of(photos)
    best, reloaded = load_trained_model(str(out / "best.keras")), load_trained_model(str(out / "model.keras"))
    np.testing.assert_allclose(best(pixels).numpy(), reloaded(pixels).numpy(), atol=1e-6)


def test_bad_presets_are_refused_before_training_with_one_line(photos, vit, resnet, tmp_path, monkeypatch):
    from transferlab.errors import TransferlabError

    def refused(preset, *extra) -> str:
        with pytest.raises(TransferlabError) as info:
            modality_check(hub_overrides(photos, preset, tmp_path / "run", *extra))
        assert "\n" not in str(info.value)
        return str(info.value)

    assert "does not exist" in refused(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    assert "not a model directory (no config.json)" in refused(tmp_path / "empty")
    text = save_tiny_bert_preset(tmp_path / "bert")
    assert "is a text model (it has a tokenizer), but the dataset is images" in refused(text)
    assert f"lora_rank=2 {NO_ATTENTION}" in refused(resnet, "schedule.fine_tune.lora_rank=2")
    assert "would scale the pixels a second time" in refused(vit, "base_model.preprocess=unit")
    assert "reads token sequences" in refused(vit, "head=bilstm")
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    started = time.perf_counter()
    line = refused("hf://org/vit")
    assert "must be downloaded from huggingface.co, which cannot be reached" in line
    assert "local copy (a folder written by save_to_preset, with config.json and image_converter.json)" in line
    assert time.perf_counter() - started < 10
    modality_check(hub_overrides(photos, vit, tmp_path / "run", "schedule.fine_tune.lora_rank=2"))  # accepted


def test_hub_image_on_text_and_an_image_preset_on_hub_text_are_refused(vit, tmp_path):
    from test_hub_text import hub_overrides as text_overrides
    from test_text import sentences

    from transferlab.config.convert import to_experiment_config
    from transferlab.errors import ConfigError, TransferlabError
    from transferlab.modalities.registry import modality_for

    table = tmp_path / "reviews.csv"
    sentences(8).to_csv(table, index=False)
    cfg = to_experiment_config(compose_config(text_overrides(table, vit, tmp_path / "run", "base_model=hub_image")))
    with pytest.raises(ConfigError, match="base_model=hub_image reads images, but dataset .* holds text"):
        modality_for(cfg)
    with pytest.raises(TransferlabError, match="is an image model .* but the dataset is text") as info:
        modality_check(text_overrides(table, vit, tmp_path / "run"))
    assert "\n" not in str(info.value)


def test_lora_on_a_backbone_without_attention_is_refused_once_it_is_loaded(resnet, tmp_path):
    """A remote preset's backbone class is known only once loaded: the model build refuses it, before any training."""
    from types import SimpleNamespace

    import tensorflow as tf

    from transferlab.config.convert import to_experiment_config
    from transferlab.errors import ConfigError
    from transferlab.modalities.hub_image import HubImageModality
    from transferlab.models.hub_image import load_image_encoder

    cfg = to_experiment_config(compose_config(hub_overrides(tmp_path, resnet, tmp_path / "run",
                                                            "schedule.fine_tune.lora_rank=4")))
    batches = tf.data.Dataset.from_tensors((tf.zeros((1, SIZE, SIZE, 3)), tf.zeros((1,))))
    classifier = HubImageModality().classifier(cfg, SimpleNamespace(train_in_order=batches, class_names=["a", "b"]))
    with pytest.raises(ConfigError, match=f"lora_rank=4 {NO_ATTENTION}"):
        classifier.build()
    with pytest.raises(ConfigError, match="lora_rank=2 adapts the query and value projections"):
        load_image_encoder(cfg.base_model).enable_lora(2)


def test_the_image_backbone_preset_runs_end_to_end_on_a_local_preset(photos, resnet, tmp_path):
    """experiment=cats_dogs_efficientnet as a user runs it offline: its backbone pointed at a local CNN preset."""
    out = tmp_path / "run"
    tiny = [o for o in hub_overrides(photos, resnet, out) if not o.startswith(("head", "schedule.fine_tune.lr"))]
    result = run_train_script(["experiment=cats_dogs_efficientnet", *tiny], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    phases = phases_of(out)
    assert phases["head"]["feature_extraction_s"] > 0  # no augmentation: phase 1 on cached features
    assert phases["fine_tune"]["trainable_params"] > 100 * phases["head"]["trainable_params"]
    rates = pd.read_csv(out / "history.csv").query("phase == 'fine_tune'")["lr"].tolist()
    assert len(rates) == 2 and rates[0] > rates[1] and max(rates) < 1e-4 + 1e-9  # warmup, then cosine decay
