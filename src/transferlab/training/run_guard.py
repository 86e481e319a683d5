"""One folder, one run: a run directory that holds another run's results is refused, a live run holds an
OS lock on its folder, default folder names never collide, and no secret stays in Hydra's saved files.

Hydra creates the run directory and writes `.hydra/` into it before the task starts, so the checks run
in a Hydra callback's `on_run_start`; `prepare_run_dir` repeats them for `transferlab.train(cfg)`.
"""

from __future__ import annotations

import atexit
import fcntl
import logging
import os
import secrets
import shutil
from pathlib import Path
from typing import Any, Optional

from hydra.core.utils import JobReturn
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from transferlab import atomic
from transferlab.errors import ConfigError, TransferlabError, fail
from transferlab.repro import redact

LOCK_FILE = ".lock"
# What a run or an extraction leaves in its folder; any of them means the folder is taken.
RUN_MARKERS = (
    "config.yaml", "summary.json", "checkpoints", "model.keras", "best.keras", "history.csv",
    "extraction.json", "features.npz", "features.parquet",
)
HYDRA_FILES = ("config.yaml", "hydra.yaml", "overrides.yaml")
# Computed once per process, so every resolution of hydra.run.dir in this process names one folder.
RUN_SUFFIX = secrets.token_hex(3)

_held: dict[Path, int] = {}
_resumed: list[Path] = []


def register_resolvers() -> None:
    """`${run_suffix:}` in conf/config.yaml: two runs started in the same second get different folders."""
    OmegaConf.register_new_resolver("run_suffix", lambda: RUN_SUFFIX, use_cache=True, replace=True)


def refuse_used(folder: Path) -> None:
    """A new run or extraction never writes over another run's results."""
    found = [name for name in RUN_MARKERS if (folder / name).exists()]
    if found:
        raise ConfigError(
            f"'{folder}' already holds another run's results ({', '.join(found)}); continue an unfinished run "
            f"with resume={folder}, or start this one in a new folder, e.g. hydra.run.dir=<new folder>"
        )


def claim(folder: Path) -> bool:
    """Lock `folder` for this process until `release` or exit (the OS drops the lock of a dead process).

    True when newly taken, False when this process already holds it. An OSError means the folder
    cannot be written; another live run holding it is a ConfigError.
    """
    key = folder.resolve()
    if key in _held:
        return False
    path = key / LOCK_FILE
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise ConfigError(
                f"'{folder}' is in use by another live run (pid {pid}); wait for it to end, or start this run "
                "in a new folder, e.g. hydra.run.dir=<new folder>"
            ) from None
        # The holder before us may have removed the file after we opened it: lock the file now at `path`.
        try:
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    _held[key] = fd
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
    except OSError:
        release(folder)  # a lock file that cannot be written (a full disk) is not left held
        raise
    return True


def release(folder: Optional[Path] = None) -> None:
    """Drop the lock on `folder` (every lock when None) and remove its lock file."""
    for key in [k for k in _held if folder is None or k == folder.resolve()]:
        fd = _held.pop(key)
        try:
            (key / LOCK_FILE).unlink()  # while still locked, so no one locks the file being removed
        except FileNotFoundError:
            pass
        os.close(fd)


atexit.register(release)


def note_resumed(run_dir: Path) -> None:
    """Remember the run a `resume` continues, so the folder Hydra made for this session can be tidied."""
    _resumed.append(run_dir.resolve())


