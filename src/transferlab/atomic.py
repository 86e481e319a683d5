"""Files written whole or not at all: a temporary file beside the target, renamed into place.

Every concern that writes results (reports, caches, models, Hydra's redacted files) uses this one
helper, so a crash or a full disk never leaves a half-written file where a complete one was.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


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
