"""Benchmark serving the default experiment's model: Keras, SavedModel, ONNX Runtime and LiteRT, side by side.

Trains the default experiment briefly (the architecture, not the accuracy, sets the cost), exports it
with scripts/export.py to every format, then, round after round, for each runtime in turn:
  - start-up: a fresh Python process that imports the runtime, loads the model and predicts one
    image (what a serving container or a command-line prediction pays before its first answer);
  - latency: the median of single-image predictions in that process after a warm-up, and the
    throughput of 32-image batches.
Prints each runtime's range of samples and the median of its ratios to the Keras sample of the same round.

    python benchmarks/serving.py                         # as documented: writes benchmarks/results/serving.json and the docs
    python benchmarks/serving.py --rounds 1 --calls 20   # a quick look (printed, not recorded)
    python benchmarks/serving.py --render                # only rewrite the docs from the record
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from statistics import median

from records import add_render_option, documented, measured_by, render_docs, save, stamp
from timing import ratios, span, timed_command

ROOT = Path(__file__).resolve().parents[1]
RUNTIMES = ("keras", "saved_model", "onnx", "litert")
LABELS = {"keras": "Keras (`model.keras`)", "saved_model": "SavedModel", "onnx": "ONNX Runtime", "litert": "LiteRT"}
PACKAGES = ("tf2onnx", "onnxruntime", "ai-edge-litert")  # the exporters' and runtimes' versions, in the record

# Run in a fresh process: load one runtime's model, then time single-image and batched predictions.
PROBE = """
import json, sys, time
from pathlib import Path
import numpy as np
runtime, run_dir, calls = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
if runtime == "keras":
    from transferlab.models.saved import inference_function, load_trained_model
    model = load_trained_model(str(run_dir / "model.keras"))
    function = inference_function(model)
    forward = lambda x: np.asarray(function(x))
    shape = tuple(model.inputs[0].shape[1:])
else:
    from transferlab.export.runtime import load_artifact, read_manifest
    folder = run_dir / "export" / runtime
    artifact = load_artifact(folder, runtime)
    forward, shape = artifact.forward, tuple(read_manifest(folder)["input"]["shape"][1:])
rng = np.random.default_rng(0)
one, batch = (rng.uniform(0, 255, (n, *shape)).astype(np.float32) for n in (1, 32))
forward(one)
if "--startup" in sys.argv:
    sys.exit(0)
forward(batch)
times = []
for _ in range(calls):
    start = time.perf_counter(); forward(one); times.append(time.perf_counter() - start)
start = time.perf_counter()
for _ in range(10):
    forward(batch)
batched = (time.perf_counter() - start) / 320
print(json.dumps({"single_ms": 1000 * sorted(times)[len(times) // 2], "batched_ms": 1000 * batched,
                  "tensorflow_imported": "tensorflow" in sys.modules}))
"""


def train_and_export(folder: Path, env: dict) -> Path:
    run_dir = folder / "run"
    timed_command([sys.executable, str(ROOT / "scripts" / "train.py"), f"paths.output_dir={run_dir}",
                   f"paths.data_dir={folder / 'data'}", "schedule.head.epochs=3", "schedule.fine_tune.epochs=1",
                   "trainer.verbose=0", "logger=none"], env, folder)
    timed_command([sys.executable, str(ROOT / "scripts" / "export.py"), str(run_dir), "format=[saved_model,onnx,litert]"],
                  env, folder)
    return run_dir


def probe(runtime: str, run_dir: Path, calls: int, env: dict) -> dict:
    done = subprocess.run([sys.executable, "-c", PROBE, runtime, str(run_dir), str(calls)], env=env,
                          capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{runtime} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure(args: argparse.Namespace) -> dict:
    """Sizes, then round after round each runtime's start-up and latencies."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(ROOT / "src")}
    with tempfile.TemporaryDirectory(prefix="transferlab-export-bench-") as scratch:
        run_dir = train_and_export(Path(scratch), env)
        sizes = {r: json.loads((run_dir / "export" / r / "export.json").read_text())["size_bytes"] for r in RUNTIMES[1:]}
        sizes["keras"] = (run_dir / "model.keras").stat().st_size
        startup = {r: [] for r in RUNTIMES}
        measured = {r: [] for r in RUNTIMES}
        for _ in range(args.rounds):
            for runtime in RUNTIMES:
                startup[runtime].append(timed_command(
                    [sys.executable, "-c", PROBE, runtime, str(run_dir), "0", "--startup"], env, Path(scratch)))
                measured[runtime].append(probe(runtime, run_dir, args.calls, env))
    return {"rounds": args.rounds, "calls": args.calls, "runtimes": {r: {
        "size_bytes": sizes[r], "startup_s": startup[r], "single_ms": [m["single_ms"] for m in measured[r]],
        "batched_ms": [m["batched_ms"] for m in measured[r]],
        "imports_tensorflow": any(m["tensorflow_imported"] for m in measured[r])} for r in RUNTIMES}}


def render(record: dict) -> dict[str, str]:
    """docs/export.md's serving table, each runtime against the Keras sample of the same round."""
    runtimes = record["runtimes"]
    keras = runtimes["keras"]

    def against_keras(runtime: str, key: str) -> float:
        return median(ratios(runtimes[runtime][key], keras[key]))

    rows = []
    for runtime, r in runtimes.items():
        vs = "" if runtime == "keras" else f" ({against_keras(runtime, 'startup_s'):.2f}x Keras)"
        vs_one = "" if runtime == "keras" else f" ({against_keras(runtime, 'single_ms'):.2f}x)"
        rows.append(f"| {LABELS[runtime]} | {r['size_bytes'] / 1024:,.0f} kB | {span(r['startup_s'], unit='s')}{vs} | "
                    f"{span(r['single_ms'], unit='ms')}{vs_one} | {span(r['batched_ms'], unit='ms')} | "
                    f"{'yes' if r['imports_tensorflow'] else 'no'} |")
    without = [r for r in RUNTIMES if not runtimes[r]["imports_tensorflow"]]
    return {"serving": "\n".join([
        f"{record['rounds']} rounds; one image is the median of {record['calls']} calls in a round; each ratio is "
        "the median over the rounds of the sample against the Keras one of the same round.",
        "",
        "| runtime | size | start-up to the first prediction | one image | per image in batches of 32 | imports TensorFlow |",
        "|---|---|---|---|---|---|",
        *rows,
        "",
        *([f"Without TensorFlow, a fresh process answers its first prediction "
           + " and ".join(f"{1 / against_keras(r, 'startup_s'):.0f} times sooner with {LABELS[r]}" for r in without)
           + " than with Keras, and one image takes "
           + " and ".join(f"{against_keras(r, 'single_ms'):.2f}x the Keras time with {LABELS[r]}" for r in without)
           + ". "] if without else []),
    ]) + measured_by("serving", record)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--calls", type=int, default=200, help="single-image predictions timed per runtime and round")
    add_render_option(parser, "serving")
    args = parser.parse_args()
    if args.render:
        render_docs("serving", render)
        return
    started = time.perf_counter()
    record = stamp(measure(args), started, PACKAGES)
    print(render(record)["serving"])
    if documented(parser, args):
        save("serving", record, render)


if __name__ == "__main__":
    main()