def open_run_dir(folder: Path) -> bool:
    """Create `folder` and lock it; True when this call took the lock."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        return claim(folder)
    except OSError as exc:
        raise ConfigError(
            f"cannot create or write the run directory '{folder}' ({exc.strerror or exc}); "
            "give a writable folder: hydra.run.dir=<writable folder>"
        ) from exc


class RunGuard(Callback):
    """Checks and locks the run directory before Hydra writes into it; redacts Hydra's saved files."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        # Hydra turns an exception raised in a callback into a warning and runs the job anyway: end here.
        try:
            check_run_dir(config)
        except TransferlabError as exc:
            fail(str(exc))

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        try:
            check_sweep_dir(config)
        except TransferlabError as exc:
            fail(str(exc))

    def on_run_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        folder = Path(config.hydra.runtime.output_dir)
        release()
        resumed = _resumed[-1] if _resumed else None
        _resumed.clear()
        if resumed is not None and folder.resolve() != resumed:
            _drop_hydra_only_folder(folder, resumed, config.hydra.job.name)

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        # Called once Hydra has saved .hydra/*.yaml, inside hydra.job.env_set: secret values are in os.environ.
        subdir = config.hydra.output_subdir
        files = [Path(config.hydra.runtime.output_dir) / subdir / name for name in HYDRA_FILES] if subdir else []
        if config.hydra.mode == RunMode.MULTIRUN:
            files.append(Path(str(config.hydra.sweep.dir)) / "multirun.yaml")
        for path in files:
            _redact_file(path)
        for handler in logging.getLogger().handlers:
            if not any(isinstance(f, RedactingFilter) for f in handler.filters):
                handler.addFilter(RedactingFilter())

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        if config.hydra.mode == RunMode.MULTIRUN:
            release(Path(config.hydra.runtime.output_dir))  # a job of an in-process sweep frees its folder


def check_run_dir(config: DictConfig) -> None:
    """Before Hydra writes into hydra.run.dir: it can be written, holds no other run, and no live run holds it."""
    if _non_chief(config):
        return  # a non-chief worker keeps no results; on a shared disk it shares the chief's folder
    folder = Path(str(config.hydra.run.dir)).expanduser().absolute()
    resume = _resume_target(config)
    if resume is not None and resume.is_dir():
        open_run_dir(resume)
    if resume is not None and folder.resolve() == resume.resolve():
        return
    taken = open_run_dir(folder)
    try:
        refuse_used(folder)  # checked under the lock: a run that just ended has written its results
    except ConfigError:
        if taken:
            release(folder)
        raise


def check_sweep_dir(config: DictConfig) -> None:
    """Before a sweep starts: hydra.sweep.dir can be written and holds no earlier sweep, whose jobs' folders
    this one would reuse."""
    from transferlab.sweeps.summary import SUMMARY_FILE

    folder = Path(str(config.hydra.sweep.dir)).expanduser().absolute()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"cannot create the sweep directory '{folder}' ({exc.strerror or exc}); "
            "give a writable folder: hydra.sweep.dir=<writable folder>"
        ) from exc
    found = [name for name in ("multirun.yaml", SUMMARY_FILE) if (folder / name).exists()]
    if found:
        raise ConfigError(
            f"'{folder}' already holds another sweep ({', '.join(found)}); start this sweep in a new folder, "
            "e.g. hydra.sweep.dir=<new folder>"
        )


class RedactingFilter(logging.Filter):
    """Keeps secrets out of the job log (train.log) and the console."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


def _redact_file(path: Path) -> None:
    try:
        text = path.read_text()
    except FileNotFoundError:
        return
    cleaned = redact(text)
    if cleaned != text:
        atomic.write_text(path, cleaned)


def _drop_hydra_only_folder(folder: Path, resumed: Path, job_name: str) -> None:
    """A resume elsewhere leaves this session's folder with Hydra's files only: its log joins the resumed run's."""
    log_file = folder / f"{job_name}.log"
    if not folder.is_dir() or {p.name for p in folder.iterdir()} - {".hydra", log_file.name, LOCK_FILE}:
        return
    if log_file.is_file():
        with (resumed / log_file.name).open("a") as target:
            target.write(log_file.read_text())
    shutil.rmtree(folder, ignore_errors=True)


def _resume_target(config: DictConfig) -> Optional[Path]:
    """The folder `resume=<dir>` names; None for a new run and for `resume=true` (found later)."""
    resume = OmegaConf.select(config, "resume", default=None)
    if not resume or str(resume).lower() in ("true", "latest"):
        return None
    return Path(str(resume)).expanduser().absolute()


def _non_chief(config: DictConfig) -> bool:
    from transferlab.training.distribute import worker_role

    trainer = config.get("trainer")
    return trainer is not None and trainer.get("strategy") == "multi_worker" and not worker_role(trainer).chief
