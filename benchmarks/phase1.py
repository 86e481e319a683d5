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

Data and base: with the shared real data beside the checkout (`../shared/data/`), the 400
cats_dogs photos and MobileNet (alpha 0.25) with its real ImageNet weights at 224x224, so the
accuracies mean something; otherwise (or with `--synthetic`) generated two-class photos and
MobileNetV2 at `--size` with random weights whose BatchNorm statistics are set from the photos
(`calibrate_random_base`), so the compute is MobileNetV2's and the features still tell the classes
apart.

    python benchmarks/phase1.py [--synthetic] [--images 320] [--epochs 10] [--size 128]
"""

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from timing import paired, samples

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
CATS_DOGS = SHARED_DATA / "cats_dogs"
MOBILENET_WEIGHTS = SHARED_DATA / "weights" / "mobilenet_2_5_224_tf_no_top.h5"
CALIBRATED = "mobilenet_v2_calibrated.weights.h5"  # the synthetic run's base, written by calibrate_random_base


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--synthetic", action="store_true", help="generated photos and a random MobileNetV2")
    parser.add_argument("--images", type=int, default=320, help="generated photos (with --synthetic)")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--size", type=int, default=128, help="image side (with --synthetic; real data: 224)")
    args = parser.parse_args()
    real = not args.synthetic and CATS_DOGS.is_dir() and MOBILENET_WEIGHTS.is_file()
    size = 224 if real else args.size

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        if real:
            use_real_weights(out / "keras_home")
        data = CATS_DOGS if real else write_photos(out / "photos", args.images, size)
        if not real:
            calibrate_random_base(data, size, out / CALIBRATED)

        import transferlab
        from transferlab.models.saved import load_trained_model
        from transferlab.reporting.summary import RunSummary

        def phase1(cache: bool, name: str, disk: bool = True, fine_tune: int = 0) -> tuple[dict, RunSummary]:
            summary = transferlab.train(config(data, out, size, args.epochs, cache, real, name, disk, fine_tune))
            return summary.phases["head"], summary

        images, _ = phase1(False, "images")
        model = load_trained_model(str(out / "images" / "model.keras"))
        passes = [extraction_pass(model, config(data, out, size, args.epochs, True, real))]
        # First runs as the recipe runs them, with fine-tuning after (one epoch of the top 20 layers).
        first = [phase1(True, "cached", fine_tune=1)]  # fills the on-disk cache
        rerun, _ = phase1(True, "rerun")
        for sample in ("again", "third"):
            passes.append(extraction_pass(model, config(data, out, size, args.epochs, True, real)))
            first.append(phase1(True, f"cached_{sample}", disk=False, fine_tune=1))
        alone, with_model = pipeline_throughput(config(data, out, size, args.epochs, False, real), model)

    report(args, real, size, first, rerun, images, passes, alone, with_model)


def report(args, real: bool, size: int, first: list, rerun: dict, images: dict, passes: list, alone: float,
           with_model: float) -> None:
    base = ("MobileNet 0.25, ImageNet weights, cats_dogs photos" if real
            else "MobileNetV2, random weights (BatchNorm calibrated), generated photos")
    counts = first[0][1].counts
    share = (counts["train"] + counts["validation"]) / counts["train"]
    cold, warm = [p[0] for p in passes], [p[1] for p in passes]
    times = [phase["wall_time_s"] for phase, _ in first]
    print(f"head phase, {args.epochs} epochs, {base}, {size}x{size}, {counts['train']} training and "
          f"{counts['validation']} validation images; each first run is paired with the pass measured just before it")
    print(f"  one feature-extraction pass over the training set, cold   : {samples(cold)} s")
    print(f"  one feature-extraction pass over the training set, warm   : {samples(warm)} s")
    print(f"  phase 1 on cached features, first run (extraction incl.)  : {samples(times)} s")
    print(f"    of which extracting training and validation features   : "
          f"{samples([phase['feature_extraction_s'] for phase, _ in first])} s")
    print(f"    of which training the head (checkpoints incl.)         : "
          f"{samples([phase['wall_time_s'] - phase['feature_extraction_s'] for phase, _ in first])} s")
    print(f"  phase 1 first run / cold pass over the training set       : {paired(times, cold)} (target <= 1.3x)")
    print(f"  phase 1 first run / warm pass over the training set       : {paired(times, warm)}")
    print(f"  phase 1 first run / cold pass over training + validation  : {paired(times, [c * share for c in cold])}"
          "  (every image phase 1 needs, once)")
    print(f"  phase 1 rerun, features from the on-disk cache            : {rerun['wall_time_s']:7.2f} s  "
          f"= {paired([rerun['wall_time_s']], cold[1:2])} the cold pass measured right after it")
    print(f"  phase 1 on images every epoch                             : {images['wall_time_s']:7.2f} s  "
          f"= {images['wall_time_s'] / max(times):.1f}x to {images['wall_time_s'] / min(times):.1f}x the cached first run")
    accuracies = [phase for phase, _ in first] + [rerun, images]
    print("  best validation accuracy, cached first runs / rerun / images: "
          + " / ".join(f"{phase['best']['val_accuracy']:.4f}" for phase in accuracies))
    print(f"  input pipeline alone                                      : {alone:7.0f} images/s")
    print(f"  input pipeline + frozen model (inference)                 : {with_model:7.0f} images/s")


if __name__ == "__main__":
    main()
