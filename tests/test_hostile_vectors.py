"""Word-vector files with non-finite values, and vectors that cannot be downloaded offline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import compose_config

from transferlab.config.convert import to_experiment_config
from transferlab.errors import DataError
from transferlab.modalities.text import check_text_config
from transferlab.models.vectors import VectorsFile, load_embeddings

VOCABULARY = ["", "[UNK]", "good", "bad", "movie"]


def vectors_file(path: Path, bad_value: str | None, bad_word: str = "bad") -> Path:
    lines = [f"{w} " + " ".join(f"{v:.3f}" for v in np.full(4, i + 0.5)) for i, w in enumerate(["movie", "good", "bad", "spare"])]
    if bad_value is not None:
        index = ["movie", "good", "bad", "spare"].index(bad_word)
        lines[index] = f"{bad_word} 0.1 {bad_value} 0.3 0.4"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("bad_value", ["nan", "inf", "-Infinity", "1e39"])  # 1e39 overflows float32
def test_a_vector_line_with_a_non_finite_value_is_refused_with_its_line(tmp_path, bad_value):
    source = VectorsFile(vectors_file(tmp_path / "vectors.txt", bad_value))
    with pytest.raises(DataError) as info:
        load_embeddings(source, 4, VOCABULARY, tmp_path / "cache")
    assert str(info.value) == (f"'{source}' line 3 has a value that is nan or infinite; fix or delete the line "
                               "(or use an intact copy of the vectors file)")
    assert not list((tmp_path / "cache").glob("*.npz"))  # nothing cached from the bad file


def test_a_non_finite_vector_of_a_word_the_run_never_uses_does_not_matter(tmp_path):
    source = VectorsFile(vectors_file(tmp_path / "vectors.txt", "nan", bad_word="spare"))
    embeddings = load_embeddings(source, 4, VOCABULARY, tmp_path / "cache")
    assert np.isfinite(embeddings.matrix).all() and embeddings.found == 3


def test_the_glove_preset_offline_names_base_model_url_and_the_local_file_fix(tmp_path):
    missing = (tmp_path / "nowhere" / "glove.6B.zip").as_uri()
    cfg = to_experiment_config(compose_config([
        "experiment=sentiment_glove_bilstm", f"base_model.url={missing}", f"paths.data_dir={tmp_path / 'data'}",
        "paths.output_dir=unused",
    ]))
    with pytest.raises(DataError) as info:
        check_text_config(cfg)
    message = str(info.value)
    assert message.startswith(f"cannot download base_model.url '{missing}': ")
    assert message.endswith("or set base_model.path=<local file> to use a copy already on disk")
    assert "dataset.url" not in message and "\n" not in message
