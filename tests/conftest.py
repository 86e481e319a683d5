"""Shared fixtures: tiny image folders and base weights made on the fly, and ways to run the entry point."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
CONF_DIR = ROOT / "conf"
TRAIN_SCRIPT = ROOT / "scripts" / "train.py"
SHARED_DATA = ROOT.parent / "shared" / "data"


def write_class_images(folder: Path, n_per_class: int, classes=("cat", "dog"), size=16, seed=0, suffix=".png"):
    """Classes told apart by which horizontal band is bright, plus noise: learnable in a few steps."""
    rng = np.random.default_rng(seed)
    for label, name in enumerate(classes):
        (folder / name).mkdir(parents=True, exist_ok=True)
        for i in range(n_per_class):
            pixels = rng.integers(0, 60, size=(size, size, 3))
            band = slice(label * size // len(classes), (label + 1) * size // len(classes))
            pixels[band] += 180
            Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(folder / name / f"{name}_{i}{suffix}")
    return folder


@pytest.fixture(scope="session")
def image_folder(tmp_path_factory) -> Path:
    """Two classes, 14 images each, in class subfolders (split by fractions)."""
    return write_class_images(tmp_path_factory.mktemp("images") / "pets", 14)


@pytest.fixture(scope="session")
def base_weights(tmp_path_factory) -> Path:
    """A digits_cnn base saved the way a user's own weights file would be."""
    import keras

    from transferlab.models.digits import digits_cnn

    keras.utils.set_random_seed(0)
    path = tmp_path_factory.mktemp("weights") / "tiny_base.weights.h5"
    digits_cnn(input_shape=(16, 16, 3)).save_weights(path)
    return path


def tiny_overrides(data: Path, out: Path, weights: Path | str, *extra: str) -> list[str]:
    """A complete small experiment: the tiny folder, the digits_cnn base at 16x16, 2+2 epochs (the head phase
    trained by SGD, so its epochs, early stopping and resume are exercised; the solved head has its own tests)."""
    return [
        "dataset=image_folder",
        f"dataset.path={data}",
        "dataset.image_size=[16,16]",
        "dataset.batch_size=8",
        "dataset.validation_split=0.25",
        "dataset.test_split=0.25",
        "base_model=digits_cnn",
        f"base_model.weights={weights}",
        "schedule=two_phase",
        "schedule.head.epochs=2",
        "schedule.head.lr=1e-2",
        "schedule.head.solver=sgd",
        "schedule.fine_tune.epochs=2",
        "schedule.fine_tune.lr=1e-3",
        "trainer.verbose=0",
        f"paths.output_dir={out}",
        f"paths.data_dir={out.parent / 'data'}",
        *extra,
    ]


def compose_config(overrides: list[str]):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=overrides)


def config_error_line(overrides: list[str]) -> str:
    """What the command line prints after `error:` for a config that composition or validation refuses."""
    from hydra.errors import HydraException

    from transferlab.cli import describe_config_error
    from transferlab.config.convert import to_experiment_config
    from transferlab.errors import ConfigError

    try:
        to_experiment_config(compose_config(overrides))
    except HydraException as exc:
        return describe_config_error(exc)
    except ConfigError as exc:
        return str(exc)
    raise AssertionError(f"the config {overrides} was accepted")


def run_train_script(args: list[str], cwd: Path, env: dict | None = None, timeout: int = 600):
    # This checkout's package first, whatever an installed copy (or a relative PYTHONPATH) would give.
    python_path = os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")]))
    full_env = {**os.environ, "TRANSFERLAB_DATA_DIR": str(cwd / "data"), "PYTHONPATH": python_path, **(env or {})}
    return subprocess.run(
        [sys.executable, str(TRAIN_SCRIPT), *args],
        cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout,
    )


def run_python(code: str, timeout: int = 300) -> str:
    """Run `code` in a fresh Python process (nothing of this one's imports or Keras objects helps it) and
    return what it printed; it must succeed."""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def assert_accepted_or_one_line(check) -> None:
    """Run `check()`: it either passes or fails with one clear line, whatever error it meets."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from transferlab.cli import describe_config_error
    from transferlab.errors import TransferlabError

    try:
        check()
    except (HydraException, OmegaConfBaseException) as exc:
        message = describe_config_error(exc)
        assert message and "\n" not in message
    except TransferlabError as exc:
        assert str(exc) and "\n" not in str(exc)
