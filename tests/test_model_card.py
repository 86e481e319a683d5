"""MODEL_CARD.md: written by every finished run, and every number in it is the run's own."""

from __future__ import annotations

import json
import re
from pathlib import Path

from conftest import compose_config, tiny_overrides

import transferlab
from transferlab.config.convert import to_experiment_config
from transferlab.reporting.model_card import base_licence, base_source


def table_value(card: str, key: str) -> str:
    found = re.search(rf"^\| {re.escape(key)} \| ([^|]+) \|$", card, re.M)
    assert found, f"the card has no row {key}"
    return found.group(1).strip()


def test_a_finished_run_writes_a_card_whose_numbers_are_the_summary(image_folder, base_weights, tmp_path):
    out = tmp_path / "run"
    summary = transferlab.train(compose_config(tiny_overrides(image_folder, out, base_weights, "schedule.fine_tune.warmup=0.2",
                                                              "schedule.fine_tune.decay=cosine")))
    card = (out / "MODEL_CARD.md").read_text()
    recorded = json.loads((out / "summary.json").read_text())
    assert card.startswith("---\nlibrary_name: keras\n") and "- image-classification" in card
    for key in ("test/accuracy", "test/loss", "baseline/test_accuracy"):
        assert table_value(card, key) == f"{recorded['metrics'][key]:.4f}"
    names = recorded["class_names"]
    for name, row in zip(names, recorded["confusion_matrix"], strict=True):
        assert f"| {name} | " + " | ".join(str(n) for n in row) + " |" in card
    for split, count in recorded["counts"].items():
        row = re.search(rf"^\| {split} \| (\d+) \| (.+) \|$", card, re.M)
        assert int(row.group(1)) == count and sum(int(n) for n in re.findall(r" (\d+)(?:,|$)", row.group(2))) == count
    fine_tune = recorded["phases"]["fine_tune"]
    assert f"| fine_tune | {fine_tune['epochs_run']} of 2 | 0.001 | 0.2, cosine | the whole base and the head | " \
           f"{fine_tune['trainable_params']:,} |" in card
    assert recorded["environment"]["git"]["commit"] in card and recorded["data_fingerprint"] in card
    assert str(tmp_path) not in card  # it travels with the model: no folder of this machine
    beaten = summary.metrics["test/accuracy"] > summary.metrics["baseline/test_accuracy"]
    assert ("beaten (" if beaten else "not beaten (") in card


def test_the_base_source_and_licence_come_from_the_config_or_the_preset(tmp_path):
    preset = tmp_path / "models" / "minilm"
    preset.mkdir(parents=True)
    (preset / "README.md").write_text("---\nlanguage: en\nlicense: apache-2.0\n---\n# all-MiniLM-L6-v2\n")
    hub = to_experiment_config(compose_config(["dataset=sentiment", "base_model=hub_text", f"base_model.preset={preset}",
                                               "paths.output_dir=unused"]))
    assert base_licence(hub) == "apache-2.0" and base_source(hub) == "KerasHub preset minilm"
    glove = to_experiment_config(compose_config(["experiment=sentiment_glove_bilstm", "paths.output_dir=unused"]))
    assert base_licence(glove) == "PDDL-1.0" and base_source(glove) == "glove vectors (https://nlp.stanford.edu/data/glove.6B.zip)"
    cnn = to_experiment_config(compose_config(["base_model=xception", "paths.output_dir=unused"]))
    assert base_licence(cnn) is None and base_source(cnn) == "xception (imagenet weights)"
    assert base_source(to_experiment_config(compose_config(["paths.output_dir=unused"]))) == "digits_cnn (its default weights)"
    (preset / "README.md").unlink()
    assert base_licence(hub) is None
    assert base_source(to_experiment_config(compose_config([f"base_model.weights={Path('/data/w.weights.h5')}",
                                                            "paths.output_dir=unused"]))) == "digits_cnn (w.weights.h5 weights)"
