"""Fetching dataset archives: cached, checked, and unpacked so a half-written folder never looks done."""

from __future__ import annotations

import hashlib
import logging
import shutil
import tarfile
import urllib.request
import zipfile
from pathlib import Path
from typing import Optional
from urllib.parse import urlparse

from transferlab.errors import DataError, first_line

log = logging.getLogger(__name__)


def fetch_and_unpack(
    url: str, target: Path, cache_dir: Path, sha256: Optional[str] = None, subdir: Optional[str] = None
) -> Path:
    """Download `url` (http, https or file) into `cache_dir`, unpack it, and move it to `target`."""
    archive = fetch(url, cache_dir, sha256)
    staging = target.with_name(f".{target.name}.unpacking")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        unpack(archive, staging)
    except (tarfile.TarError, zipfile.BadZipFile, ValueError, OSError) as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise DataError(
            f"cannot unpack '{archive}' from dataset.url: {exc}; delete the file to download it again"
        ) from exc
    source = staging / subdir if subdir else staging
    if not source.is_dir():
        found = sorted(p.name for p in staging.iterdir())
        shutil.rmtree(staging, ignore_errors=True)
        raise DataError(f"dataset.archive_subdir '{subdir}' is not in the archive (top level: {found})")
    target.parent.mkdir(parents=True, exist_ok=True)
    source.rename(target)
    shutil.rmtree(staging, ignore_errors=True)
    log.info("unpacked %s into %s", url, target)
    return target


def unpack(archive: Path, target: Path) -> None:
    """Unpack a zip or tar archive; members that would land outside `target` are refused."""
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(target)  # zipfile drops absolute paths and ".." components
    elif tarfile.is_tarfile(archive):
        with tarfile.open(archive) as tf:
            tf.extractall(target, filter="data")
    else:
        raise ValueError("not a zip or tar archive")


def fetch(url: str, cache_dir: Path, sha256: Optional[str] = None, key: str = "dataset") -> Path:
    """The file at `url`, downloaded once into `cache_dir` (written to a .part file, then renamed).

    `key` is the config section the URL came from (dataset or base_model), so errors name its keys.
    """
    name = Path(urlparse(url).path).name or "download"
    path = cache_dir / name
    if path.is_file() and (sha256 is None or file_sha256(path) == sha256):
        return path
    cache_dir.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".part")
    log.info("downloading %s", url)
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(partial, "wb") as out:
            shutil.copyfileobj(response, out, length=1 << 20)
    except (OSError, ValueError) as exc:
        partial.unlink(missing_ok=True)
        raise DataError(
            f"cannot download {key}.url '{url}': {first_line(exc)}; check the URL and the connection, "
            f"or set {key}.path=<local {'file' if key == 'base_model' else 'copy'}> to use a copy already on disk"
        ) from exc
    if sha256 is not None and (actual := file_sha256(partial)) != sha256:
        partial.unlink(missing_ok=True)
        raise DataError(f"'{url}' has sha256 {actual}, not the configured {key}.sha256 {sha256}")
    partial.rename(path)
    return path


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
