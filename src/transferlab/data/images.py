"""Image-folder datasets: find the files, split them, check them, and feed them through tf.data.

Everything up to `build_pipelines` is plain Python, so a wrong path, an empty class folder or a
corrupt image is reported before TensorFlow is imported and long before training starts.
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from transferlab.config.schema import AugmentationConfig, BadFilePolicy, DatasetConfig
from transferlab.data.builtin import write_builtin_dataset
from transferlab.data.download import fetch_and_unpack
from transferlab.data.splits import SplitData, assemble_splits
from transferlab.errors import DataError

if TYPE_CHECKING:
    import tensorflow as tf


log = logging.getLogger(__name__)


# Image files by name; other files in class folders are ignored (Thumbs.db, notes).
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")

VALIDATION_DIRS = ("validation", "val", "valid")


@dataclass
class Split:
    paths: list[str] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def items(self) -> list[str]:
        return self.paths

    def add(self, path: str, label: int) -> None:
        self.paths.append(path)
        self.labels.append(label)


@dataclass
class DatasetPlan:
    """Which file goes to which split with which label; decided before any image is decoded."""

    root: Path
    class_names: list[str]
    train: Split
    validation: Split
    test: Split
    skipped: list[str] = field(default_factory=list)
    # Original path -> RGB PNG copy, for images TensorFlow cannot decode itself.
    converted: dict[str, str] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        return {"train": len(self.train), "validation": len(self.validation), "test": len(self.test)}

    def fingerprint(self) -> str:
        """Hash of every file's split, label, relative path and size: same data, same hash."""
        digest = hashlib.sha256()
        for name, split in (("train", self.train), ("validation", self.validation), ("test", self.test)):
            for path, label in zip(split.paths, split.labels, strict=True):
                rel = Path(path).relative_to(self.root).as_posix()
                digest.update(f"{name}\t{label}\t{rel}\t{Path(path).stat().st_size}\n".encode())
        return digest.hexdigest()[:16]

    def example_keys(self, split: str) -> list[str]:
        """The file read (the converted copy, if any), its label, size and modification time."""
        files: Split = getattr(self, split)
        keys = []
        for path, label in zip(files.paths, files.labels, strict=True):
            read = self.converted.get(path, path)
            stat = os.stat(read)
            keys.append(f"{read}\t{label}\t{stat.st_size}\t{stat.st_mtime_ns}")
        return keys


def locate_dataset(cfg: DatasetConfig, data_dir: str) -> Path:
    """The dataset folder, written or downloaded first when the config says how."""
    root = Path(cfg.path).expanduser()
    if root.exists():
        return root
    if cfg.builtin:
        write_builtin_dataset(cfg.builtin, root)
    elif root.is_symlink():
        raise DataError(f"dataset.path '{root}' is a symbolic link that loops or points nowhere; fix the link or dataset.path")
    elif cfg.url:
        fetch_and_unpack(cfg.url, root, Path(data_dir) / "downloads", cfg.sha256, cfg.archive_subdir)
    else:
        raise DataError(
            f"dataset.path '{root}' does not exist: point dataset.path at a folder of class "
            "subfolders, or set dataset.url to an archive to download"
        )
    return root


