"""Benchmark serving the default experiment's model: Keras, SavedModel, ONNX Runtime and LiteRT, side by side.

Trains the default experiment briefly (the architecture, not the accuracy, sets the cost), exports it
with scripts/export.py to every format, then, round after round, for each runtime in turn:
  - start-up: a fresh Python process that imports the runtime, loads the model and predicts one
    image (what a serving container or a command-line prediction pays before its first answer);
  - latency: the median of single-image predictions in that process after a warm-up, and the
    throughput of 32-image batches.
Prints each sample and its ratio to the Keras one measured beside it in the same round.

    python benchmarks/serving.py [--rounds 3] [--calls 200]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from timing import paired, samples, timed_command

ROOT = Path(__file__).resolve().parents[1]
RUNTIMES = ("keras", "saved_model", "onnx", "litert")

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--calls", type=int, default=200, help="single-image predictions timed per runtime and round")
    args = parser.parse_args()
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
    print(f"\n{'runtime':<12} {'size':>9}  {'start-up s (vs Keras)':<40} {'1 image ms (vs Keras)':<40} {'per image in 32s ms':<22} TF")
    for runtime in RUNTIMES:
        single = [m["single_ms"] for m in measured[runtime]]
        batched = [m["batched_ms"] for m in measured[runtime]]
        print(f"{runtime:<12} {sizes[runtime] / 1024:>7.0f}kB  "
              f"{samples(startup[runtime]) + '  ' + paired(startup[runtime], startup['keras']):<40} "
              f"{samples(single) + '  ' + paired(single, [m['single_ms'] for m in measured['keras']]):<40} "
              f"{samples(batched):<22} {'yes' if measured[runtime][0]['tensorflow_imported'] else 'no'}")


if __name__ == "__main__":
    main()
