"""Benchmark the head phase: cached base features against images every epoch, and the input pipeline.

Runs, side by side on the same photos, base, head, epochs and seed:
  1. one feature-extraction pass of the frozen base over the training set (the floor), measured
     cold (fresh pipeline and extractor: decoding and tracing included, what any pass pays once)
     and warm (decoded images in memory, function traced: the base's compute alone), twice each;
  2. phase 1 with cached features (`schedule.head.cache_features=true`), checkpoints included, as
     a first run pays it (extracting the training and validation features), twice;
  3. phase 1 on images every epoch (`schedule.head.cache_features=false`);
  4. phase 1 with cached features again, as a rerun or a sweep's next job: the features come from
     the on-disk cache (`paths.feature_cache`) the first cached run filled;
  5. images per second through the input pipeline alone, and through pipeline + model.
Prints the wall-time ratios (each sample, since two cores shared with other work vary by tens of
percent from one minute to the next) and the validation accuracies.

Data and base: with the shared real data beside the checkout (`../shared/data/`), the 400
cats_dogs photos and MobileNet (alpha 0.25) with its real ImageNet weights at 224x224, so the
accuracies mean something; otherwise (or with `--synthetic`) generated two-class photos and
MobileNetV2 with random weights at `--size` (the compute is what matters there).

    python scripts/bench_phase1.py [--synthetic] [--images 320] [--epochs 10] [--size 128]
"""

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
CATS_DOGS = SHARED_DATA / "cats_dogs"
MOBILENET_WEIGHTS = SHARED_DATA / "weights" / "mobilenet_2_5_224_tf_no_top.h5"


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


def use_real_weights(keras_home: Path) -> None:
    """Serve Keras' `weights="imagenet"` download of MobileNet 0.25 from the shared file, offline."""
    (keras_home / "models").mkdir(parents=True, exist_ok=True)
    shutil.copy(MOBILENET_WEIGHTS, keras_home / "models" / MOBILENET_WEIGHTS.name)
    os.environ["KERAS_HOME"] = str(keras_home)  # read when Keras is first imported


def config(data: Path, out: Path, size: int, epochs: int, cache: bool, real: bool, name: str = "", disk: bool = True):
    from transferlab.config import (
        BaselineConfig, BaseModelConfig, DatasetConfig, ExperimentConfig, FineTuneConfig, HeadPhaseConfig,
        LoggerConfig, PathsConfig, ScheduleConfig, TrainerConfig,
    )

    base = (BaseModelConfig(name="mobilenet", weights="imagenet", alpha=0.25) if real
            else BaseModelConfig(name="mobilenet_v2", weights=None))
    return ExperimentConfig(
        name="bench",
        dataset=DatasetConfig(name="bench", path=str(data), image_size=[size, size], batch_size=32,
                              validation_split=0.15 if real else 0.2, test_split=0.25 if real else 0.05),
        base_model=base,
        schedule=ScheduleConfig(head=HeadPhaseConfig(epochs=epochs, lr=1e-3 if real else 1e-2, cache_features=cache),
                                fine_tune=FineTuneConfig(epochs=0)),
        trainer=TrainerConfig(seed=0, verbose=0),
        logger=LoggerConfig(tensorboard=False),
        baseline=BaselineConfig(estimator=None),
        paths=PathsConfig(data_dir=str(out / "data"), output_dir=str(out / (name or ("cached" if cache else "images"))),
                          feature_cache="features_cache" if disk else None),
    )


def pipelines(cfg, cache: bool = True):
    import transferlab.training as training
    from transferlab.data import build_pipelines

    cfg.dataset.cache = cache
    size = tuple(cfg.dataset.image_size)
    return build_pipelines(training.plan_data(cfg), cfg.dataset, size, cfg.augmentation, 0)


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
    from transferlab.features import extract, split_model

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
    parser.add_argument("--synthetic", action="store_true", help="generated photos and MobileNetV2, random weights")
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

        import transferlab
        from transferlab.models import load_trained_model
        from transferlab.reporting import RunSummary

        def phase1(cache: bool, name: str, disk: bool = True) -> tuple[dict, RunSummary]:
            summary = transferlab.train(config(data, out, size, args.epochs, cache, real, name, disk))
            return summary.phases["head"], summary

        images, _ = phase1(False, "images")
        model = load_trained_model(str(out / "images" / "model.keras"))
        passes = [extraction_pass(model, config(data, out, size, args.epochs, True, real))]
        first = [phase1(True, "cached")]  # fills the on-disk cache
        rerun, _ = phase1(True, "rerun")
        passes.append(extraction_pass(model, config(data, out, size, args.epochs, True, real)))
        first.append(phase1(True, "cached_again", disk=False))
        alone, with_model = pipeline_throughput(config(data, out, size, args.epochs, False, real), model)

    report(args, real, size, first, rerun, images, passes, alone, with_model)


def report(args, real: bool, size: int, first: list, rerun: dict, images: dict, passes: list, alone: float,
           with_model: float) -> None:
    base = "MobileNet 0.25, ImageNet weights, cats_dogs photos" if real else "MobileNetV2, random weights, generated photos"
    counts = first[0][1].counts
    share = (counts["train"] + counts["validation"]) / counts["train"]
    cold, warm = (sorted(p[i] for p in passes) for i in (0, 1))
    times = sorted(phase["wall_time_s"] for phase, _ in first)
    print(f"head phase, {args.epochs} epochs, {base}, {size}x{size}, {counts['train']} training and "
          f"{counts['validation']} validation images")
    print(f"  one feature-extraction pass over the training set, cold   : {_samples(cold)} s")
    print(f"  one feature-extraction pass over the training set, warm   : {_samples(warm)} s")
    print(f"  phase 1 on cached features, first run (extraction incl.)  : {_samples(times)} s")
    for phase, _ in first:
        print(f"    of which extracting training and validation features   : {phase['feature_extraction_s']:7.2f} s")
    print(f"  phase 1 first run / cold pass over the training set       : {_ratios(times, cold)} (target <= 1.3x)")
    print(f"  phase 1 first run / warm pass over the training set       : {_ratios(times, warm)}")
    print(f"  phase 1 first run / cold pass over training + validation  : {_ratios(times, [c * share for c in cold])}"
          "  (every image phase 1 needs, once)")
    print(f"  phase 1 rerun, features from the on-disk cache            : {rerun['wall_time_s']:7.2f} s  "
          f"= {_ratios([rerun['wall_time_s']], cold)} the cold pass")
    print(f"  phase 1 on images every epoch                             : {images['wall_time_s']:7.2f} s  "
          f"= {images['wall_time_s'] / times[-1]:.1f}x to {images['wall_time_s'] / times[0]:.1f}x the cached first run")
    accuracies = [first[0][0], first[1][0], rerun, images]
    print("  best validation accuracy, cached / cached again / rerun / images: "
          + " / ".join(f"{phase['best']['val_accuracy']:.4f}" for phase in accuracies))
    print(f"  input pipeline alone                                      : {alone:7.0f} images/s")
    print(f"  input pipeline + frozen model (inference)                 : {with_model:7.0f} images/s")


def _samples(values: list[float]) -> str:
    return " and ".join(f"{v:.2f}" for v in values)


def _ratios(numerators: list[float], denominators: list[float]) -> str:
    """The range of ratios the samples allow: best case to worst case."""
    low, high = min(numerators) / max(denominators), max(numerators) / min(denominators)
    return f"{low:.2f}x to {high:.2f}x"

if __name__ == "__main__":
    main()
