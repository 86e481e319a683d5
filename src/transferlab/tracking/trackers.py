"""Opening the configured trackers for a run, with its tags and sweep id."""

from __future__ import annotations

import logging
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, Optional

from transferlab.repro import redact
from transferlab.tracking.base import Tracker, Trackers, describe
from transferlab.tracking.csv_tracker import CsvTracker
from transferlab.tracking.mlflow_tracker import MlflowTracker
from transferlab.tracking.neptune_tracker import NeptuneTracker
from transferlab.tracking.stores import StoreUnreachable
from transferlab.tracking.tensorboard_tracker import TensorBoardTracker

if TYPE_CHECKING:
    from transferlab.config.schema import ExperimentConfig

log = logging.getLogger(__name__)


def run_tags(cfg: "ExperimentConfig", sweep: Optional[str]) -> list[str]:
    """The experiment's tags plus automatic ones: dataset, base model, and the sweep of a multirun."""
    tags = [*cfg.tags, f"dataset:{cfg.dataset.name}", f"base_model:{cfg.base_model.name}"]
    if sweep:
        tags.append(f"sweep:{sweep}")
    return list(dict.fromkeys(tags))


def hydra_sweep_id() -> Optional[str]:
    """The sweep folder's name (its start time) when Hydra runs this job as part of a multirun."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return None
    return Path(HydraConfig.get().sweep.dir).name


def _factories(cfg: "ExperimentConfig", run_dir: Path, tags: list[str]) -> list[tuple[str, bool, Callable[[], Tracker]]]:
    logger = cfg.logger
    return [
        ("TensorBoard", logger.tensorboard, lambda: TensorBoardTracker(run_dir / "tensorboard")),
        ("CSV", logger.csv, lambda: CsvTracker(run_dir / "csv")),
        ("Neptune", logger.neptune is not None, lambda: NeptuneTracker(logger.neptune, cfg.name, tags, run_dir)),
        ("MLflow", logger.mlflow is not None, lambda: MlflowTracker(logger.mlflow, cfg.name, tags)),
    ]


EXTRAS = {"mlflow": "pip install -e '.[mlflow]'"}


@contextmanager
def open_trackers(cfg: "ExperimentConfig", run_dir: Path) -> Iterator[Trackers]:
    """Start the configured trackers; one that cannot start is warned about and left out."""
    sweep = hydra_sweep_id()
    tags = run_tags(cfg, sweep)
    trackers: list[Tracker] = []
    for name, wanted, start in _factories(cfg, run_dir, tags):
        if not wanted:
            continue
        try:
            trackers.append(start())
        except Exception as exc:
            hint = f"; install it with {EXTRAS[exc.name]}" if isinstance(exc, ImportError) and exc.name in EXTRAS else ""
            reason = redact(str(exc)) if isinstance(exc, StoreUnreachable) else describe(exc)
            log.warning("%s tracker could not start (%s)%s; continuing without it", name, reason, hint)
    fanout = Trackers(trackers, tags, sweep)
    try:
        yield fanout
    finally:
        fanout.close()
