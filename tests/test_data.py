"""Finding, splitting, checking and downloading image folders, before any training."""

from __future__ import annotations

import hashlib
import shutil
import zipfile
from pathlib import Path

import pytest
from conftest import write_class_images
from PIL import Image

from transferlab.config.schema import BadFilePolicy, DatasetConfig
from transferlab.data.builtin import write_builtin_dataset
from transferlab.data.images import check_images, locate_dataset, plan_dataset
from transferlab.errors import ConfigError, DataError


def dataset(path: Path, **kwargs) -> DatasetConfig:
    return DatasetConfig(name="t", path=str(path), **{"validation_split": 0.25, "test_split": 0.25, **kwargs})


def test_fraction_split_is_seeded_stratified_and_disjoint(tmp_path):
    root = write_class_images(tmp_path / "d", 8, classes=("a", "b", "c"))
    plan = plan_dataset(dataset(root), root, seed=1)
    assert plan.class_names == ["a", "b", "c"]
    assert plan.counts() == {"train": 12, "validation": 6, "test": 6}
    for split in (plan.train, plan.validation, plan.test):
        assert sorted(set(split.labels)) == [0, 1, 2]
    all_files = plan.train.paths + plan.validation.paths + plan.test.paths
    assert len(set(all_files)) == 24
    again = plan_dataset(dataset(root), root, seed=1)
    other = plan_dataset(dataset(root), root, seed=2)
    assert again.test.paths == plan.test.paths and again.fingerprint() == plan.fingerprint()
    assert other.test.paths != plan.test.paths and other.fingerprint() != plan.fingerprint()


def test_split_folders_are_used_as_given(tmp_path):
    write_class_images(tmp_path / "d" / "train", 6)
    write_class_images(tmp_path / "d" / "validation", 2, seed=1)
    write_class_images(tmp_path / "d" / "test", 3, seed=2)
    plan = plan_dataset(dataset(tmp_path / "d"), tmp_path / "d", seed=0)
    assert plan.counts() == {"train": 12, "validation": 4, "test": 6}
    assert all("/validation/" in p for p in plan.validation.paths)


def test_classes_and_train_per_class_select_a_few_shot_subset(tmp_path):
    root = write_class_images(tmp_path / "d", 10, classes=("a", "b", "c"))
    plan = plan_dataset(dataset(root, classes=["c", "a"], train_per_class=2), root, seed=0)
    assert plan.class_names == ["c", "a"]
    assert len(plan.train) == 4 and all("/b/" not in p for p in plan.train.paths)
    assert all(("/c/" in p) == (label == 0) for p, label in zip(plan.train.paths, plan.train.labels, strict=True))


@pytest.mark.parametrize(
    "layout, message",
    [
        ("missing", "does not exist: point dataset.path at a folder"),
        ("no_classes", "no class subfolders in"),
        ("empty_class", "has no images"),
        ("one_class", "only one class ('a')"),
        ("too_few", "too few to hold out validation and test images"),
    ],
)
def test_broken_layouts_fail_with_the_fix(tmp_path, layout, message):
    root = tmp_path / "d"
    if layout == "no_classes":
        root.mkdir()
        (root / "notes.txt").write_text("x")
    elif layout == "empty_class":
        write_class_images(root, 4, classes=("a",))
        (root / "b").mkdir()
        (root / "b" / "Thumbs.db").write_text("not an image")
    elif layout == "one_class":
        write_class_images(root, 4, classes=("a",))
    elif layout == "too_few":
        write_class_images(root, 2)
    with pytest.raises(DataError, match=message.replace("(", r"\(").replace(")", r"\)")):
        plan_dataset(dataset(root), locate_dataset(dataset(root), str(tmp_path)), seed=0)


