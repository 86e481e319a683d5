"""Benchmark the framework's overhead against a plain Keras script, and the CLI's start-up.

1. The same experiment, each in a fresh process (TensorFlow start-up counts for both):
   - plain Keras, mirroring the keras.io transfer-learning guide: `image_dataset_from_directory`,
     frozen base called with training=False, new head, compile, fit; then unfreeze, recompile at a
     low learning rate, fit;
   - `scripts/train.py` with the same data, base, head, epochs, batch size and seed, no baseline
     estimator and no test split: with phase 1 on images like the plain script (no tracker, then
     TensorBoard), and as configured by default (phase 1 on cached features, TensorBoard).
2. `train.py --help` and `train.py --cfg job`: wall time, and a check that neither imports TensorFlow.

Data and base: the shared cats_dogs photos and MobileNet (alpha 0.25) with its real ImageNet
weights when `../shared/data/` is beside the checkout, else generated photos and random weights.

    python benchmarks/overhead.py                   # as documented: writes benchmarks/results/overhead.json and the docs
    python benchmarks/overhead.py --startup-only    # only the start-up (printed, not recorded)
    python benchmarks/overhead.py --render          # only rewrite the docs from the record
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from phase1 import write_photos
from records import add_render_option, documented, measured_by, render_docs, save, stamp
from timing import timed_command

ROOT = Path(__file__).resolve().parents[1]
TRAIN = ROOT / "scripts" / "train.py"
SHARED_DATA = ROOT.parent / "shared" / "data"
CATS_DOGS = SHARED_DATA / "cats_dogs"
MOBILENET_WEIGHTS = SHARED_DATA / "weights" / "mobilenet_2_5_224_tf_no_top.h5"
VALIDATION_SPLIT, BATCH_SIZE, SEED = 0.2, 32, 42


def plain_keras(data: str, size: int, head_epochs: int, fine_tune_epochs: int, weights: str) -> None:
    """The keras.io recipe, written the way the guide writes it (runs in its own process)."""
    import keras

    train_ds, val_ds = keras.utils.image_dataset_from_directory(
        data, validation_split=VALIDATION_SPLIT, subset="both", seed=SEED, image_size=(size, size),
        batch_size=BATCH_SIZE, label_mode="binary",
    )
    keras.utils.set_random_seed(SEED)
    base = keras.applications.MobileNet(weights=weights, alpha=0.25, include_top=False, input_shape=(size, size, 3))
    base.trainable = False
    inputs = keras.Input((size, size, 3))
    x = keras.applications.mobilenet.preprocess_input(inputs)
    x = base(x, training=False)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dropout(0.2)(x)
    model = keras.Model(inputs, keras.layers.Dense(1)(x))
    loss, metrics = keras.losses.BinaryCrossentropy(from_logits=True), [keras.metrics.BinaryAccuracy(threshold=0.0)]
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=loss, metrics=metrics)
    model.fit(train_ds, epochs=head_epochs, validation_data=val_ds, verbose=2)
    base.trainable = True
    model.compile(optimizer=keras.optimizers.Adam(1e-5), loss=loss, metrics=metrics)
    model.fit(train_ds, epochs=head_epochs + fine_tune_epochs, initial_epoch=head_epochs, validation_data=val_ds, verbose=2)
    model.save(Path(os.environ["PLAIN_OUT"]) / "model.keras")


def train_overrides(data: Path, size: int, args, weights: str, out: Path) -> list[str]:
    return [
        "dataset=image_folder", f"dataset.path={data}", f"dataset.image_size=[{size},{size}]",
        f"dataset.batch_size={BATCH_SIZE}", f"dataset.validation_split={VALIDATION_SPLIT}", "dataset.test_split=0",
        "base_model=mobilenet", "base_model.alpha=0.25", f"base_model.weights={weights}",
        f"schedule.head.epochs={args.head_epochs}", "schedule.head.lr=1e-3",
        f"schedule.fine_tune.epochs={args.fine_tune_epochs}", "schedule.fine_tune.lr=1e-5", "schedule.fine_tune.patience=null",
        "baseline.estimator=null", f"trainer.seed={SEED}", "trainer.verbose=2",
        f"paths.data_dir={out / 'data'}", f"hydra.run.dir={out}",
    ]


def generated_photos(folder: Path, n: int = 400) -> Path:
    return write_photos(folder, n, 160)


VARIANTS = {  # what each train.py run adds to the plain script's settings
    "images_no_logger": ["schedule.head.cache_features=false", "logger=none"],
    "images_tensorboard": ["schedule.head.cache_features=false"],
    "default": [],
}
LABELS = {
    "plain": "plain Keras script (keras.io recipe)",
    "images_no_logger": "`train.py`, phase 1 on images (`schedule.head.cache_features=false`), `logger=none`",
    "images_tensorboard": "`train.py`, phase 1 on images, TensorBoard",
    "default": "`train.py` as configured by default (cached phase 1), TensorBoard",
}
TARGET = 1.10  # train.py at most this many times the plain script's wall time


def compare_runs(args: argparse.Namespace, tmp: Path, env: dict) -> dict:
    """Seconds of the plain script and of each train.py variant, each a fresh process, in that order."""
    real = CATS_DOGS.is_dir() and MOBILENET_WEIGHTS.is_file()
    if real:
        (tmp / "keras_home" / "models").mkdir(parents=True)
        shutil.copy(MOBILENET_WEIGHTS, tmp / "keras_home" / "models" / MOBILENET_WEIGHTS.name)
        env["KERAS_HOME"] = str(tmp / "keras_home")
    data = CATS_DOGS if real else generated_photos(tmp / "photos")
    weights = "imagenet" if real else "null"
    plain_weights = "imagenet" if real else "None"
    (tmp / "plain").mkdir()
    seconds = {"plain": timed_command([sys.executable, __file__, "--plain", str(data), str(args.size), str(args.head_epochs),
                                       str(args.fine_tune_epochs), plain_weights], {**env, "PLAIN_OUT": str(tmp / "plain")}, tmp)}
    for name, extra in VARIANTS.items():
        out = tmp / name
        seconds[name] = timed_command([sys.executable, str(TRAIN), *train_overrides(data, args.size, args, weights, out), *extra],
                                      env, tmp)
    return {"real_data": real, "head_epochs": args.head_epochs, "fine_tune_epochs": args.fine_tune_epochs,
            "size": args.size, "batch_size": BATCH_SIZE, "seconds": seconds}


def cli_startup(args: argparse.Namespace, tmp: Path, env: dict) -> dict:
    """Each command's wall times, and whether train.py's imports TensorFlow."""
    probe = ("import runpy, sys; sys.argv = [sys.argv[1], *sys.argv[2:]]\n"
             "try: runpy.run_path(sys.argv[0], run_name='__main__')\n"
             "except SystemExit: pass\n"
             "print('tensorflow' in sys.modules, file=sys.stderr)")
    found = {}
    for flags in (["--help"], ["--cfg", "job"]):
        times = [timed_command([sys.executable, str(TRAIN), *flags], env, tmp) for _ in range(args.repeats)]
        imported = subprocess.run([sys.executable, "-c", probe, str(TRAIN), *flags], env=env, cwd=tmp,
                                  capture_output=True, text=True).stderr.strip().splitlines()[-1]
        found[" ".join(flags)] = {"seconds": times, "imports_tensorflow": imported == "True"}
    found["import tensorflow"] = {"seconds": [timed_command([sys.executable, "-c", "import tensorflow"], env, tmp)
                                              for _ in range(args.repeats)]}
    return found


def render(record: dict) -> dict[str, str]:
    """docs/benchmarks.md's overhead table and start-up sentence (the table, which says on what, only when the runs were measured)."""
    startup = record["startup"]
    help_s, job_s = (statistics.median(startup[c]["seconds"]) for c in ("--help", "--cfg job"))
    importing = [f"`{c}`" for c in ("--help", "--cfg job") if startup[c]["imports_tensorflow"]]
    rendered = {"overhead:startup": (
        f"Median of {len(startup['--help']['seconds'])}: `train.py --help` {help_s:.2f} s, `train.py --cfg job` {job_s:.2f} s; "
        f"{' and '.join(importing) + ' imports' if importing else 'neither imports'} TensorFlow (`python -c \"import tensorflow\"` alone: "
        f"{statistics.median(startup['import tensorflow']['seconds']):.2f} s).")}
    if "runs" in record:
        runs = record["runs"]
        seconds = runs["seconds"]
        worst = max(seconds[name] / seconds["plain"] for name in VARIANTS)
        data = ("MobileNet 0.25 with ImageNet weights, the shared cats_dogs photos" if runs["real_data"]
                else "MobileNet 0.25 with random weights, generated photos (the shared data was absent)")
        rendered["overhead"] = "\n".join([
            f"{data} at {runs['size']}x{runs['size']}, {runs['head_epochs']} head + {runs['fine_tune_epochs']} "
            f"fine-tuning epochs, batch {runs['batch_size']}, no baseline estimator, no test split:",
            "",
            "| | wall time | vs plain Keras |",
            "|---|---|---|",
            *(f"| {LABELS[name]} | {value:.1f} s | {value / seconds['plain']:.2f}x |" for name, value in seconds.items()),
            "",
            f"{'Within' if worst <= TARGET else 'Over'} the target of {TARGET:.2f}x: the slowest `train.py` variant took "
            f"{worst:.2f}x the plain script's time. " + measured_by("overhead", record),
        ])
    return rendered


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--plain":
        data, size, head, fine, weights = sys.argv[2:7]
        plain_keras(data, int(size), int(head), int(fine), None if weights == "None" else weights)
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--head-epochs", type=int, default=3)
    parser.add_argument("--fine-tune-epochs", type=int, default=2)
    parser.add_argument("--size", type=int, default=224, help="image side (the shared MobileNet weights are the 224 set)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of --help, --cfg job and `import tensorflow`")
    parser.add_argument("--startup-only", action="store_true", help="only time --help and --cfg job")
    add_render_option(parser, "overhead")
    args = parser.parse_args()
    if args.render:
        render_docs("overhead", render)
        return
    started = time.perf_counter()
    python_path = os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": python_path, "TF_CPP_MIN_LOG_LEVEL": "2"}
    with tempfile.TemporaryDirectory() as tmp:
        env["TRANSFERLAB_DATA_DIR"] = str(Path(tmp) / "data")
        results = {"startup": cli_startup(args, Path(tmp), env)}
        if not args.startup_only:
            results["runs"] = compare_runs(args, Path(tmp), env)
    record = stamp(results, started)
    print("\n\n".join(render(record).values()))
    if documented(parser, args):
        save("overhead", record, render)


if __name__ == "__main__":
    main()
