"""What a run needs to be repeated: seeds, package versions, code version."""

from __future__ import annotations

import logging
import os
import platform
import re
import shlex
import socket
import stat
import subprocess
import sys
from importlib import metadata
from pathlib import Path

log = logging.getLogger(__name__)

CODE_DIR = Path(__file__).resolve().parent
# NEPTUNE_API_TOKEN, MLFLOW_TRACKING_TOKEN, MLFLOW_TRACKING_PASSWORD and any other variable named like a secret.
SECRET_SUFFIXES = ("_TOKEN", "_PASSWORD", "_SECRET", "_API_KEY")
# Shorter values would blank out ordinary words; no real token or password is this short.
MIN_SECRET_LENGTH = 6
# A plain YAML scalar (`***` would read as an alias), so a redacted .hydra/*.yaml still loads.
REDACTED = "<redacted>"
# `NAME=value` (a command line, an override) or `NAME: value` (Hydra's saved YAML) for a secret's NAME.
SECRET_SETTING = re.compile(
    r"(?<![A-Za-z0-9_])(?P<name>[A-Z0-9_]*(?:_TOKEN|_PASSWORD|_SECRET|_API_KEY))"
    r"(?P<sep>=|:[ \t]*)(?P<quote>['\"]?)[^\s'\",\]}]+"
)

PACKAGES = (
    "transferlab", "tensorflow", "keras", "hydra-core", "omegaconf", "numpy", "pandas",
    "scikit-learn", "pillow", "tensorboard", "neptune",
)


def seed_everything(seed: int, deterministic: bool) -> None:
    """Seed Python, NumPy and TensorFlow; optionally make TensorFlow's ops deterministic."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    if deterministic:
        tf.config.experimental.enable_op_determinism()


def environment_info() -> dict[str, object]:
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "hostname": socket.gethostname(),
        "packages": package_versions(),
        "git": git_info(CODE_DIR),
        "command": redact(shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]])) if sys.argv and sys.argv[0] else "",
        "overrides": [redact(o) for o in hydra_overrides()],
    }


def hydra_overrides() -> list[str]:
    """The command-line overrides of this Hydra job (empty outside Hydra)."""
    from hydra.core.hydra_config import HydraConfig

    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []


def write_code_state(run_dir: Path) -> None:
    """Save uncommitted changes of the code as `git.diff`, so a dirty-tree run can be rebuilt."""
    info = git_info(CODE_DIR)
    if not info.get("dirty"):
        return
    try:
        diff = code_diff(CODE_DIR)
    except (OSError, subprocess.SubprocessError) as exc:  # git gone or stuck: the run goes on, said once
        log.warning("could not record the code's uncommitted changes (%s); git.diff is not written", exc)
        return
    (run_dir / "git.diff").write_text(redact(diff))


UNTRACKED_LIMIT = 1 << 20  # untracked files larger than this (data, models) are not code to record


def code_diff(folder: Path) -> str:
    """`git diff HEAD` of the checkout holding `folder`, plus every untracked, unignored file as an
    addition: a new module is as much a part of the code that ran as an edited one."""

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True, timeout=30).stdout

    top = Path(git("rev-parse", "--show-toplevel").strip())
    untracked = [p for p in git("ls-files", "--others", "--exclude-standard", "--full-name", ":/").splitlines() if p]
    added = [
        subprocess.run(["git", "-C", str(top), "diff", "--no-index", "--", "/dev/null", path],
                       capture_output=True, text=True, timeout=30).stdout
        for path in untracked if _small_regular_file(top / path)
    ]
    return git("diff", "HEAD") + "".join(added)


def _small_regular_file(path: Path) -> bool:
    """A file to record: not a link (a dangling one has no size), not data-sized."""
    info = path.lstat()
    return stat.S_ISREG(info.st_mode) and info.st_size <= UNTRACKED_LIMIT


def package_versions() -> dict[str, str]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def git_info(folder: Path) -> dict[str, object]:
    """Commit and dirty flag of the checkout holding `folder`; empty outside a git checkout."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(folder), *args], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()

    try:
        return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain"))}
    except (OSError, subprocess.SubprocessError):
        return {}


# The password of a `scheme://user:password@host` URI (an MLflow tracking URI, a database URL).
URI_PASSWORD = re.compile(r"(\b[a-zA-Z][\w+.-]*://[^/\s:@]*:)[^/\s@]+@")


def is_secret_name(name: str) -> bool:
    return name.upper().endswith(SECRET_SUFFIXES)


def redact(text: str) -> str:
    """Text that may reach a file, a log or a tracker, without any tracker token or password: every
    secret environment value, and the value of every `SECRET_NAME=...` setting even when unset here."""
    values = {v for k, v in os.environ.items() if is_secret_name(k) and len(v) >= MIN_SECRET_LENGTH}
    for value in sorted(values, key=len, reverse=True):
        text = text.replace(value, REDACTED)
    text = URI_PASSWORD.sub(rf"\1{REDACTED}@", text)
    return SECRET_SETTING.sub(lambda m: f"{m['name']}{m['sep']}{m['quote']}{REDACTED}", text)
