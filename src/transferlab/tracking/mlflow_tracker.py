"""MLflow: params, metrics per epoch, the run's files as artifacts; a resumed run continues its MLflow run."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

from transferlab.tracking.base import NoOpTracker, system_info
from transferlab.tracking.stores import check_mlflow_store, sqlite_artifact_root

if TYPE_CHECKING:
    from transferlab.config.schema import MlflowConfig


class MlflowTracker(NoOpTracker):
    """An MLflow run in any tracking store; a SQLite URI gets its artifact folder beside the database."""

    def __init__(self, cfg: "MlflowConfig", name: str, tags: list[str]):
        check_mlflow_store(cfg.tracking_uri)
        from mlflow.tracking import MlflowClient

        self._client = MlflowClient(tracking_uri=cfg.tracking_uri)
        experiment_name = cfg.experiment or name
        experiment = self._client.get_experiment_by_name(experiment_name)
        experiment_id = (
            experiment.experiment_id
            if experiment
            else self._client.create_experiment(experiment_name, artifact_location=sqlite_artifact_root(cfg.tracking_uri))
        )
        system = system_info()
        run_tags = {
            "tags": ", ".join(tags),
            **{tag.split(":", 1)[0]: tag.split(":", 1)[1] for tag in tags if ":" in tag},
            "mlflow.source.git.commit": str(system.get("git", {}).get("commit", "")),
            "hostname": str(system["hostname"]),
            "device": str(system["device"]),
        }
        self._run_id = self._client.create_run(experiment_id, run_name=name, tags=run_tags).info.run_id
        self._experiment_id = experiment_id
        self._uri = cfg.tracking_uri

    def log_params(self, params: dict[str, object]) -> None:
        from mlflow.entities import Param

        items = [Param(key, str(value)[:6000]) for key, value in params.items()]
        for start in range(0, len(items), 100):  # MLflow takes at most 100 parameters a batch
            self._client.log_batch(self._run_id, params=items[start : start + 100])

    def log_epoch(self, epoch: int, phase: str, metrics: dict[str, float]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(f"{phase}/{name}", value, now, epoch) for name, value in metrics.items()]
        batch += [Metric(name, value, now, epoch) for name, value in metrics.items()]
        self._client.log_batch(self._run_id, metrics=batch)

    def log_summary(self, summary: dict[str, object]) -> None:
        from mlflow.entities import Metric

        now, step = int(time.time() * 1000), int(summary.get("epochs", 0))
        batch = [Metric(name, value, now, step) for name, value in summary.get("metrics", {}).items()]
        batch += [
            Metric(f"wall_time_s/{phase}", p["wall_time_s"], now, step) for phase, p in summary.get("phases", {}).items()
        ]
        self._client.log_batch(self._run_id, metrics=batch)

    def log_artifact(self, path: Path) -> None:
        self._client.log_artifact(self._run_id, str(path), artifact_path="plots" if path.suffix == ".png" else None)

    def run_info(self) -> dict[str, object]:
        return {"mlflow": {"run_id": self._run_id, "experiment_id": self._experiment_id, "tracking_uri": self._uri}}

    def close(self) -> None:
        self._client.set_terminated(self._run_id)