@pytest.fixture
def folder_with_bad_files(tmp_path) -> Path:
    root = write_class_images(tmp_path / "d", 8)
    (root / "cat" / "truncated.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 40)
    (root / "dog" / "notes.png").write_text("this is not a picture")
    return root


def test_unreadable_images_fail_naming_the_file(folder_with_bad_files):
    plan = plan_dataset(dataset(folder_with_bad_files), folder_with_bad_files, seed=0)
    with pytest.raises(DataError, match=r"cannot decode image '.*(truncated\.jpg|notes\.png)' \(and 1 more\).*on_bad_file=skip"):
        check_images(plan, BadFilePolicy.fail, folder_with_bad_files.parent / "converted")


def test_unreadable_images_are_skipped_and_counted_when_asked(folder_with_bad_files):
    plan = plan_dataset(dataset(folder_with_bad_files), folder_with_bad_files, seed=0)
    check_images(plan, BadFilePolicy.skip, folder_with_bad_files.parent / "converted")
    assert sorted(Path(p).name for p in plan.skipped) == ["notes.png", "truncated.jpg"]
    kept = plan.train.paths + plan.validation.paths + plan.test.paths
    assert len(kept) == 16 and not set(plan.skipped) & set(kept)


def test_images_in_other_modes_and_formats_are_used_as_rgb(tmp_path, base_weights):
    """Grayscale, RGBA, palette, 16-bit, CMYK, BMP, GIF, TIFF, WebP and a large photo all train."""
    import numpy as np
    from conftest import compose_config, tiny_overrides

    import transferlab

    root = write_class_images(tmp_path / "d", 6)
    rng = np.random.default_rng(0)
    photo = Image.fromarray(rng.integers(0, 255, (2400, 3200, 3), dtype=np.uint8))
    variants = {
        "grey.png": photo.resize((40, 30)).convert("L"),
        "alpha.png": photo.resize((40, 30)).convert("RGBA"),
        "palette.png": photo.resize((40, 30)).convert("P"),
        "deep.png": photo.resize((40, 30)).convert("I;16"),
        "print.jpg": photo.resize((40, 30)).convert("CMYK"),
        "bitmap.bmp": photo.resize((40, 30)),
        "anim.gif": photo.resize((40, 30)).convert("P"),
        "scan.tiff": photo.resize((40, 30)),
        "web.webp": photo.resize((40, 30)),
        "large.jpg": photo,
    }
    for name, image in variants.items():
        image.save(root / ("cat" if len(name) % 2 else "dog") / name)
    cfg = dataset(root)
    plan = plan_dataset(cfg, root, seed=0)
    check_images(plan, BadFilePolicy.fail, tmp_path / "converted")
    assert sorted(Path(p).name for p in plan.converted) == ["print.jpg", "scan.tiff", "web.webp"]
    summary = transferlab.train(compose_config(tiny_overrides(root, tmp_path / "run", base_weights, "schedule.fine_tune.epochs=0")))
    assert sum(summary.counts.values()) == 12 + len(variants) and not summary.skipped_files


def _zip_of_images(tmp_path: Path) -> Path:
    write_class_images(tmp_path / "src" / "Pets", 6)
    archive = tmp_path / "pets.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for file in (tmp_path / "src").rglob("*.png"):
            zf.write(file, file.relative_to(tmp_path / "src"))
        zf.writestr("README.txt", "licence")
    return archive


def test_archive_url_is_downloaded_once_and_unpacked(tmp_path):
    archive = _zip_of_images(tmp_path)
    cfg = dataset(tmp_path / "data" / "pets", url=archive.as_uri(), archive_subdir="Pets",
                  sha256=hashlib.sha256(archive.read_bytes()).hexdigest())
    root = locate_dataset(cfg, str(tmp_path / "data"))
    assert sorted(p.name for p in root.iterdir()) == ["cat", "dog"]
    assert (tmp_path / "data" / "downloads" / "pets.zip").is_file()
    assert plan_dataset(cfg, root, seed=0).counts() == {"train": 4, "validation": 4, "test": 4}
    shutil.rmtree(root)
    archive.unlink()  # the cached copy serves the second time
    assert locate_dataset(cfg, str(tmp_path / "data")) == root and (root / "cat").is_dir()


def test_bad_downloads_fail_clearly_and_leave_nothing_behind(tmp_path):
    archive = _zip_of_images(tmp_path)
    target = tmp_path / "data" / "pets"
    with pytest.raises(DataError, match="not the configured dataset.sha256"):
        locate_dataset(dataset(target, url=archive.as_uri(), sha256="0" * 64), str(tmp_path / "data"))
    with pytest.raises(DataError, match="cannot download dataset.url"):
        locate_dataset(dataset(target, url=(tmp_path / "nope.zip").as_uri()), str(tmp_path / "data"))
    with pytest.raises(DataError, match="archive_subdir 'Cats' is not in the archive"):
        locate_dataset(dataset(target, url=archive.as_uri(), archive_subdir="Cats"), str(tmp_path / "data"))
    assert not target.exists()
    assert not list((tmp_path / "data").glob(".pets*"))


def test_builtin_digits_are_written_as_an_image_folder(tmp_path):
    write_builtin_dataset("sklearn_digits", tmp_path / "digits")
    folders = sorted(p.name for p in (tmp_path / "digits").iterdir())
    assert folders == [str(d) for d in range(10)]
    files = list((tmp_path / "digits").rglob("*.png"))
    assert len(files) == 1797
    with Image.open(files[0]) as image:
        assert image.size == (32, 32) and image.mode == "RGB"
    with pytest.raises(ConfigError, match="unknown dataset.builtin 'mnist'"):
        write_builtin_dataset("mnist", tmp_path / "mnist")
