"""MLflow: params, metrics per epoch, the run's files as artifacts and its model as an MLflow model; a resumed
run continues its MLflow run."""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from transferlab.tracking.base import NoOpTracker, describe, system_info
from transferlab.tracking.stores import check_mlflow_store, sqlite_artifact_root

if TYPE_CHECKING:
    from transferlab.config.schema import MlflowConfig

log = logging.getLogger(__name__)

# The run's final model, logged as an MLflow model under this artifact path.
MODEL_FILE, MODEL_ARTIFACT = "model.keras", "model"


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
        if path.name == MODEL_FILE:
            self._log_model(path)
        else:
            self._client.log_artifact(self._run_id, str(path), artifact_path="plots" if path.suffix == ".png" else None)

    def _log_model(self, path: Path) -> None:
        """The model as an MLflow model (transferlab.tracking.mlflow_model), `runs:/<id>/model`; when that
        cannot be written, the file as it is, so the run's model still reaches the store."""
        from transferlab.tracking.mlflow_model import save_mlflow_model

        with tempfile.TemporaryDirectory(prefix="transferlab-mlflow-") as scratch:
            folder = Path(scratch) / MODEL_ARTIFACT
            try:
                save_mlflow_model(path, folder)
            except Exception as exc:  # MLflow, Keras and the data plan each raise their own types
                log.warning("MLflow got %s as a plain file, not as an MLflow model (%s)", path.name, describe(exc))
                self._client.log_artifact(self._run_id, str(path))
                return
            self._client.log_artifacts(self._run_id, str(folder), MODEL_ARTIFACT)

    def run_info(self) -> dict[str, object]:
        return {"mlflow": {"run_id": self._run_id, "experiment_id": self._experiment_id, "tracking_uri": self._uri}}

    def close(self) -> None:
        self._client.set_terminated(self._run_id)
