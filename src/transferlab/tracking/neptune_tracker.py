"""Neptune (offline or async): metrics, parameters and the run's files, its run id kept for resume."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

from transferlab.tracking.base import NoOpTracker, system_info, unflatten
from transferlab.tracking.stores import check_neptune_server

if TYPE_CHECKING:
    from neptune import Run

    from transferlab.config.schema import NeptuneConfig

# What the run records is chosen here; Neptune's own capture would add stdout and source files.
NO_CAPTURE = {"capture_stdout": False, "capture_stderr": False, "capture_hardware_metrics": False,
              "capture_traceback": False, "source_files": [], "git_ref": False}


class NeptuneTracker(NoOpTracker):
    """A Neptune run: parameters, per-phase metric series on the run's epoch axis, results, files.

    The client reads the API token from NEPTUNE_API_TOKEN itself; it is never passed, stored or logged here.
    """

    def __init__(self, cfg: "NeptuneConfig", name: str, tags: list[str], run_dir: Path):
        if cfg.mode in ("async", "sync"):
            check_neptune_server()
        import neptune
        from neptune.utils import stringify_unsupported

        self._stringify = stringify_unsupported
        self._mode = str(cfg.mode)
        self._run = neptune.init_run(
            project=cfg.project,
            mode=self._mode,
            name=cfg.name or name,
            description=cfg.description,
            tags=list(dict.fromkeys([*tags, *cfg.tags])),
            # Stable per run directory: a resumed run (resume=...) re-opens the same Neptune run.
            custom_run_id=neptune_run_id(run_dir),
            **NO_CAPTURE,
        )
        self._run["system"] = stringify_unsupported(system_info())

    def log_params(self, params: dict[str, object]) -> None:
        self._run["parameters"] = self._stringify(unflatten(params, "."))

    def log_epoch(self, epoch: int, phase: str, metrics: dict[str, float]) -> None:
        for name, value in metrics.items():
            self._run[f"metrics/{phase}/{name}"].append(value, step=epoch)
            self._run[f"metrics/all/{name}"].append(value, step=epoch)

    def log_summary(self, summary: dict[str, object]) -> None:
        self._run["results"] = unflatten(summary.get("metrics", {}), "/")
        phases = summary.get("phases", {})
        self._run["results/wall_time_s"] = {name: p.get("wall_time_s") for name, p in phases.items()}
        self._run["results/status"] = summary.get("status", "")

    def log_artifact(self, path: Path) -> None:
        field = f"plots/{path.stem}" if path.suffix == ".png" else f"artifacts/{path.name}"
        self._run[field].upload(str(path))

    def run_info(self) -> dict[str, object]:
        if self._mode in ("offline", "debug"):
            # No server assigned an id: the local one is what `neptune sync` later uploads.
            return {"neptune": {"id": self._run.get_url(), "url": None, "mode": self._mode}}
        return {"neptune": {"id": self._run["sys/id"].fetch(), "url": self._run.get_url(), "mode": self._mode}}

    def close(self) -> None:
        self._run.stop()


def reopen_run(cfg: "NeptuneConfig", run_id: str, mode: str) -> "Run":
    """The run `run_id` (e.g. "PROJ-12") on its server again (async or sync mode), to add fields after it ended."""
    check_neptune_server()
    import neptune

    return neptune.init_run(project=cfg.project, mode=mode, with_id=run_id, **NO_CAPTURE)


def neptune_run_id(run_dir: Path) -> str:
    """Neptune's custom run id for a run directory (at most 36 characters)."""
    return hashlib.sha1(str(run_dir.resolve()).encode()).hexdigest()[:32]
