"""Run directories: creating and locking one, finding the one a `resume` continues, and refusing a mismatch."""

from __future__ import annotations

import json
import logging
import signal
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from omegaconf import OmegaConf

from transferlab.config.convert import flatten
from transferlab.config.schema import ExperimentConfig
from transferlab.errors import ConfigError
from transferlab.repro import redact, write_code_state
from transferlab.training.run_guard import claim, note_resumed, refuse_used, release

log = logging.getLogger(__name__)

# Keys that may differ between a run and its resumption (the hardware may change; the global batch does not).
RESUME_FREE_KEYS = (
    "paths.output_dir", "resume", "trainer.verbose", "trainer.strategy", "trainer.logical_cpus", "trainer.jit_compile",
)


def prepare_run_dir(cfg: ExperimentConfig) -> Path:
    """The folder this run writes to, locked for the run: a new one, or the interrupted run `resume` names.

    The checks repeat the Hydra callback's (transferlab.run_guard.RunGuard) for `transferlab.train(cfg)`.
    """
    if not cfg.paths.output_dir or cfg.paths.output_dir == "???":
        raise ConfigError("paths.output_dir is not set; give the folder this run writes to")
    if cfg.resume:
        run_dir = find_resumable_run(cfg)
        try:
            taken = claim(run_dir)
        except OSError as exc:
            raise ConfigError(
                f"cannot write the run directory '{run_dir}' ({exc.strerror or exc}); resuming needs write access to it"
            ) from exc
        with released_on_failure(run_dir, taken):
            check_same_experiment(run_dir, cfg)
        note_resumed(run_dir)
        log.info("resuming the run in %s", run_dir)
        return run_dir
    run_dir = Path(cfg.paths.output_dir)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        taken = claim(run_dir)
    except OSError as exc:
        raise ConfigError(_unwritable(run_dir, exc)) from exc
    with released_on_failure(run_dir, taken):
        refuse_used(run_dir)
        try:
            (run_dir / "config.yaml").write_text(redact(OmegaConf.to_yaml(OmegaConf.structured(cfg))))
            write_code_state(run_dir)
        except OSError as exc:
            raise ConfigError(_unwritable(run_dir, exc)) from exc
    return run_dir


@contextmanager
def released_on_failure(run_dir: Path, taken: bool) -> Iterator[None]:
    """A run that never starts must not keep its folder locked (a notebook's kernel outlives it)."""
    try:
        yield
    except BaseException:
        if taken:
            release(run_dir)
        raise


def _unwritable(run_dir: Path, exc: OSError) -> str:
    return (
        f"cannot write the run directory '{run_dir}' ({exc.strerror or exc}); "
        "choose a writable folder with enough space (hydra.run.dir or paths.output_dir)"
    )


def find_resumable_run(cfg: ExperimentConfig) -> Path:
    """`resume=<run dir>`, or for `resume=true` the newest unfinished sibling of this run's folder."""
    if cfg.resume.lower() not in ("true", "latest"):
        run_dir = Path(cfg.resume).expanduser()
        if not (run_dir / "config.yaml").is_file():
            raise ConfigError(f"resume='{cfg.resume}' is not a run directory (it has no config.yaml)")
        if _status(run_dir) == "completed":
            raise ConfigError(f"the run in '{run_dir}' has completed; there is nothing to resume")
        return run_dir
    here = Path(cfg.paths.output_dir).resolve()
    candidates = [
        d for d in here.parent.iterdir()
        if d.resolve() != here and (d / "config.yaml").is_file() and _status(d) != "completed"
    ] if here.parent.is_dir() else []
    if not candidates:
        raise ConfigError(
            f"resume=true found no unfinished run under '{here.parent}'; give the run directory: resume=<path>"
        )
    return max(candidates, key=lambda d: (d / "config.yaml").stat().st_mtime)


def check_same_experiment(run_dir: Path, cfg: ExperimentConfig) -> None:
    """A resumed run must continue the same experiment, or its history would mix two."""
    saved = flatten_yaml(run_dir / "config.yaml")
    current = {k: v for k, v in flatten(cfg).items() if k not in RESUME_FREE_KEYS}
    saved = {k: v for k, v in saved.items() if k not in RESUME_FREE_KEYS}
    changed = sorted(k for k in set(saved) | set(current) if saved.get(k) != current.get(k))
    if changed:
        key = changed[0]
        raise ConfigError(
            f"cannot resume '{run_dir}' with a different config ({key}: {saved.get(key)!r} there, "
            f"{current.get(key)!r} now{f', and {len(changed) - 1} more' if len(changed) > 1 else ''}); "
            "resume with the run's own overrides"
        )


def flatten_yaml(path: Path) -> dict[str, object]:
    saved = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(ExperimentConfig), OmegaConf.load(path)))
    return flatten(saved)


def _status(run_dir: Path) -> str:
    try:
        return json.loads((run_dir / "summary.json").read_text()).get("status", "")
    except (OSError, ValueError):
        return ""


# The signals received inside `stop_on_signals`, by name.
_received: list[str] = []


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """SIGTERM (a scheduler's preemption) ends the run like Ctrl-C: the last epoch's checkpoint stays.

    The handler raises KeyboardInterrupt wherever Python code runs at that moment; if that is a
    finalizer, Python prints the exception and goes on, so the signal is also recorded, and
    `raise_if_signalled` (called as each epoch begins) ends the run then.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        _received.append(signal.Signals(signum).name)
        raise KeyboardInterrupt(f"received {_received[-1]}")

    _received.clear()
    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
        _received.clear()


def raise_if_signalled() -> None:
    """End the run now if a signal's KeyboardInterrupt was swallowed where it was raised."""
    if _received:
        raise KeyboardInterrupt(f"received {_received[-1]}")
