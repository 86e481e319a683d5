"""Benchmark the head phase: cached base features against images every epoch, and the input pipeline.

Runs, side by side on the same generated photos, base (MobileNetV2 at 128x128, random weights: the
compute is what matters), head, epochs and seed:
  1. one feature-extraction pass of the frozen base over the training set (the floor);
  2. phase 1 with cached features (`schedule.head.cache_features=true`);
  3. phase 1 on images every epoch (`schedule.head.cache_features=false`);
  4. images per second through the input pipeline alone, and through pipeline + model.
Prints the wall-time ratios and both validation accuracies.

    python scripts/bench_phase1.py [--images 320] [--epochs 10] [--size 128]
"""

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np


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


def config(data: Path, out: Path, size: int, epochs: int, cache: bool):
    from transferlab.config import (
        BaselineConfig, BaseModelConfig, DatasetConfig, ExperimentConfig, FineTuneConfig, HeadPhaseConfig,
        LoggerConfig, PathsConfig, ScheduleConfig, TrainerConfig,
    )

    return ExperimentConfig(
        name="bench",
        dataset=DatasetConfig(name="bench", path=str(data), image_size=[size, size], batch_size=32,
                              validation_split=0.2, test_split=0.05),
        base_model=BaseModelConfig(name="mobilenet_v2", weights=None),
        schedule=ScheduleConfig(head=HeadPhaseConfig(epochs=epochs, lr=1e-2, cache_features=cache),
                                fine_tune=FineTuneConfig(epochs=0)),
        trainer=TrainerConfig(seed=0, verbose=0),
        logger=LoggerConfig(tensorboard=False),
        baseline=BaselineConfig(estimator=None),
        paths=PathsConfig(data_dir=str(out / "data"), output_dir=str(out / ("cached" if cache else "images"))),
    )


def pipeline_throughput(cfg) -> tuple[float, float]:
    """Images per second through decode+resize+batch alone, and through pipeline + frozen model."""
    import transferlab.training as training
    from transferlab.data import build_pipelines
    from transferlab.models import TaskSpec, build_model

    plan = training.plan_data(cfg)
    size = tuple(cfg.dataset.image_size)
    cfg.dataset.cache = False
    data = build_pipelines(plan, cfg.dataset, size, cfg.augmentation, 0)
    model = build_model(cfg.base_model, cfg.head, TaskSpec(size, 2))
    batches = data.train_from(0).take(data.steps_per_epoch)
    for _ in batches:  # warm up the file cache and tf.data
        pass
    start = time.perf_counter()
    for _ in batches:
        pass
    alone = len(plan.train) / (time.perf_counter() - start)
    model.predict(batches, verbose=0)
    start = time.perf_counter()
    model.predict(batches, verbose=0)
    return alone, len(plan.train) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=320)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--size", type=int, default=128)
    args = parser.parse_args()

    import transferlab
    from transferlab.features import extract, split_model

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        data = write_photos(out / "photos", args.images, args.size)
        runs = {cache: transferlab.train(config(data, out, args.size, args.epochs, cache)) for cache in (True, False)}
        cached, images = (runs[c].phases["head"] for c in (True, False))
        alone, with_model = pipeline_throughput(config(data, out, args.size, args.epochs, False))

        from transferlab.models import load_trained_model

        extractor, _ = split_model(load_trained_model(str(out / "images" / "model.keras")))
        import transferlab.training as training
        from transferlab.data import build_pipelines

        cfg = config(data, out, args.size, args.epochs, True)
        pipes = build_pipelines(training.plan_data(cfg), cfg.dataset, (args.size, args.size), cfg.augmentation, 0)
        extract(extractor, pipes.train_in_order)  # warm-up and cache fill
        start = time.perf_counter()
        extract(extractor, pipes.train_in_order)
        one_pass = time.perf_counter() - start

    n_train = runs[True].counts["train"]
    print(f"head phase, {args.epochs} epochs, MobileNetV2 at {args.size}x{args.size}, {n_train} training images, 2 CPU cores")
    print(f"  one feature-extraction pass over the training set : {one_pass:7.2f} s")
    print(f"  phase 1 on cached features (incl. the extraction)  : {cached['wall_time_s']:7.2f} s  "
          f"= {cached['wall_time_s'] / one_pass:.2f}x one pass (target <= 1.3x)")
    print(f"  phase 1 on images every epoch                      : {images['wall_time_s']:7.2f} s  "
          f"= {images['wall_time_s'] / cached['wall_time_s']:.1f}x the cached phase")
    print(f"  best validation accuracy, cached / images          : {cached['best']['val_accuracy']:.4f} / "
          f"{images['best']['val_accuracy']:.4f}")
    print(f"  input pipeline alone                                : {alone:7.0f} images/s")
    print(f"  input pipeline + frozen model (inference)           : {with_model:7.0f} images/s")


if __name__ == "__main__":
    main()
