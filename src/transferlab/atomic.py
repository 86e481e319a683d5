"""Files written whole or not at all: a temporary file beside the target, renamed into place.

Every concern that writes results (reports, caches, models, Hydra's redacted files) uses this one
helper, so a crash or a full disk never leaves a half-written file where a complete one was.
"""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import numpy as np

if TYPE_CHECKING:
    import keras


@contextmanager
def replacing(path: Path, tmp: Path) -> Iterator[Path]:
    """Yield `tmp` to write; then rename it to `path`, or delete it if writing failed."""
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        name_the_file(exc, path)
        raise


def write_text(path: Path, text: str) -> None:
    with replacing(path, path.with_name(f".{path.name}.{os.getpid()}.tmp")) as tmp:
        tmp.write_text(text)


def name_the_file(exc: BaseException, path: Path) -> None:
    """Give a failed write's OSError the file it was writing: a write to an open file names none,
    and "no space left" is only actionable with the file in the message."""
    if isinstance(exc, OSError) and exc.filename is None:
        exc.filename = str(path)


def write_history(rows: list[dict], path: Path) -> None:
    import pandas as pd

    with replacing(path, path.with_name(path.name + ".tmp")) as tmp:
        pd.DataFrame(rows).to_csv(tmp, index=False)


def write_arrays(path: Path, **arrays: np.ndarray) -> None:
    """Arrays as `.npz`, written under a per-process name and renamed: parallel jobs sharing a cache
    never read half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with replacing(path, path.with_name(f".{path.name}.{os.getpid()}.tmp")) as tmp, open(tmp, "wb") as out:
        np.savez(out, **arrays)


def write_json(data: dict, path: Path) -> None:
    with replacing(path, path.with_name(path.name + ".tmp")) as tmp:
        tmp.write_text(json.dumps(data, indent=2, default=str))


def save_model(model: "keras.Model", path: Path) -> None:
    """`model.save` to a temporary `.keras` in the same folder, renamed into place: a write that fails
    (a full disk) leaves the previous file or none, never a partial one."""
    with replacing(path, path.with_name(f".{path.stem}.{os.getpid()}.tmp.keras")) as tmp:
        model.save(tmp)