def plan_dataset(cfg: DatasetConfig, root: Path, seed: int) -> DatasetPlan:
    """Assign files to train/validation/test: from split folders where present, else by seeded fractions."""
    if not root.is_dir():
        hint = " (for a table of texts use dataset=text_csv)" if root.name.lower().endswith(TEXT_TABLE_SUFFIXES) else ""
        raise DataError(
            f"dataset.path '{root}' is a file, not a folder of class subfolders; point it at the folder{hint}"
        )
    train_root = root / "train" if (root / "train").is_dir() else root
    class_names = _class_names(train_root, cfg.classes)
    train_files = _list_classes(train_root, class_names)
    rng = random.Random(seed)
    val_root = next((root / d for d in VALIDATION_DIRS if (root / d).is_dir()), None) if train_root != root else None
    test_root = root / "test" if train_root != root and (root / "test").is_dir() else None

    plan = DatasetPlan(root, class_names, Split(), Split(), Split())
    for label, name in enumerate(class_names):
        files = train_files[name]
        rng.shuffle(files)
        n_test = 0 if test_root else _held_out(len(files), cfg.test_split)
        n_val = 0 if val_root else _held_out(len(files), cfg.validation_split)
        if len(files) - n_test - n_val < 1:
            raise DataError(
                f"class '{name}' has {len(files)} images, too few to hold out validation and test images; "
                "add images or lower dataset.validation_split / dataset.test_split"
            )
        for path in files[:n_test]:
            plan.test.add(path, label)
        for path in files[n_test : n_test + n_val]:
            plan.validation.add(path, label)
        train = files[n_test + n_val :]
        for path in train[: cfg.train_per_class] if cfg.train_per_class else train:
            plan.train.add(path, label)
    for split_root, split in ((val_root, plan.validation), (test_root, plan.test)):
        if split_root is not None:
            files = _list_classes(split_root, class_names, require_all=False)
            for label, name in enumerate(class_names):
                for path in files[name]:
                    split.add(path, label)
    if not len(plan.validation):
        raise DataError(
            "the validation split is empty, but early stopping and checkpoints need it; "
            "add a validation/ folder or set dataset.validation_split above 0"
        )
    return plan


