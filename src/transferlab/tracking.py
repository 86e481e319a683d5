"""Experiment trackers behind one small interface, so training code never asks which are on.

A tracker that fails is reported once and dropped: local outputs (history, models, summary) are
written by the run itself and never depend on a tracker.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Protocol

from transferlab.config import LoggerConfig

log = logging.getLogger(__name__)


class Tracker(Protocol):
    def log_params(self, params: dict[str, object]) -> None: ...

    def log_epoch(self, epoch: int, phase: str, metrics: dict[str, float]) -> None: ...

    def log_summary(self, summary: dict[str, object]) -> None: ...

    def close(self) -> None: ...


class Trackers:
    """Fans every call out to the active trackers; a tracker that raises is warned about and dropped."""

    def __init__(self, trackers: list[Tracker]):
        self._trackers = list(trackers)

    def log_params(self, params: dict[str, object]) -> None:
        self._each("log_params", params)

    def log_epoch(self, epoch: int, phase: str, metrics: dict[str, float]) -> None:
        self._each("log_epoch", epoch, phase, metrics)

    def log_summary(self, summary: dict[str, object]) -> None:
        self._each("log_summary", summary)

    def close(self) -> None:
        self._each("close")

    def _each(self, method: str, *args) -> None:
        for tracker in list(self._trackers):
            try:
                getattr(tracker, method)(*args)
            except Exception as exc:  # a tracker must never end a run
                log.warning(
                    "tracker %s failed in %s (%s); continuing without it, local outputs are unaffected",
                    type(tracker).__name__, method, exc,
                )
                self._trackers.remove(tracker)


PHASE_INDEX = {"head": 1, "fine_tune": 2}


class TensorBoardTracker:
    """Scalars of both phases on one epoch axis, train and validation overlaid as Keras writes them."""

    def __init__(self, log_dir: Path):
        import tensorflow as tf

        self._tf = tf
        self._writers = {
            split: tf.summary.create_file_writer(str(log_dir / split)) for split in ("train", "validation", "test")
        }

    def log_params(self, params: dict[str, object]) -> None:
        text = "\n".join(f"    {key}: {value}" for key, value in sorted(params.items()))
        with self._writers["train"].as_default():
            self._tf.summary.text("config", text, step=0)

    def log_epoch(self, epoch: int, phase: str, metrics: dict[str, float]) -> None:
        for name, value in metrics.items():
            split, tag = ("validation", name[4:]) if name.startswith("val_") else ("train", name)
            with self._writers[split].as_default():
                self._tf.summary.scalar(f"epoch_{tag}", value, step=epoch)
        with self._writers["train"].as_default():
            self._tf.summary.scalar("phase", PHASE_INDEX.get(phase, 0), step=epoch)

    def log_summary(self, summary: dict[str, object]) -> None:
        metrics = summary.get("metrics", {})
        step = int(summary.get("epochs", 0))
        with self._writers["test"].as_default():
            for name, value in metrics.items():
                if name.startswith("test/"):
                    self._tf.summary.scalar(f"epoch_{name[5:]}", value, step=step)

    def close(self) -> None:
        for writer in self._writers.values():
            writer.close()


@contextmanager
def open_trackers(cfg: LoggerConfig, run_dir: Path) -> Iterator[Trackers]:
    """Start the configured trackers; one that cannot start is warned about and left out."""
    trackers: list[Tracker] = []
    if cfg.tensorboard:
        try:
            trackers.append(TensorBoardTracker(run_dir / "tensorboard"))
        except Exception as exc:
            log.warning("TensorBoard tracker could not start (%s); continuing without it", exc)
    fanout = Trackers(trackers)
    try:
        yield fanout
    finally:
        fanout.close()
