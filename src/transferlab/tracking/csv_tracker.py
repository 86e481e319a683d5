"""A plain CSV log of every metric a tracker receives, readable without any tracker installed."""

from __future__ import annotations

import csv
from pathlib import Path

from transferlab.tracking.base import NoOpTracker


class CsvTracker(NoOpTracker):
    """Parameters and metrics as plain CSV, appended as they arrive (readable while the run goes on)."""

    def __init__(self, folder: Path):
        folder.mkdir(parents=True, exist_ok=True)
        self._metrics = folder / "metrics.csv"
        self._params = folder / "params.csv"

    def log_params(self, params: dict[str, object]) -> None:
        with self._params.open("w", newline="") as f:
            csv.writer(f).writerows([("key", "value"), *sorted(params.items())])

    def log_epoch(self, epoch: int, phase: str, metrics: dict[str, float]) -> None:
        self._append([(epoch, phase, name, value) for name, value in metrics.items()])

    def log_summary(self, summary: dict[str, object]) -> None:
        epochs = summary.get("epochs", 0)
        self._append([(epochs, "summary", name, value) for name, value in summary.get("metrics", {}).items()])

    def _append(self, rows: list[tuple]) -> None:
        new = not self._metrics.exists()
        with self._metrics.open("a", newline="") as f:
            writer = csv.writer(f)
            if new:
                writer.writerow(("epoch", "phase", "metric", "value"))
            writer.writerows(rows)
