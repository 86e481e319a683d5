"""Text transfer learning on generated tables and generated word vectors: data checks, the vectors
loader and its cache, the two phases on the embedding, and a model that predicts from raw strings."""

from __future__ import annotations

import gzip
import json
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import SHARED_DATA, compose_config
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import transferlab
from transferlab.config.schema import BadFilePolicy, DatasetConfig, DatasetKind
from transferlab.data.text import plan_text_data
from transferlab.errors import ConfigError, DataError, TransferlabError
from transferlab.models.vectors import (
    VectorsFile,
    load_embeddings,
    locate_vectors,
    parse_vectors,
)

POSITIVE = ["good", "great", "superb", "lovely", "excellent", "fine", "nice", "happy"]
NEGATIVE = ["bad", "awful", "poor", "terrible", "boring", "sad", "ugly", "broken"]
NEUTRAL = ["the", "movie", "phone", "was", "really", "quite", "plot", "case"]
# Words of the tables that the vectors file leaves out, so coverage is below 1.
UNCOVERED = {"superb", "boring", "quite"}


def sentences(n: int, seed: int = 0) -> pd.DataFrame:
    """Sentences whose label is told by which of two word lists they draw their adjectives from."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        label = i % 2
        words = list(rng.choice(NEUTRAL, 3)) + list(rng.choice(POSITIVE if label else NEGATIVE, 2))
        rng.shuffle(words)
        rows.append({"review": " ".join(words).capitalize() + ".", "sentiment": "pos" if label else "neg"})
    return pd.DataFrame(rows)


def word_vectors(dim: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    vectors = {}
    for words, sign in ((POSITIVE, 1.0), (NEGATIVE, -1.0), (NEUTRAL, 0.0)):
        for word in words:
            if word not in UNCOVERED:
                vectors[word] = (rng.normal(0, 0.1, dim) + sign).astype(np.float32)
    for i in range(40):  # words no table uses, as in any real vectors file
        vectors[f"other{i}"] = rng.normal(0, 1, dim).astype(np.float32)
    return vectors


def write_vectors(path: Path, vectors: dict[str, np.ndarray], header: bool = False) -> Path:
    dim = len(next(iter(vectors.values())))
    lines = [f"{len(vectors)} {dim}"] if header else []
    lines += [f"{word} " + " ".join(f"{v:.6f}" for v in vec) for word, vec in vectors.items()]
    text = "\n".join(lines) + "\n"
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    return path


def text_dataset(path: Path | str, **changes) -> DatasetConfig:
    cfg = DatasetConfig(name="t", kind=DatasetKind.text, path=str(path), text_column="review",
                        label_column="sentiment", validation_split=0.2, test_split=0.2)
    for key, value in changes.items():
        setattr(cfg, key, value)
    return cfg


def text_overrides(table: Path, vectors: Path | None, out: Path, *extra: str) -> list[str]:
    """A complete small text experiment: the generated table and vectors, a conv head, 3+2 epochs."""
    base = ["base_model=random_embedding"] if vectors is None else ["base_model=glove", f"base_model.path={vectors}", "base_model.url=null"]
    return [
        "dataset=text_csv", f"dataset.path={table}", "dataset.text_column=review", "dataset.label_column=sentiment",
        "dataset.max_length=8", "dataset.batch_size=16", *base, "base_model.dim=8", "head=conv", "head.units=16",
        "schedule=two_phase", "schedule.head.epochs=3", "schedule.head.lr=1e-2", "schedule.fine_tune.epochs=2",
        "schedule.fine_tune.lr=1e-2", "trainer.verbose=0", f"paths.output_dir={out}", f"paths.data_dir={out.parent / 'data'}",
        *extra,
    ]


@pytest.fixture(scope="module")
def table(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("text") / "reviews.csv"
    sentences(160).to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def vectors_file(tmp_path_factory) -> Path:
    return write_vectors(tmp_path_factory.mktemp("vectors") / "tiny.8d.txt", word_vectors(8))


# --- data: read, check, split (no TensorFlow) ---

def test_split_is_seeded_stratified_and_maps_string_labels(table):
    plan = plan_text_data(text_dataset(table), "unused", seed=3)
    assert plan.class_names == ["neg", "pos"]
    assert plan.counts() == {"train": 96, "validation": 32, "test": 32}
    for split in (plan.train, plan.validation, plan.test):
        assert split.labels.count(0) == split.labels.count(1)
    assert not set(plan.train.texts) & set(plan.test.texts)
    again = plan_text_data(text_dataset(table), "unused", seed=3)
    other = plan_text_data(text_dataset(table), "unused", seed=4)
    assert again.fingerprint() == plan.fingerprint() != other.fingerprint()


def test_separate_test_file_headerless_tsv_and_glob(tmp_path):
    frame = sentences(80)
    for i, part in enumerate((frame[:40], frame[40:])):
        part.to_csv(tmp_path / f"part{i}_labelled.txt", sep="\t", header=False, index=False)
    sentences(10, seed=9).to_csv(tmp_path / "held_out.tsv", sep="\t", header=False, index=False)
    cfg = text_dataset(tmp_path / "*_labelled.txt", column_names=["review", "sentiment"],
                       test_path=str(tmp_path / "held_out.tsv"), validation_split=0.25)
    plan = plan_text_data(cfg, "unused", seed=0)
    assert plan.counts() == {"train": 60, "validation": 20, "test": 10}
    assert len(plan.files) == 2


def test_multiclass_labels_sort_as_numbers_when_they_are_numbers(tmp_path):
    frame = sentences(60)
    frame["sentiment"] = [str(i % 3 * 5) for i in range(60)]  # "0", "5", "10": not alphabetical
    frame.to_csv(tmp_path / "three.csv", index=False)
    plan = plan_text_data(text_dataset(tmp_path / "three.csv"), "unused", seed=0)
    assert plan.class_names == ["0", "5", "10"]
    assert sorted(set(plan.train.labels)) == [0, 1, 2]


def test_parquet_table(tmp_path):
    sentences(40).to_parquet(tmp_path / "reviews.parquet")
    assert len(plan_text_data(text_dataset(tmp_path / "reviews.parquet"), "unused", seed=0).train) == 24


def test_archive_url_is_downloaded_and_unpacked(tmp_path):
    archive = tmp_path / "reviews.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("reviews/a_labelled.txt", sentences(40).to_csv(sep="\t", header=False, index=False))
        zf.writestr("reviews/readme.txt", "not data")
    cfg = text_dataset(tmp_path / "data" / "reviews" / "*_labelled.txt", url=archive.as_uri(), archive_subdir="reviews",
                       column_names=["review", "sentiment"])
    plan = plan_text_data(cfg, str(tmp_path / "data"), seed=0)
    assert len(plan.train) + len(plan.validation) + len(plan.test) == 40
    assert (tmp_path / "data" / "downloads" / "reviews.zip").is_file()


def test_missing_column_names_the_file_and_the_columns(table):
    with pytest.raises(DataError, match=r"reviews\.csv' has no column 'text'.*columns: review, sentiment"):
        plan_text_data(text_dataset(table, text_column="text"), "unused", seed=0)


def test_empty_or_nan_texts_fail_naming_the_line_or_are_skipped(tmp_path):
    frame = sentences(40)
    frame.loc[5, "review"] = "   "
    frame.loc[9, "sentiment"] = None
    path = tmp_path / "broken.csv"
    frame.to_csv(path, index=False)
    with pytest.raises(DataError, match=r"broken\.csv:7: empty or missing text \(and 1 more rows\)"):
        plan_text_data(text_dataset(path), "unused", seed=0)
    plan = plan_text_data(text_dataset(path, on_bad_file=BadFilePolicy.skip), "unused", seed=0)
    assert plan.skipped == [f"{path}:7", f"{path}:11"]
    assert sum(plan.counts().values()) == 38


def test_label_outside_the_configured_classes_is_named(table):
    with pytest.raises(DataError, match=r"reviews\.csv:3: label 'pos' is not one of the configured classes"):
        plan_text_data(text_dataset(table, classes=["neg", "neutral"]), "unused", seed=0)


def test_single_class_and_tiny_classes_are_refused(tmp_path):
    path = tmp_path / "one.csv"
    sentences(20).assign(sentiment="pos").to_csv(path, index=False)
    with pytest.raises(DataError, match="only one class"):
        plan_text_data(text_dataset(path), "unused", seed=0)
    sentences(6).to_csv(path, index=False)
    with pytest.raises(DataError, match="too few to stratify"):
        plan_text_data(text_dataset(path), "unused", seed=0)
    frame = sentences(12).assign(sentiment=[str(i % 3) for i in range(12)])
    frame.to_csv(path, index=False)
    with pytest.raises(DataError, match=r"cannot split 12 rows of 3 classes by class: .*raise dataset.validation_split"):
        plan_text_data(text_dataset(path, test_split=0.05, validation_split=0.5), "unused", seed=0)


CELLS = st.one_of(st.text(max_size=12), st.none(), st.sampled_from(["", " ", "nan", "0", "1", "pos", "1.0", "\t", '"']),
                  st.integers(-2, 3), st.floats(allow_nan=True, allow_infinity=False, width=32))


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(CELLS, CELLS), min_size=0, max_size=30), st.sampled_from([",", "\t"]),
       st.sampled_from(list(BadFilePolicy)))
def test_any_table_is_planned_or_refused_with_one_clear_line(tmp_path, rows, separator, policy):
    path = tmp_path / ("t.csv" if separator == "," else "t.tsv")
    pd.DataFrame(rows, columns=["review", "sentiment"]).to_csv(path, sep=separator, index=False)
    try:
        plan = plan_text_data(text_dataset(path, on_bad_file=policy), "unused", seed=0)
    except TransferlabError as exc:
        assert str(exc) and "\n" not in str(exc)
    else:
        assert len(plan.train) > 0 and len(plan.validation) > 0 and len(plan.class_names) >= 2


# --- word vectors ---

def test_parse_reads_the_vocabulary_rows_and_counts_coverage(vectors_file):
    vocabulary = ["", "[UNK]", "good", "superb", "bad", "the"]
    with open(vectors_file, "rb") as lines:
        matrix, found = parse_vectors(lines, 8, vocabulary, str(vectors_file))
    expected = word_vectors(8)
    assert found == 3
    np.testing.assert_allclose(matrix[2], expected["good"], atol=1e-6)
    np.testing.assert_allclose(matrix[4], expected["bad"], atol=1e-6)
    assert not matrix[[0, 1, 3]].any()  # padding, OOV and the uncovered word stay zero


@pytest.mark.parametrize("name,header", [("v.vec", True), ("v.txt.gz", False), ("glove.zip", False)])
def test_fasttext_header_gzip_and_zip_member_load_alike(tmp_path, name, header):
    vectors = word_vectors(8)
    if name.endswith(".zip"):
        source = write_vectors(tmp_path / "glove.8d.txt", vectors)
        with zipfile.ZipFile(tmp_path / name, "w") as zf:
            zf.write(source, "glove.8d.txt")
            zf.writestr("glove.16d.txt", "unused 1\n")
    else:
        write_vectors(tmp_path / name, vectors, header=header)
    from transferlab.config.schema import BaseModelConfig

    found = locate_vectors(BaseModelConfig(name="glove", path=str(tmp_path / name), dim=8), str(tmp_path))
    embeddings = load_embeddings(found, 8, ["", "[UNK]", "nice", "movie"], tmp_path / "cache")
    assert embeddings.found == 2 and embeddings.coverage == 1.0
    np.testing.assert_allclose(embeddings.matrix[3], vectors["movie"], atol=1e-6)


def test_vectors_url_is_downloaded_once(tmp_path):
    from transferlab.config.schema import BaseModelConfig

    source = write_vectors(tmp_path / "glove.mini.8d.txt", word_vectors(8))
    cfg = BaseModelConfig(name="glove", url=source.as_uri(), dim=8)
    found = locate_vectors(cfg, str(tmp_path / "data"))
    assert found.path == tmp_path / "data" / "downloads" / "glove.mini.8d.txt"
    source.unlink()  # the cached download serves the next run
    assert locate_vectors(cfg, str(tmp_path / "data")).path == found.path


def test_second_load_comes_from_the_cache(vectors_file, tmp_path, monkeypatch):
    vocabulary = ["", "[UNK]", "good", "bad"]
    first = load_embeddings(VectorsFile(vectors_file), 8, vocabulary, tmp_path)
    monkeypatch.setattr("transferlab.models.vectors.parse_vectors", lambda *a: pytest.fail("the vectors file was parsed again"))
    second = load_embeddings(VectorsFile(vectors_file), 8, vocabulary, tmp_path)
    assert second.found == first.found == 2 and np.array_equal(second.matrix, first.matrix)
    with pytest.raises(pytest.fail.Exception):  # another vocabulary is another cache entry
        load_embeddings(VectorsFile(vectors_file), 8, [*vocabulary, "nice"], tmp_path)


def test_wrong_dimension_is_refused_before_training_naming_file_and_line(vectors_file):
    from transferlab.config.schema import BaseModelConfig

    with pytest.raises(DataError, match=r"tiny\.8d\.txt' line 1 has 8-d vectors but base_model\.dim=100; set base_model\.dim=8"):
        locate_vectors(BaseModelConfig(name="glove", path=str(vectors_file), dim=100), "unused")


def test_malformed_line_is_named(tmp_path):
    path = write_vectors(tmp_path / "bad.txt", word_vectors(4))
    lines = path.read_text().splitlines()
    lines[3] = lines[3].rsplit(" ", 1)[0]  # a value short
    lines[5] = lines[5].split(" ", 1)[0] + " 0.1 x 0.3 0.4"
    path.write_text("\n".join(lines) + "\n")
    words = [line.split(" ", 1)[0] for line in lines]
    with pytest.raises(DataError, match=r"bad\.txt' line 4 has 3 values, not base_model\.dim=4"):
        parse_vectors(open(path, "rb"), 4, ["", "[UNK]", words[3]], str(path))
    with pytest.raises(DataError, match=r"bad\.txt' line 6 has a value that is not a number"):
        parse_vectors(open(path, "rb"), 4, ["", "[UNK]", words[5]], str(path))


@pytest.mark.parametrize("overrides,message", [
    (["base_model=xception"], "is an image base, but the dataset is text"),
    (["base_model.dim=null"], "base_model.dim is not set"),
    (["base_model.path=null"], "needs its vectors"),
    (["schedule.head.cache_features=true"], "cache_features=true is for image bases"),
])
def test_text_config_mistakes_fail_at_start(table, vectors_file, tmp_path, overrides, message):
    with pytest.raises(ConfigError, match=message):
        transferlab.train(compose_config(text_overrides(table, vectors_file, tmp_path / "run", *overrides)))
    assert not (tmp_path / "run" / "summary.json").exists()


def test_sequence_heads_are_refused_for_images(tmp_path):
    with pytest.raises(ConfigError, match="head.kind=bilstm reads token sequences"):
        transferlab.train(compose_config(["head=bilstm", f"paths.output_dir={tmp_path}"]))


# --- end to end ---

@pytest.fixture(scope="module")
def head_only_run(table, vectors_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "head_only"
    return out, transferlab.train(compose_config(text_overrides(table, vectors_file, out, "schedule.fine_tune.epochs=0")))


def embedding_of(model) -> np.ndarray:
    return np.array(model.get_layer("base").get_layer("embedding").get_weights()[0])


def test_coverage_is_reported_in_the_summary(head_only_run):
    out, summary = head_only_run
    vocabulary = {w for words in (POSITIVE, NEGATIVE, NEUTRAL) for w in words}
    metrics = json.loads((out / "summary.json").read_text())["metrics"]
    assert metrics["embeddings/vocabulary"] == len(vocabulary) + 2
    assert metrics["embeddings/found"] == len(vocabulary - UNCOVERED)
    assert metrics["embeddings/coverage"] == pytest.approx(len(vocabulary - UNCOVERED) / len(vocabulary))
    assert summary.metrics["test/accuracy"] > 0.8  # the two word lists separate the classes


def test_frozen_embedding_keeps_the_pretrained_vectors(head_only_run):
    from transferlab.models.saved import load_trained_model

    out, _ = head_only_run
    model = load_trained_model(str(out / "model.keras"))
    vectorizer = model.get_layer("vectorize")
    expected = word_vectors(8)
    matrix = embedding_of(model.layers[-1])
    for row, word in enumerate(vectorizer.get_vocabulary()):
        # The file holds 6 decimals; a single training step at lr 1e-2 moves a vector by far more.
        np.testing.assert_allclose(matrix[row], expected.get(word, np.zeros(8, np.float32)), rtol=0, atol=1e-6)


def test_saved_model_predicts_from_raw_strings(head_only_run):
    import tensorflow as tf

    from transferlab.models.saved import load_trained_model
    from transferlab.predict.run import predict_with_run

    out, _ = head_only_run
    model = load_trained_model(str(out / "model.keras"))
    logits = np.asarray(model.predict(tf.constant(["great lovely phone", "awful ugly plot", "unseen words only"]), verbose=0))
    assert logits.shape == (3, 1) and logits[0, 0] > 0 > logits[1, 0]
    (out / "new.txt").write_text("really nice movie\nthe case was broken\n")
    rows = predict_with_run(out, [str(out / "new.txt")], k=2)
    assert [r["class"] for r in rows if r["rank"] == 1] == ["pos", "neg"]
    by_text = {}
    for r in rows:
        by_text.setdefault(r["text"], []).append(r["probability"])
    assert all(sum(p) == pytest.approx(1.0) for p in by_text.values())
    assert (out / "misclassified.csv").is_file()


def test_text_features_export_one_row_per_text_with_its_mean_word_vector(table, vectors_file, tmp_path):
    from transferlab.extraction import extract_features

    result = extract_features(compose_config(text_overrides(table, vectors_file, tmp_path / "x", "extract.format=parquet")))
    rows = pd.read_parquet(result["features"])
    assert list(rows.columns[:4]) == ["split", "text", "label", "class"] and len(rows) == 160
    assert set(pd.read_csv(table)["review"]) == set(rows["text"])
    vectors = word_vectors(8)
    first = rows.iloc[0]
    words = [w.strip(".").lower() for w in first["text"].split() if w.strip(".").lower() in vectors]
    np.testing.assert_allclose(first.filter(regex=r"^f\d+$").to_numpy(float), np.mean([vectors[w] for w in words], axis=0),
                               atol=1e-5)
    assert result["metrics"]["baseline/test_accuracy"] > 0.8


def test_fine_tuning_phase_changes_the_embedding_under_a_bilstm_head(table, vectors_file, tmp_path):
    from transferlab.models.saved import load_trained_model

    overrides = text_overrides(table, vectors_file, tmp_path / "run", "head=bilstm", "head.units=8", "head.hidden_units=[]")
    summary = transferlab.train(compose_config(overrides))
    assert set(summary.phases) == {"head", "fine_tune"}
    assert summary.phases["fine_tune"]["trainable_params"] > summary.phases["head"]["trainable_params"]
    model = load_trained_model(str(tmp_path / "run" / "model.keras"))
    vocabulary = model.get_layer("vectorize").get_vocabulary()
    expected = word_vectors(8)
    matrix = embedding_of(model.layers[-1])
    row = vocabulary.index("great")
    assert not np.allclose(matrix[row], expected["great"], atol=1e-4)


@pytest.mark.skipif(not (SHARED_DATA / "sentiment").is_dir(), reason="needs the shared real sentiment data")
def test_real_sentences_with_real_glove_beat_the_majority_class(tmp_path):
    overrides = [
        "dataset=text_csv", f"dataset.path={SHARED_DATA / 'sentiment' / 'sentiment.csv'}", "dataset.label_column=sentiment",
        "dataset.max_length=40", "base_model=glove", f"base_model.path={SHARED_DATA / 'glove' / 'glove.6B.50d.combined8390.txt'}",
        "base_model.url=null", "base_model.dim=50", "head=conv", "schedule=head_only", "schedule.head.epochs=8",
        "trainer.verbose=0", f"paths.output_dir={tmp_path / 'run'}", f"paths.data_dir={tmp_path / 'data'}",
    ]
    summary = transferlab.train(compose_config(overrides))
    assert summary.counts["test"] == 400
    majority = max(summary.confusion_matrix[0][0] + summary.confusion_matrix[0][1],
                   summary.confusion_matrix[1][0] + summary.confusion_matrix[1][1]) / 400
    assert summary.metrics["test/accuracy"] > majority + 0.15
    assert summary.metrics["baseline/test_accuracy"] > majority + 0.1
    assert 0.4 < summary.metrics["embeddings/coverage"] < 0.7


def test_tfidf_baseline_reads_the_words_and_nothing_else():
    from transferlab.features.baseline import tfidf_baseline

    rng = np.random.default_rng(0)
    filler = ["the", "a", "movie", "film", "plot", "actors", "was", "is", "really", "quite"]

    def split(n: int, labels_from_words: bool) -> tuple[list[str], list[int]]:
        labels = rng.integers(0, 2, n).tolist()
        texts = [" ".join([*rng.choice(filler, 5), "great" if y else "awful"]) for y in labels]
        return texts, labels if labels_from_words else rng.integers(0, 2, n).tolist()

    informative = tfidf_baseline(split(120, True), split(40, True), split(80, True))
    assert informative["baseline/tfidf_test_accuracy"] == 1.0
    noise = tfidf_baseline(split(120, False), split(40, False), split(200, False))
    assert noise["baseline/tfidf_test_accuracy"] < 0.65
    assert tfidf_baseline(split(120, True), ([], []), ([], [])) == {}


def test_a_text_run_reports_tfidf_beside_the_feature_baseline(table, vectors_file, tmp_path):
    from transferlab.extraction import extract_features

    out = tmp_path / "run"
    summary = transferlab.train(compose_config(text_overrides(table, vectors_file, out, "schedule.fine_tune.epochs=0")))
    assert summary.metrics["baseline/tfidf_test_accuracy"] > 0.8  # the test sentences' words give their label
    assert json.loads((out / "baseline.json").read_text())["baseline/tfidf_test_accuracy"] == \
        summary.metrics["baseline/tfidf_test_accuracy"]
    extracted = extract_features(compose_config(text_overrides(table, vectors_file, tmp_path / "x")))
    assert extracted["metrics"]["baseline/tfidf_test_accuracy"] == summary.metrics["baseline/tfidf_test_accuracy"]
