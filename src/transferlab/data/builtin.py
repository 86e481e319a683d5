"""Datasets the project writes itself from data that ships with an installed package.

`sklearn_digits` renders scikit-learn's 1,797 bundled handwritten digits (8x8, 17 grey levels) as
32x32 RGB PNG files in `<path>/<digit>/`, so the offline default runs through the same image-folder
code as any user's photos.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable

from transferlab.errors import ConfigError

DIGITS_SIZE = 32


def write_sklearn_digits(target: Path) -> None:
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    staging = target.with_name(f".{target.name}.writing")
    shutil.rmtree(staging, ignore_errors=True)
    for index, (pixels, label) in enumerate(zip(digits.images, digits.target, strict=True)):
        grey = np.clip(pixels * (255.0 / 16.0), 0, 255).astype(np.uint8)
        image = Image.fromarray(grey).resize((DIGITS_SIZE, DIGITS_SIZE), Image.BILINEAR)
        folder = staging / str(label)
        folder.mkdir(parents=True, exist_ok=True)
        image.convert("RGB").save(folder / f"{index:04d}.png")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging.rename(target)


BUILTIN_DATASETS: dict[str, Callable[[Path], None]] = {"sklearn_digits": write_sklearn_digits}


def write_builtin_dataset(name: str, target: Path) -> None:
    try:
        writer = BUILTIN_DATASETS[name]
    except KeyError:
        raise ConfigError(
            f"unknown dataset.builtin '{name}': known: {', '.join(BUILTIN_DATASETS)}"
        ) from None
    writer(target)
