"""Errors a user can fix. Each message says what is wrong and how to fix it, in one line."""

from __future__ import annotations

import sys
from typing import NoReturn


class TransferlabError(Exception):
    """Base of every error the command line prints as one line and exits non-zero on."""


class ConfigError(TransferlabError):
    """A config value is missing, of the wrong kind, or out of range."""


class DataError(TransferlabError):
    """The dataset is missing, empty, unreadable or inconsistent."""


class ModelError(TransferlabError):
    """The base model cannot be built or its weights cannot be loaded."""


class TrainingError(TransferlabError):
    """Training itself went wrong (for example the loss stopped being finite)."""


class CheckpointError(TransferlabError):
    """A checkpoint a resumed run needs is damaged or incomplete, and no earlier one can stand in."""


class UpstreamChangedError(TransferlabError):
    """An installed library no longer has a private API this project relies on (see transferlab.compat)."""


class StorageError(TransferlabError):
    """Writing the run's outputs failed: the disk is full, a file grew past a limit, or the folder is read-only."""


def fail(message: str, code: int = 2) -> NoReturn:
    """End a command with the one `error:` line on stderr, secrets removed; every command prints through here."""
    from transferlab.repro import redact

    print(f"error: {redact(message)}", file=sys.stderr)
    sys.exit(code)


def first_line(exc: BaseException, with_type: bool = False) -> str:
    """The first line of an upstream error, for a one-line message; its type name when it says nothing."""
    text = str(exc).strip()
    if not text:
        return type(exc).__name__
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if with_type else text.splitlines()[0]
