"""Prediction with a trained run, and the scikit-learn baseline on frozen features."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from conftest import ROOT, compose_config, tiny_overrides, write_class_images

import transferlab


@pytest.fixture(scope="module")
def three_class_run(tmp_path_factory, base_weights):
    data = write_class_images(tmp_path_factory.mktemp("pred") / "shapes", 10, classes=("a", "b", "c"))
    out = tmp_path_factory.mktemp("pred_run") / "run"
    summary = transferlab.train(compose_config(tiny_overrides(
        data, out, base_weights, "schedule.head.epochs=4", "schedule.fine_tune.epochs=0", "baseline.estimator=knn",
        "baseline.neighbors=3",
    )))
    return data, out, summary


def test_baseline_is_fitted_on_frozen_features_and_reported(three_class_run):
    _, out, summary = three_class_run
    assert {"baseline/train_accuracy", "baseline/test_accuracy"} <= set(summary.metrics)
    # Three bands of brightness are trivially separable for k-NN on the base's pooled features.
    assert summary.metrics["baseline/test_accuracy"] > 0.6
    assert json.loads((out / "baseline.json").read_text()) == {
        k: v for k, v in summary.metrics.items() if k.startswith("baseline/")
    }


def test_predict_script_ranks_classes_with_probabilities(three_class_run, tmp_path):
    data, out, summary = three_class_run
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "predict.py"), str(out), str(data / "a"),
         str(next((data / "b").glob("*.png"))), "--top-k", "2", "--csv", str(tmp_path / "p.csv")],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    table = pd.read_csv(tmp_path / "p.csv")
    assert len(table) == 2 * 11 and set(table["rank"]) == {1, 2}
    assert set(table["class"]) <= {"a", "b", "c"}
    first = table[table["rank"] == 1]
    assert (table.groupby("file")["probability"].sum() <= 1.0 + 1e-6).all()
    assert (first["probability"].to_numpy() >= table[table["rank"] == 2]["probability"].to_numpy()).all()
    assert "file" in result.stdout and "probability" in result.stdout


def test_predictions_in_small_batches_match_one_pass_over_all_images(three_class_run):
    from transferlab.data.inputs import image_files, load_images
    from transferlab.models.saved import load_trained_model
    from transferlab.predict.run import predict_with_run, probabilities

    data, out, _ = three_class_run
    rows = pd.DataFrame(predict_with_run(out, [str(data / "a"), str(data / "c")], k=3, batch_size=3))  # 20 = 6 x 3 + 2
    files = image_files([str(data / "a"), str(data / "c")])
    model = load_trained_model(str(out / "model.keras"))
    expected = probabilities(model.predict(load_images(files, tuple(model.input_shape[1:3])), verbose=0))
    class_names = json.loads((out / "summary.json").read_text())["class_names"]
    got = rows.pivot(index="file", columns="class", values="probability").loc[[str(f) for f in files], class_names]
    np.testing.assert_allclose(got.to_numpy(), expected, rtol=0, atol=1e-5)


def test_probabilities_sum_to_one_for_binary_and_multiclass():
    from transferlab.predict.run import probabilities

    binary = probabilities(np.array([[0.0], [3.0], [-2.0]]))
    multi = probabilities(np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]]))
    np.testing.assert_allclose(binary.sum(axis=1), 1.0)
    np.testing.assert_allclose(multi.sum(axis=1), 1.0)
    assert binary[1, 1] > 0.9 and multi[0].argmax() == 2


def test_a_quoted_text_is_classified_and_a_missing_file_is_still_named(tmp_path, monkeypatch):
    from transferlab.data.inputs import read_texts
    from transferlab.errors import DataError

    monkeypatch.chdir(tmp_path)
    (tmp_path / "my reviews.txt").write_text("a good film\n")
    long_text = "so " * 200 + "good"  # longer than a file name may be
    assert read_texts(["What a great film", "my reviews.txt", long_text], "text") == [
        "What a great film", "a good film", long_text]
    for missing in ("my reviews.csv", "reviews", "photos/a.png"):
        with pytest.raises(DataError, match=f"^'{missing}' does not exist"):
            read_texts([missing], "text")


def test_predict_refuses_a_folder_that_is_not_a_run(tmp_path):
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "predict.py"), str(tmp_path), str(tmp_path)],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("error: ") and "not a finished run directory" in result.stderr


def test_extract_script_saves_pooled_features_and_the_baseline(image_folder, base_weights, tmp_path):
    args = [o for o in tiny_overrides(image_folder, tmp_path, base_weights) if not o.startswith("paths.")]
    out = tmp_path / "extracted"
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "extract.py"), *args, f"hydra.run.dir={out}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env={**os.environ, "TRANSFERLAB_DATA_DIR": str(tmp_path / "data")},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    with np.load(out / "features.npz") as arrays:
        assert list(arrays["class_names"]) == ["cat", "dog"]
        assert arrays["x_train"].shape == (12, 128) and arrays["y_train"].shape == (12,)
        assert len(arrays["y_test"]) == 8 and len(arrays["y_validation"]) == 8
    extraction = json.loads((out / "extraction.json").read_text())
    assert extraction["counts"] == {"train": 12, "validation": 8, "test": 8}
    assert 0.0 <= extraction["metrics"]["baseline/test_accuracy"] <= 1.0
    assert not (out / "model.keras").exists()  # nothing trained


def test_features_export_as_parquet_rows_matching_the_npz_arrays(image_folder, base_weights, tmp_path):
    from transferlab.extraction import extract_features

    def extract(fmt: str) -> dict:
        return extract_features(compose_config(tiny_overrides(image_folder, tmp_path / fmt, base_weights, f"extract.format={fmt}")))

    table = pd.read_parquet(extract("parquet")["features"])
    with np.load(extract("npz")["features"]) as arrays:
        assert list(table.columns[:4]) == ["split", "path", "label", "class"] and table.shape == (28, 4 + 128)
        for split in ("train", "validation", "test"):
            rows = table[table["split"] == split]
            np.testing.assert_array_equal(rows.filter(regex=r"^f\d+$").to_numpy(), arrays[f"x_{split}"])
            assert list(rows["path"]) == list(arrays[f"items_{split}"])
            assert list(rows["label"]) == list(arrays[f"y_{split}"])
            assert [arrays["class_names"][i] for i in rows["label"]] == list(rows["class"])
    assert all(f"/{name}/" in path for path, name in zip(table["path"], table["class"], strict=True))


def test_imagenet_classifier_ranks_named_classes_from_the_keras_cache(tmp_path, monkeypatch):
    """`--imagenet`: Keras' weights file served from its cache folder, as after a first download.

    The with-top weights are generated (random, MobileNet's architecture) and the class index
    stands in for Keras' hash-checked download, so the test runs offline; what it checks is this
    project's part: the model and its preprocessing found by name, the top k decoded to names.
    """
    import h5py
    import keras
    from keras.src.applications import imagenet_utils
    from keras.src.backend import config as keras_config
    from keras.src.legacy.saving import legacy_h5_format

    from transferlab.predict.imagenet import predict_with_imagenet

    models = tmp_path / "keras_home" / "models"
    models.mkdir(parents=True)
    with h5py.File(models / "mobilenet_1_0_224_tf.h5", "w") as weights:  # the downloaded file's (legacy) format
        legacy_h5_format.save_weights_to_hdf5_group(weights, keras.applications.MobileNet(weights=None))
    monkeypatch.setattr(keras_config, "_KERAS_DIR", str(tmp_path / "keras_home"))
    monkeypatch.setattr(imagenet_utils, "CLASS_INDEX", {str(i): [f"n{i:08d}", f"class_{i}"] for i in range(1000)})
    images = write_class_images(tmp_path / "photos", 1, size=40)

    rows = predict_with_imagenet("mobilenet", [str(images)], 3)
    assert [row["rank"] for row in rows] == [1, 2, 3] * 2
    for file in {row["file"] for row in rows}:
        scores = [row["probability"] for row in rows if row["file"] == file]
        assert scores == sorted(scores, reverse=True) and 0 < sum(scores) <= 1
    assert all(row["class"].startswith("class_") for row in rows)
