"""Benchmark: what transfer gives on the shared real data, photos and sentences, each a `transferlab.train` run.

    python benchmarks/real_data.py            # as documented: writes benchmarks/results/real_data.json and the docs
    python benchmarks/real_data.py --seeds 1  # one seed (printed, not recorded)
    python benchmarks/real_data.py --render   # only rewrite the docs from the record

1. Photos: the 400 shared cats_dogs photos and MobileNet v1 (alpha 0.25) with its real ImageNet
   weights, found offline in `$KERAS_HOME/models/` as after a download, at 224x224 with a
   240 / 60 / 100 split and 10 head-phase epochs (the run tests/test_real_data.py makes): the
   head's test accuracy, and the scikit-learn baseline's on the frozen, pooled features.
2. Sentences: the 2,000 shared labelled sentences with the shared 8,390 GloVe 6B 50-d vectors, for
   each of `--seeds`: the recipe of `experiment=sentiment_glove_bilstm` (BiLSTM head), the same with
   `head=conv`, and no transfer (`base_model=random_embedding`, 50-d, BiLSTM head). Every GloVe run
   also reports logistic regression on each sentence's mean vector (`baseline/test_accuracy`).
Each run is timed from composing its config to its summary being written, without a tracker;
TensorFlow's start-up is paid once before them and counted in none. Runs write into a temporary folder.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from phase1 import CATS_DOGS, MOBILENET_WEIGHTS, use_real_weights
from records import add_render_option, documented, measured_by, render_docs, save, stamp
from text_bases import GLOVE, SENTENCES, compose
from timing import span

IMAGE_EPOCHS = 10
PHOTOS_SEED = 42  # the default trainer.seed, as in tests/test_real_data.py
PHOTOS = ["dataset=image_folder", f"dataset.path={CATS_DOGS}", "dataset.image_size=[224,224]",
          "dataset.validation_split=0.15", "dataset.test_split=0.25", "base_model=mobilenet", "base_model.alpha=0.25",
          "base_model.weights=imagenet", "schedule=head_only", f"schedule.head.epochs={IMAGE_EPOCHS}"]
SENTENCE_DATA = ["dataset=text_csv", f"dataset.path={SENTENCES}", "dataset.label_column=sentiment"]
GLOVE_50 = [f"base_model.path={GLOVE}", "base_model.url=null", "base_model.dim=50"]
TEXT = {  # what each text variant adds to the sentences
    "glove_bilstm": ["experiment=sentiment_glove_bilstm", *GLOVE_50],
    "glove_conv": ["experiment=sentiment_glove_bilstm", *GLOVE_50, "head=conv"],
    "random_bilstm": ["experiment=sentiment_glove_bilstm", "base_model=random_embedding", "base_model.dim=50"],
}
LABELS = {
    "glove_bilstm": "GloVe 50-d, frozen, BiLSTM(150) head (the tutorial's recipe)",
    "glove_conv": "GloVe 50-d, frozen, `head=conv`",
    "random_bilstm": "no transfer: `base_model=random_embedding` (50-d), BiLSTM head",
}


def run(part: str, variant: str, seed: int, overrides: list[str], scratch: Path) -> dict:
    """One `transferlab.train` run in its own folders, and what the record keeps of it."""
    import transferlab

    name = f"{variant}-{seed}"
    cfg = compose([*overrides, f"trainer.seed={seed}", "trainer.verbose=0", "logger=none",
                   f"paths.output_dir={scratch / name}", f"paths.data_dir={scratch / 'data' / name}"])
    started = time.perf_counter()
    summary = transferlab.train(cfg)
    found = {"part": part, "variant": variant, "seed": seed, "wall_time_s": round(time.perf_counter() - started, 1),
             "test_accuracy": summary.metrics["test/accuracy"],
             "baseline_test_accuracy": summary.metrics.get("baseline/test_accuracy"),
             "epochs": {phase: p["epochs_run"] for phase, p in summary.phases.items()}, "counts": summary.counts,
             "coverage": summary.metrics.get("embeddings/coverage"), "vocabulary": summary.metrics.get("embeddings/vocabulary")}
    print(found, flush=True)
    return found


def render(record: dict) -> dict[str, str]:
    """docs/benchmarks.md's real-data sections: the photos' table, and the sentences' table per seed."""
    photos = next(r for r in record["runs"] if r["part"] == "photos")
    seeds = record["seeds"]
    text = {v: [next(r for r in record["runs"] if r["variant"] == v and r["seed"] == s) for s in seeds] for v in TEXT}
    counts = text["glove_bilstm"][0]["counts"]

    def split(c: dict) -> str:
        return f"{c['train']:,} / {c['validation']:,} / {c['test']:,}"

    def accuracies(runs: list[dict], key: str = "test_accuracy") -> str:
        return ", ".join(f"{r[key]:.3f}" for r in runs)

    def points(a: str, b: str) -> str:
        return " and ".join(f"{100 * (x['test_accuracy'] - y['test_accuracy']):+.1f}" for x, y in zip(text[a], text[b]))

    coverage, vocabulary = ([r[key] for r in text["glove_bilstm"]] for key in ("coverage", "vocabulary"))
    time_share = [c["wall_time_s"] / b["wall_time_s"] for c, b in zip(text["glove_conv"], text["glove_bilstm"])]
    return {
        "real_data:photos": "\n".join([
            "| | test accuracy |",
            "|---|---|",
            f"| logistic regression on the frozen, pooled features (`baseline/test_accuracy`) | {photos['baseline_test_accuracy']:.2f} |",
            f"| neural head, {photos['epochs']['head']} head-phase epochs at the default 1e-3 (`test/accuracy`) | "
            f"{photos['test_accuracy']:.2f} |",
            "",
            f"A {split(photos['counts'])} split, `trainer.seed` {photos['seed']}; the run took {photos['wall_time_s']:.0f} s. "
            + measured_by("real_data", record),
        ]),
        "real_data:sentences": "\n".join([
            f"| | test accuracy, `trainer.seed` {' and '.join(map(str, seeds))} | wall time |",
            "|---|---|---|",
            *(f"| {LABELS[v]} | {accuracies(text[v])} | {span([r['wall_time_s'] for r in text[v]], 0, 's')} |" for v in TEXT),
            "| logistic regression on the mean GloVe vector of each sentence (`baseline/test_accuracy`) | "
            f"{accuracies(text['glove_bilstm'], 'baseline_test_accuracy')} | part of each GloVe run |",
            "",
            f"A {split(counts)} split. Per seed, the vectors cover {' and '.join(f'{c:.0%}' for c in coverage)} of the "
            f"training vocabulary ({' and '.join(f'{v:,.0f}' for v in vocabulary)} words; `embeddings/coverage`), "
            f"pretrained vectors add {points('glove_bilstm', 'random_bilstm')} points over learning the embedding from "
            f"{counts['train']:,} sentences (BiLSTM head), and the convolution head scores "
            f"{points('glove_conv', 'glove_bilstm')} points against the BiLSTM, in {span(time_share, 2)} of its time. "
            + measured_by("real_data", record),
        ]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", default="1,2", help="comma-separated `trainer.seed`s of the sentence runs")
    add_render_option(parser, "real_data")
    args = parser.parse_args()
    if args.render:
        render_docs("real_data", render)
        return
    if missing := [p for p in (CATS_DOGS, MOBILENET_WEIGHTS, SENTENCES, GLOVE) if not p.exists()]:
        sys.exit(f"error: the shared data is expected beside the checkout; missing {', '.join(map(str, missing))}")
    seeds = [int(s) for s in args.seeds.split(",")]
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="real-data-") as tmp:
        scratch = Path(tmp)
        use_real_weights(scratch / "keras_home")  # before Keras is first imported
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        import tensorflow  # noqa: F401  (TensorFlow's start-up, outside every timed run)

        runs = [run("photos", "mobilenet_imagenet", PHOTOS_SEED, PHOTOS, scratch)]
        runs += [run("sentences", variant, seed, [*SENTENCE_DATA, *overrides], scratch)
                 for seed in seeds for variant, overrides in TEXT.items()]
    record = stamp({"seeds": seeds, "runs": runs}, started, ("scikit-learn",))
    print("\n\n".join(render(record).values()))
    if documented(parser, args):
        save("real_data", record, render)


if __name__ == "__main__":
    main()