def _class_names(folder: Path, wanted: Optional[list[str]]) -> list[str]:
    present = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not present:
        loose = sum(1 for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        found = f"{loose} image files lie directly in it; move them into" if loose else "add"
        raise DataError(
            f"no class subfolders in '{folder}': {found} one subfolder per class, {folder}/<class name>/<image files>"
        )
    if wanted is not None:
        missing = [c for c in wanted if c not in present]
        if missing:
            raise DataError(
                f"dataset.classes names {missing} but '{folder}' has no such folders (it has {present[:10]})"
            )
        present = list(wanted)
    if len(present) < 2:
        raise DataError(
            f"only one class ('{present[0]}') in '{folder}': a classifier needs at least two class folders; add a folder of another class's images"
        )
    return present


def _list_classes(folder: Path, class_names: list[str], require_all: bool = True) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for name in class_names:
        class_dir = folder / name
        files = sorted(
            # Broken or looping links are kept, so the image check names them instead of dropping them.
            str(p) for p in class_dir.rglob("*") if (p.is_file() or p.is_symlink() and not p.is_dir())
            and p.suffix.lower() in IMAGE_SUFFIXES
        ) if class_dir.is_dir() else []
        if not files and require_all:
            raise DataError(
                f"class folder '{class_dir}' has no images ({', '.join(IMAGE_SUFFIXES)}): "
                "add images or remove the folder (or leave it out of dataset.classes)"
            )
        found[name] = files
    return found


def _held_out(n: int, fraction: float) -> int:
    """At least one image per class whenever a fraction is asked for, so every split sees every class."""
    return 0 if fraction <= 0 else max(1, round(n * fraction))


def check_images(plan: DatasetPlan, policy: BadFilePolicy, converted_dir: Path, workers: int = 8) -> None:
    """Decode every file once up front: tf.data would otherwise fail mid-epoch on the first corrupt one.

    Images TensorFlow cannot decode but PIL can (CMYK JPEG, TIFF, WebP) are converted once to RGB
    PNG files in `converted_dir`, which the pipeline reads in their place.
    """
    from PIL import Image

    all_paths = [p for split in (plan.train, plan.validation, plan.test) for p in split.paths]
    # _inspect refuses oversized images itself; PIL's warning about them would only add a stray line.
    with warnings.catch_warnings(), ThreadPoolExecutor(max_workers=workers) as pool:
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        results = dict(zip(all_paths, pool.map(lambda p: _inspect(p, converted_dir), all_paths), strict=True))
    plan.converted = {p: usable for p, (usable, _) in results.items() if usable not in (None, p)}
    if plan.converted:
        log.info("converted %d image(s) to RGB PNG in %s", len(plan.converted), converted_dir)
    problems = {p: problem for p, (_, problem) in results.items() if problem}
    if not problems:
        return
    first, reason = next(iter(problems.items()))
    if policy is BadFilePolicy.fail:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise DataError(
            f"cannot decode image '{first}'{more}: {reason}; delete or replace it, "
            "or set dataset.on_bad_file=skip to leave unreadable files out"
        )
    log.warning("skipping %d unreadable image(s), e.g. %s (%s)", len(problems), first, reason)
    for split in (plan.train, plan.validation, plan.test):
        keep = [i for i, p in enumerate(split.paths) if p not in problems]
        split.paths = [split.paths[i] for i in keep]
        split.labels = [split.labels[i] for i in keep]
    plan.skipped = sorted(problems)
    missing = sorted(set(range(len(plan.class_names))) - set(plan.train.labels))
    if missing:
        names = [plan.class_names[i] for i in missing]
        raise DataError(f"no readable training images left for class(es) {names}; add readable images")


# PIL's own limit, below which it neither warns nor refuses: about 9,500 x 9,500 pixels.
MAX_PIXELS = 89_478_485


# Tables a user may give an image dataset by mistake.
TEXT_TABLE_SUFFIXES = (".csv", ".tsv", ".txt", ".parquet", ".gz")


# Formats tf.io.decode_image reads, by PIL's name; CMYK JPEGs are outside what it decodes.
TF_FORMATS = {"JPEG", "PNG", "BMP", "GIF"}


def _inspect(path: str, converted_dir: Path) -> tuple[Optional[str], Optional[str]]:
    """(the path the pipeline should read, None) for a usable image, (None, why) for an unreadable one."""
    from PIL import Image

    try:
        if Path(path).stat().st_size == 0:
            return None, "the file is empty (0 bytes)"
        with Image.open(path) as image:
            if image.width * image.height > MAX_PIXELS:
                return None, (f"it declares {image.width}x{image.height} pixels, more than {MAX_PIXELS} "
                              "(a decompression bomb, or a scan to shrink first)")
            image.load()
            if image.format in TF_FORMATS and not (image.format == "JPEG" and image.mode == "CMYK"):
                return path, None
            stat = Path(path).stat()
            key = hashlib.sha1(f"{Path(path).resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()
            target = converted_dir / f"{key}.png"
            if not target.is_file():
                converted_dir.mkdir(parents=True, exist_ok=True)
                tmp = target.with_name(f".{target.name}.tmp")
                image.convert("RGB").save(tmp, format="PNG")
                tmp.replace(target)
            return str(target), None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        return None, (str(exc).splitlines()[0] if str(exc) else type(exc).__name__)


def build_pipelines(
    plan: DatasetPlan,
    cfg: DatasetConfig,
    image_size: tuple[int, int],
    augmentation: AugmentationConfig,
    seed: int,
) -> SplitData:
    """tf.data pipelines: parallel decode and resize, optional cache, shuffle, batch, augment, prefetch."""
    import tensorflow as tf

    from transferlab.data.augmentation import build_augmentation

    def decoded(split: Split) -> tf.data.Dataset:
        paths = [plan.converted.get(p, p) for p in split.paths]
        ds = tf.data.Dataset.from_tensor_slices((paths, split.labels))
        ds = ds.map(lambda p, y: (_load_image(p, image_size), y), num_parallel_calls=tf.data.AUTOTUNE)
        return ds.cache() if cfg.cache else ds

    return assemble_splits(plan, decoded, cfg.batch_size, seed, augment=build_augmentation(augmentation, seed))


def _load_image(path, image_size: tuple[int, int]):
    import tensorflow as tf

    image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
    image = tf.image.resize(image, image_size)
    image.set_shape((*image_size, 3))
    return image
