"""Benchmark the head phase: cached base features against images every epoch, and the input pipeline.

Runs, side by side on the same photos, base, head, epochs and seed:
  1. one feature-extraction pass of the frozen base over the training set (the floor), measured
     cold (fresh pipeline and extractor: decoding and tracing included, what any pass pays once)
     and warm (decoded images in memory, function traced: the base's compute alone), three times;
  2. phase 1 with cached features (`schedule.head.cache_features=true`), checkpoints included, as
     a first run of the two-phase recipe pays it (extracting the training and validation
     features; one fine-tuning epoch follows, outside the measured phase), three times, each
     right after an extraction pass, so that each ratio compares two neighbouring measurements;
  3. phase 1 on images every epoch (`schedule.head.cache_features=false`);
  4. phase 1 with cached features again, as a rerun or a sweep's next job: the features come from
     the on-disk cache (`paths.feature_cache`) the first cached run filled;
  5. images per second through the input pipeline alone, and through pipeline + model.
Prints the wall-time ratios (each pair, since two cores shared with other work vary by tens of
percent from one minute to the next) and the validation accuracies.

Settings (`--settings`, comma-separated): `real` is the shared real data beside the checkout
(`../shared/data/`), the 400 cats_dogs photos and MobileNet (alpha 0.25) with its real ImageNet
weights at 224x224, so the accuracies mean something; a number is that many generated two-class
photos and MobileNetV2 at `--size` with random weights whose BatchNorm statistics are set from the
photos (`calibrate_random_base`), so the compute is MobileNetV2's and the features still tell the
classes apart.

    python benchmarks/phase1.py                   # real, 1600 and 3200 photos: writes benchmarks/results/phase1.json and the docs
    python benchmarks/phase1.py --settings 320    # a quick look (printed, not recorded)
    python benchmarks/phase1.py --render          # only rewrite the docs from the record
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from statistics import median
from typing import TYPE_CHECKING

import numpy as np
from records import add_render_option, documented, measured_by, render_docs, save, stamp
from timing import paired, ratios, samples, span

if TYPE_CHECKING:
    from transferlab.reporting.summary import RunSummary

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
CATS_DOGS = SHARED_DATA / "cats_dogs"
MOBILENET_WEIGHTS = SHARED_DATA / "weights" / "mobilenet_2_5_224_tf_no_top.h5"
CALIBRATED = "mobilenet_v2_calibrated.weights.h5"  # the synthetic run's base, written by calibrate_random_base
SETTINGS = ("real", "1600", "3200")  # the documented run


def write_photos(folder: Path, n: int, size: int) -> Path:
    """Two classes of noisy photos (a bright band top or bottom), as JPEG files."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for label, name in enumerate(("up", "down")):
        (folder / name).mkdir(parents=True, exist_ok=True)
        for i in range(n // 2):
            pixels = rng.integers(0, 120, (size + 32, size + 48, 3))
            rows = slice(0, size // 2) if label == 0 else slice(size // 2, size)
            pixels[rows] += 100
            Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(folder / name / f"{i}.jpg", quality=90)
    return folder


def calibrate_random_base(photos: Path, size: int, path: Path) -> Path:
    """MobileNetV2 with random weights and BatchNorm statistics from 64 of the photos, as a weights file.

    Straight from initialisation its BatchNorm layers hold mean 0 and variance 1, under which the
    pooled features shrink to about 1e-13: every head stays at chance, and comparing accuracies
    would compare nothing. One pass in training mode with momentum 0 sets each layer's moving
    statistics from the photos; the features stay random, but informative.
    """
    import keras
    from PIL import Image

    keras.utils.set_random_seed(0)
    base = keras.applications.MobileNetV2(include_top=False, weights=None, input_shape=(size, size, 3))
    files = sorted(photos.rglob("*.jpg"))
    sample = files[:: max(1, len(files) // 64)][:64]
    images = np.stack([np.asarray(Image.open(f).convert("RGB").resize((size, size)), dtype="float32") for f in sample])
    for layer in base.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.0
    base(keras.applications.mobilenet_v2.preprocess_input(images), training=True)
    base.save_weights(path)
    return path


def use_real_weights(keras_home: Path) -> None:
    """Serve Keras' `weights="imagenet"` download of MobileNet 0.25 from the shared file, offline."""
    (keras_home / "models").mkdir(parents=True, exist_ok=True)
    shutil.copy(MOBILENET_WEIGHTS, keras_home / "models" / MOBILENET_WEIGHTS.name)
    os.environ["KERAS_HOME"] = str(keras_home)  # read when Keras is first imported


def config(data: Path, out: Path, size: int, epochs: int, cache: bool, real: bool, name: str = "", disk: bool = True,
           fine_tune: int = 0):
    from transferlab.config.schema import (
        BaselineConfig,
        BaseModelConfig,
        DatasetConfig,
        ExperimentConfig,
        FineTuneConfig,
        HeadPhaseConfig,
        LoggerConfig,
        PathsConfig,
        ScheduleConfig,
        TrainerConfig,
    )

    base = (BaseModelConfig(name="mobilenet", weights="imagenet", alpha=0.25) if real
            else BaseModelConfig(name="mobilenet_v2", weights=str(out / CALIBRATED)))
    return ExperimentConfig(
        name="bench",
        dataset=DatasetConfig(name="bench", path=str(data), image_size=[size, size], batch_size=32,
                              validation_split=0.15 if real else 0.2, test_split=0.25 if real else 0.05),
        base_model=base,
        schedule=ScheduleConfig(head=HeadPhaseConfig(epochs=epochs, lr=1e-3 if real else 1e-2, cache_features=cache),
                                fine_tune=FineTuneConfig(epochs=fine_tune, unfreeze="20")),
        trainer=TrainerConfig(seed=0, verbose=0),
        logger=LoggerConfig(tensorboard=False),
        baseline=BaselineConfig(estimator=None),
        paths=PathsConfig(data_dir=str(out / "data"), output_dir=str(out / (name or ("cached" if cache else "images"))),
                          feature_cache="features_cache" if disk else None),
    )


def pipelines(cfg, cache: bool = True):
    from transferlab.data.images import build_pipelines
    from transferlab.modalities.images import ImageModality

    cfg.dataset.cache = cache
    size = tuple(cfg.dataset.image_size)
    return build_pipelines(ImageModality().plan(cfg), cfg.dataset, size, cfg.augmentation, 0)


def pipeline_throughput(cfg, model) -> tuple[float, float]:
    """Images per second through decode+resize+batch alone, and through pipeline + frozen model."""
    data = pipelines(cfg, cache=False)
    batches = data.train_from(0).take(data.steps_per_epoch)
    n = len(data.plan.train)
    for _ in batches:  # warm up the file cache and tf.data
        pass
    start = time.perf_counter()
    for _ in batches:
        pass
    alone = n / (time.perf_counter() - start)
    model.predict(batches, verbose=0)
    start = time.perf_counter()
    model.predict(batches, verbose=0)
    return alone, n / (time.perf_counter() - start)


def extraction_pass(model, cfg) -> tuple[float, float]:
    """Seconds of one pass of the frozen base over the training set: cold (fresh), then warm."""
    from transferlab.features.store import extract, split_model

    extractor, _ = split_model(model)
    data = pipelines(cfg)
    times = []
    for _ in range(2):
        start = time.perf_counter()
        extract(extractor, data.train_in_order)
        times.append(time.perf_counter() - start)
    return times[0], times[1]


def head_phase(summary: RunSummary) -> dict:
    """What the record keeps of a run's head phase, with each epoch's time from its history.csv."""
    phase = summary.phases["head"]
    with open(Path(summary.run_dir) / "history.csv", newline="") as history:
        epochs = [float(row["epoch_time_s"]) for row in csv.DictReader(history) if row["phase"] == "head"]
    return {"wall_time_s": phase["wall_time_s"], "feature_extraction_s": phase["feature_extraction_s"],
            "best_val_accuracy": phase["best"]["val_accuracy"], "epoch_times_s": epochs}


def measure(setting: str, args: argparse.Namespace, out: Path) -> dict:
    """One setting, measured in an order that puts a cold extraction pass right before each cached first run."""
    import transferlab
    from transferlab.models.saved import load_trained_model

    real = setting == "real"
    size = 224 if real else args.size
    data = CATS_DOGS if real else write_photos(out / "photos", int(setting), size)
    if not real:
        calibrate_random_base(data, size, out / CALIBRATED)

    def phase1(cache: bool, name: str, disk: bool = True, fine_tune: int = 0) -> RunSummary:
        return transferlab.train(config(data, out, size, args.epochs, cache, real, name, disk, fine_tune))

    def extraction() -> tuple[float, float]:
        return extraction_pass(model, config(data, out, size, args.epochs, True, real))

    images = phase1(False, "images")
    model = load_trained_model(str(out / "images" / "model.keras"))
    passes = [extraction()]
    # First runs as the recipe runs them, with fine-tuning after (one epoch of the top 20 layers).
    first = [phase1(True, "cached", fine_tune=1)]  # fills the on-disk cache
    rerun = phase1(True, "rerun")
    for sample in ("again", "third"):
        passes.append(extraction())
        first.append(phase1(True, f"cached_{sample}", disk=False, fine_tune=1))
    alone, with_model = pipeline_throughput(config(data, out, size, args.epochs, False, real), model)
    return {"setting": setting, "size": size, "epochs": args.epochs, "counts": first[0].counts,
            "cold_pass_s": [p[0] for p in passes], "warm_pass_s": [p[1] for p in passes],
            "first_runs": [head_phase(s) for s in first], "rerun": head_phase(rerun), "images": head_phase(images),
            "pipeline_images_per_s": alone, "pipeline_and_model_images_per_s": with_model}


def title(result: dict) -> str:
    if result["setting"] == "real":
        return "Real photos: MobileNet 0.25 with its ImageNet weights, the shared cats_dogs photos"
    return (f"{int(result['setting']):,} generated photos (`--settings {result['setting']}`): MobileNetV2 with random "
            "weights whose BatchNorm statistics are set from 64 of the photos")


def setting_text(result: dict) -> str:
    """One setting's table and what the phases' own numbers say."""
    counts, first, rerun, images = result["counts"], result["first_runs"], result["rerun"], result["images"]
    cold, warm = result["cold_pass_s"], result["warm_pass_s"]
    share = (counts["train"] + counts["validation"]) / counts["train"]
    times = [r["wall_time_s"] for r in first]
    training = [r["wall_time_s"] - r["feature_extraction_s"] for r in first]
    rest = [t - sum(r["epoch_times_s"]) for t, r in zip(training, first)]
    accuracies = [round(r["best_val_accuracy"], 3) for r in [*first, rerun, images]]
    if len(set(accuracies)) == 1:
        accuracy = (f"{accuracies[0]:.3f} for every variant (the three cached first runs, the rerun and the phase on "
                    "images): caching changes the time, not the result")
    else:
        accuracy = (f"{samples(accuracies[:3], 3)} for the cached first runs, {accuracies[3]:.3f} for the rerun and "
                    f"{accuracies[4]:.3f} for the phase on images")
    return "\n".join([
        f"**{title(result)}**, {result['size']}x{result['size']}, {counts['train']:,} training and "
        f"{counts['validation']:,} validation images, {result['epochs']} head epochs. Three first runs, each paired "
        "with a cold extraction pass measured just before it:",
        "",
        "| | seconds | ratio per pair (median) |",
        "|---|---|---|",
        f"| one extraction pass over the training set, cold (fresh pipeline and traced function) | {samples(cold)} | 1x (the floor) |",
        f"| the same pass, warm (images decoded, function traced: the base's compute alone) | {samples(warm)} | |",
        f"| phase 1 on cached features, first run (extracts training and validation features) | {samples(times)} | "
        f"**{paired(times, cold)}** the cold pass |",
        f"| of which extracting training and validation features | {samples([r['feature_extraction_s'] for r in first])} | |",
        f"| of which training the head, checkpoints included | {samples(training)} | |",
        "| the first run against a cold pass over training + validation images (all phase 1 must see once) | | "
        f"**{paired(times, [c * share for c in cold])}** |",
        f"| phase 1 rerun or a sweep's next job (features from `paths.feature_cache`) | {rerun['wall_time_s']:.2f} | "
        f"**{paired([rerun['wall_time_s']], cold[1:2])}** the cold pass measured after it |",
        f"| phase 1 on images every epoch | {images['wall_time_s']:.1f} | "
        f"{span(ratios([images['wall_time_s']] * 3, times), 1)}x the cached first run |",
        "",
        f"Training the head: its first epoch, which traces Keras' training and validation functions, took "
        f"{span([r['epoch_times_s'][0] for r in first], 2, 's')}; each later epoch "
        f"{span([median(r['epoch_times_s'][1:]) for r in first], 3, 's')} (median); the rest (checkpoints, the "
        f"phase's bookkeeping) {span(rest, 2, 's')}. Best validation accuracy: {accuracy}. The input pipeline alone "
        f"delivers {result['pipeline_images_per_s']:,.0f} images/s, pipeline and frozen model "
        f"{result['pipeline_and_model_images_per_s']:,.0f} images/s.",
    ])


def render(record: dict) -> dict[str, str]:
    """docs/benchmarks.md's head-phase section: each setting, then the target against all of them."""
    results = record["settings"]

    def target(result: dict) -> str:
        counts, cold = result["counts"], result["cold_pass_s"]
        times = [r["wall_time_s"] for r in result["first_runs"]]
        share = (counts["train"] + counts["validation"]) / counts["train"]
        over_train = median(ratios(times, cold))
        return (f"{'met' if over_train <= 1.3 else 'missed'} at {counts['train']:,} training images "
                f"({'real' if result['setting'] == 'real' else 'generated'} photos: median {over_train:.2f}x, and "
                f"{median(ratios(times, [c * share for c in cold])):.2f}x a pass over training and validation images)")

    return {"phase1": "\n\n".join([
        *(setting_text(r) for r in results),
        "The target, a first cached phase 1 within 1.3x one cold extraction pass over the training set, is "
        + "; ".join(target(r) for r in results) + ". " + measured_by("phase1", record),
    ])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--settings", default=",".join(SETTINGS),
                        help="comma-separated: `real` (the shared photos and weights), or a number of generated photos")
    parser.add_argument("--epochs", type=int, default=10, help="head epochs")
    parser.add_argument("--size", type=int, default=128, help="image side of the generated photos (real ones: 224)")
    add_render_option(parser, "phase1")
    args = parser.parse_args()
    if args.render:
        render_docs("phase1", render)
        return
    settings = [s.strip() for s in args.settings.split(",") if s.strip()]
    if unknown := [s for s in settings if s != "real" and not s.isdigit()]:
        parser.error(f"unknown settings {unknown}: `real` or a number of generated photos")
    if "real" in settings and not (CATS_DOGS.is_dir() and MOBILENET_WEIGHTS.is_file()):
        sys.exit(f"error: `real` needs the shared data beside the checkout ({SHARED_DATA}); "
                 "without it, run `--settings 1600`")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        if "real" in settings:
            use_real_weights(Path(tmp) / "keras_home")  # before Keras is first imported
        results = [measure(setting, args, Path(tmp) / setting) for setting in settings]
    record = stamp({"settings": results}, started)
    print(render(record)["phase1"])
    if documented(parser, args):
        save("phase1", record, render)


if __name__ == "__main__":
    main()
