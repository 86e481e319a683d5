"""The frozen base's features: extracted once per run for the baseline and phase 1, and kept on disk
by data and base so that a rerun (a sweep's next job) extracts nothing."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import compose_config, tiny_overrides, write_class_images

import transferlab
from transferlab.features import store as features


def run(data: Path, out: Path, weights, *extra: str):
    return transferlab.train(compose_config(tiny_overrides(
        data, out, weights, "schedule.head.epochs=3", "schedule.fine_tune.epochs=0", *extra)))


@pytest.fixture
def extractions(monkeypatch) -> list[int]:
    """Counts the images each call of the base's extraction pass saw."""
    calls: list[int] = []
    real = features.extract

    def counted(extractor, batches):
        result = real(extractor, batches)
        calls.append(len(result[1]))
        return result

    monkeypatch.setattr(features, "extract", counted)
    return calls


def cache_entries(out: Path) -> list[Path]:
    return sorted((out.parent / "data" / "features_cache").glob("*.npz"))


def test_one_run_extracts_each_split_once_and_a_rerun_reads_them_from_disk(image_folder, base_weights, tmp_path, extractions):
    """The baseline and the cached head phase share one pass per split; the next run extracts
    nothing and trains the same head on the stored features."""
    summary = run(image_folder, tmp_path / "first", base_weights)
    counts = summary.counts
    assert sorted(extractions) == sorted([counts["train"], counts["validation"], counts["test"]])
    assert "baseline/test_accuracy" in summary.metrics
    assert len(cache_entries(tmp_path / "first")) == 3

    extractions.clear()
    again = run(image_folder, tmp_path / "second", base_weights)
    assert extractions == []
    assert again.metrics["baseline/test_accuracy"] == summary.metrics["baseline/test_accuracy"]
    history = {k: pd.read_csv(tmp_path / k / "history.csv") for k in ("first", "second")}
    np.testing.assert_allclose(history["first"]["val_loss"], history["second"]["val_loss"], rtol=1e-6)
    np.testing.assert_allclose(history["first"]["loss"], history["second"]["loss"], rtol=1e-6)


def test_a_changed_image_or_other_base_weights_are_extracted_again(base_weights, tmp_path, extractions):
    import keras

    from transferlab.models.digits import digits_cnn

    data = write_class_images(tmp_path / "pets", 14)
    run(data, tmp_path / "first", base_weights)
    assert len(cache_entries(tmp_path / "first")) == 3

    extractions.clear()
    changed = sorted((data / "cat").iterdir())[0]
    write_class_images(tmp_path / "redrawn", 1, seed=7)
    shutil.copy(tmp_path / "redrawn" / "cat" / "cat_0.png", changed)
    run(data, tmp_path / "changed", base_weights)
    assert len(extractions) == 1  # only the split holding the redrawn image
    assert len(cache_entries(tmp_path / "first")) == 4

    extractions.clear()
    keras.utils.set_random_seed(1)
    other = tmp_path / "other.weights.h5"
    digits_cnn(input_shape=(16, 16, 3)).save_weights(other)
    run(data, tmp_path / "other_base", other)
    assert len(extractions) == 3


def test_an_unreadable_cache_entry_is_extracted_again(image_folder, base_weights, tmp_path, extractions, caplog):
    run(image_folder, tmp_path / "first", base_weights)
    for entry in cache_entries(tmp_path / "first"):
        entry.write_bytes(b"not an npz file")
    extractions.clear()
    with caplog.at_level(logging.WARNING, logger="transferlab.features"):
        summary = run(image_folder, tmp_path / "second", base_weights)
    assert len(extractions) == 3
    assert "unreadable" in caplog.text and "extracting them again" in caplog.text
    assert summary.metrics["test/accuracy"] >= 0.0
    for entry in cache_entries(tmp_path / "first"):
        assert set(np.load(entry).files) == {"features", "labels"}


def test_feature_cache_null_keeps_nothing_on_disk(image_folder, base_weights, tmp_path, extractions):
    run(image_folder, tmp_path / "run", base_weights, "paths.feature_cache=null")
    assert cache_entries(tmp_path / "run") == [] and not (tmp_path / "data" / "features_cache").exists()
    assert len(extractions) == 3
