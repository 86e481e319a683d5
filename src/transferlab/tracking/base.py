"""Experiment trackers behind one small interface, so training code never asks which are on.

A tracker that cannot start, or fails later, is reported once and dropped: local outputs (history,
models, summary, plots) are written by the run itself and never depend on a tracker. TensorFlow,
Neptune and MLflow are imported only inside the tracker that needs them.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Optional, Protocol

from transferlab.repro import environment_info, redact

log = logging.getLogger(__name__)


# The run's own files every tracker receives at the end, besides <run dir>/plots/*.png.
RUN_FILES = ("config.yaml", "model.keras", "history.csv", "summary.json")


class Tracker(Protocol):
    def log_params(self, params: dict[str, object]) -> None: ...

    def log_epoch(self, epoch: int, phase: str, metrics: dict[str, float]) -> None: ...

    def log_summary(self, summary: dict[str, object]) -> None: ...

    def log_artifact(self, path: Path) -> None: ...

    def run_info(self) -> dict[str, object]: ...

    def close(self) -> None: ...


class NoOpTracker:
    """Defaults for the parts of the interface a tracker has no use for."""

    def log_params(self, params: dict[str, object]) -> None:
        pass

    def log_epoch(self, epoch: int, phase: str, metrics: dict[str, float]) -> None:
        pass

    def log_summary(self, summary: dict[str, object]) -> None:
        pass

    def log_artifact(self, path: Path) -> None:
        pass

    def run_info(self) -> dict[str, object]:
        return {}

    def close(self) -> None:
        pass


class Trackers:
    """Fans every call out to the active trackers; a tracker that raises is warned about and dropped."""

    def __init__(self, trackers: list[Tracker], tags: Optional[list[str]] = None, sweep: Optional[str] = None):
        self._trackers = list(trackers)
        self.tags = list(tags or [])
        self.sweep = sweep

    def log_params(self, params: dict[str, object]) -> None:
        self._each("log_params", {k: redact(v) if isinstance(v, str) else v for k, v in params.items()})

    def log_epoch(self, epoch: int, phase: str, metrics: dict[str, float]) -> None:
        self._each("log_epoch", epoch, phase, metrics)

    def log_summary(self, summary: dict[str, object]) -> None:
        self._each("log_summary", summary)

    def log_artifacts(self, run_dir: Path) -> None:
        """Send the run's config, final model, history, summary and plots to every tracker."""
        paths = [run_dir / name for name in RUN_FILES] + sorted((run_dir / "plots").glob("*.png"))
        for path in paths:
            if path.is_file():
                self._each("log_artifact", path)

    def run_info(self) -> dict[str, object]:
        """Tags, sweep, and each tracker's run id (and URL), as recorded in summary.json."""
        info: dict[str, object] = {"tags": self.tags, "sweep": self.sweep}
        for tracker in list(self._trackers):
            info.update(self._call(tracker, "run_info") or {})
        return info

    def close(self) -> None:
        self._each("close")

    def _each(self, method: str, *args) -> None:
        for tracker in list(self._trackers):
            self._call(tracker, method, *args)

    def _call(self, tracker: Tracker, method: str, *args):
        try:
            return getattr(tracker, method)(*args)
        except Exception as exc:  # a tracker must never end a run
            log.warning(
                "tracker %s failed in %s (%s); continuing without it, local outputs are unaffected",
                type(tracker).__name__, method, describe(exc),
            )
            self._trackers.remove(tracker)
            return None


def describe(exc: BaseException) -> str:
    """One line for a warning: Neptune's errors span many lines with colour codes and a banner first."""
    lines = [line.strip() for line in re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).splitlines()]
    first = next((line for line in lines if line and not line.startswith("---")), "")
    return redact(f"{type(exc).__name__}: {first}" if first else type(exc).__name__)


def system_info() -> dict[str, object]:
    """Git commit and dirty flag, package versions, hostname, and the device training runs on."""
    import tensorflow as tf

    return {**environment_info(), "device": "GPU" if tf.config.list_physical_devices("GPU") else "CPU"}


def unflatten(flat: dict[str, object], sep: str) -> dict[str, object]:
    nested: dict[str, object] = {}
    for key, value in flat.items():
        *parents, leaf = key.split(sep)
        node = nested
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return nested


def scalar(value: object) -> object:
    """HParams take bool, int, float or str."""
    return value if isinstance(value, (bool, int, float, str)) else str(value)
