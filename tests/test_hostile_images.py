"""Hostile image folders: one line naming the file or folder and the fix, before TensorFlow starts."""

from __future__ import annotations

import struct
import warnings
import zlib
from pathlib import Path

import pytest
from conftest import write_class_images

from transferlab.config.schema import BadFilePolicy, DatasetConfig
from transferlab.data.images import check_images, locate_dataset, plan_dataset
from transferlab.errors import DataError


def dataset(path: Path) -> DatasetConfig:
    return DatasetConfig(name="t", path=str(path), validation_split=0.25, test_split=0.25)


def planned(root: Path, tmp_path: Path, policy: BadFilePolicy = BadFilePolicy.fail):
    plan = plan_dataset(dataset(root), locate_dataset(dataset(root), str(tmp_path / "data")), 0)
    check_images(plan, policy, tmp_path / "converted", workers=2)
    return plan


def refused(root: Path, tmp_path: Path) -> str:
    with pytest.raises(DataError) as info:
        planned(root, tmp_path)
    assert "\n" not in str(info.value)
    return str(info.value)


def png_declaring(path: Path, width: int, height: int) -> Path:
    """A PNG whose header claims `width` x `height` pixels, with almost no pixel data behind it."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))
    return path


@pytest.mark.parametrize(
    "make, expected",
    [
        (lambda f: (f / "empty.png").write_bytes(b""), "cannot decode image '{f}/empty.png': the file is empty (0 bytes)"),
        (lambda f: (f / "notes.png").write_text("not a picture\n"), "cannot decode image '{f}/notes.png': cannot identify image file"),
        (lambda f: png_declaring(f / "bomb.png", 100_000, 100_000), "cannot decode image '{f}/bomb.png': "),
        (lambda f: png_declaring(f / "huge.png", 10_000, 10_000),
         "cannot decode image '{f}/huge.png': it declares 10000x10000 pixels, more than 89478485"),
        (lambda f: (f / "loop.png").symlink_to(f / "loop.png"), "cannot decode image '{f}/loop.png': "),
    ],
)
def test_unreadable_images_are_named_with_the_fix(tmp_path, make, expected):
    root = write_class_images(tmp_path / "pets", 6, size=8)
    make(root / "cat")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # PIL's DecompressionBombWarning must not leak as a stray line
        message = refused(root, tmp_path)
    assert message.startswith(expected.format(f=root / "cat")), message
    assert message.endswith("delete or replace it, or set dataset.on_bad_file=skip to leave unreadable files out")
    plan = planned(root, tmp_path, BadFilePolicy.skip)
    assert len(plan.skipped) == 1 and sum(plan.counts().values()) == 12


def test_hostile_folders_are_named_with_the_fix(tmp_path):
    one = write_class_images(tmp_path / "one", 4, classes=("cat",), size=8)
    assert "only one class ('cat') in" in refused(one, tmp_path) and "add a folder of another class's images" in refused(one, tmp_path)

    empty = tmp_path / "empty"
    (empty / "cat").mkdir(parents=True)
    (empty / "dog").mkdir()
    (empty / "dog" / "readme.txt").write_text("no images here")
    assert refused(empty, tmp_path).startswith(f"class folder '{empty / 'cat'}' has no images")

    loose = write_class_images(tmp_path / "loose_parent", 3, classes=("x",), size=8) / "x"
    assert refused(loose, tmp_path) == (
        f"no class subfolders in '{loose}': 3 image files lie directly in it; move them into one subfolder "
        f"per class, {loose}/<class name>/<image files>"
    )
    bare = tmp_path / "bare"
    bare.mkdir()
    assert f"no class subfolders in '{bare}': add one subfolder per class" in refused(bare, tmp_path)

    table = tmp_path / "reviews.csv"
    table.write_text("text,label\n")
    assert refused(table, tmp_path) == (
        f"dataset.path '{table}' is a file, not a folder of class subfolders; point it at the folder "
        "(for a table of texts use dataset=text_csv)"
    )

    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    assert refused(loop, tmp_path).startswith(f"dataset.path '{loop}' is a symbolic link that loops or points nowhere")
