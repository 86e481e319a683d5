"""The README's transfer figures, measured and written in one place: no number there is typed by hand.

    python benchmarks/readme_figures.py            # run the experiments, then render
    python benchmarks/readme_figures.py --render   # only rewrite the README from the recorded results

Runs the default experiment and `experiment=digits_scratch` for each seed, through the same command a
user runs, records every run's numbers with the machine and package versions in
`benchmarks/results/readme_figures.json`, and rewrites the README between its `readme_figures`
markers. tests/test_benchmarks.py checks that the README says what the recorded results say.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from statistics import mean

from records import add_render_option, measured_by, render_docs, save, stamp

ROOT = Path(__file__).resolve().parents[1]
SEEDS = (1, 2, 3, 4, 42)
DEFAULT_SEED = 42
ARMS = {"transfer": [], "scratch": ["experiment=digits_scratch"]}
ROWS = (
    ("head phase only (best validation accuracy)", "head_val_accuracy"),
    ("after fine-tuning (test accuracy)", "test_accuracy"),
    ("scikit-learn baseline on the frozen base's features (test)", "baseline_test_accuracy"),
)


def measure() -> dict:
    """Every (arm, seed) run through scripts/train.py, with what it scored and how long it took."""
    runs = []
    with tempfile.TemporaryDirectory(prefix="readme-figures-") as scratch:
        for arm, overrides in ARMS.items():
            for seed in SEEDS:
                run_dir = Path(scratch) / f"{arm}-{seed}"
                started = time.perf_counter()
                subprocess.run(
                    [sys.executable, str(ROOT / "scripts" / "train.py"), *overrides, f"trainer.seed={seed}",
                     f"hydra.run.dir={run_dir}", f"paths.data_dir={Path(scratch) / 'data'}"],
                    check=True, capture_output=True, cwd=scratch,
                )
                summary = json.loads((run_dir / "summary.json").read_text())
                runs.append({
                    "arm": arm, "seed": seed, "wall_time_s": round(time.perf_counter() - started, 1),
                    "head_val_accuracy": summary["phases"]["head"]["best"]["val_accuracy"],
                    "test_accuracy": summary["metrics"]["test/accuracy"],
                    "baseline_test_accuracy": summary["metrics"]["baseline/test_accuracy"],
                })
                print(runs[-1], flush=True)
    return {"runs": runs}


def render(results: dict) -> dict[str, str]:
    """The README's table and the sentences around it, from the recorded results alone."""

    def values(arm: str, key: str) -> list[float]:
        return [r[key] for r in results["runs"] if r["arm"] == arm]

    def cell(arm: str, key: str) -> str:
        got = values(arm, key)
        return f"{mean(got):.2f} ({min(got):.2f}–{max(got):.2f})"

    def at_default_seed(arm: str) -> float:
        return next(r["test_accuracy"] for r in results["runs"] if r["arm"] == arm and r["seed"] == DEFAULT_SEED)

    default_times = [r["wall_time_s"] for r in results["runs"] if r["arm"] == "transfer"]
    lines = [
        "| | with transfer (`digits_0_4` base) | without (`experiment=digits_scratch`, random base) |",
        "|---|---|---|",
        *(f"| {label} | {cell('transfer', key)} | {cell('scratch', key)} |" for label, key in ROWS),
        "",
        f"Means over `trainer.seed` {', '.join(map(str, SEEDS[:-1]))} and {SEEDS[-1]} (the seed also draws which "
        "10 images per class are labelled), ranges in brackets. The default seed "
        f"{DEFAULT_SEED} alone gives {at_default_seed('transfer'):.3f} with transfer and "
        f"{at_default_seed('scratch'):.3f} without. A default run took {min(default_times):.0f}–"
        f"{max(default_times):.0f} s, TensorFlow start-up included. " + measured_by("readme_figures", results),
    ]
    return {"readme_figures": "\n".join(lines)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_render_option(parser, "readme_figures")
    args = parser.parse_args()
    if args.render:
        render_docs("readme_figures", render)
        return
    started = time.perf_counter()
    save("readme_figures", stamp(measure(), started, ("scikit-learn",)), render)


if __name__ == "__main__":
    main()
