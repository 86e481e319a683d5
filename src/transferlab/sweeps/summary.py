"""The sweep summary: one row per multirun job, written as `sweep_summary.csv` when the sweep ends.

A Hydra callback records each job's number, overrides and outcome in `<job dir>/.hydra/job_status.json`
as it starts and ends (in the job's own process, so it works under any launcher); at the end of the
multirun the records are joined with each run's summary.json and config into one table.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Optional

import pandas as pd
from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from transferlab.compat.hydra import job_result
from transferlab.repro import redact

log = logging.getLogger(__name__)

STATUS_FILE = "job_status.json"
SUMMARY_FILE = "sweep_summary.csv"
KEY_SETTINGS = (
    "dataset.name", "base_model.name", "head.dropout", "schedule.head.lr", "schedule.fine_tune.lr",
    "schedule.fine_tune.unfreeze", "trainer.seed",
)
MAIN_METRICS = ("best/val_loss", "best/val_accuracy", "test/loss", "test/accuracy", "baseline/test_accuracy")
# Printed at the end of a sweep; the CSV has every column.
PRINTED_ERROR_LENGTH = 70


class SweepSummary(Callback):
    """Records every multirun job and writes `sweep_summary.csv` in the sweep folder at the end."""

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        if _is_multirun(config):
            _write_status(config, {"status": "running"})

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        if _is_multirun(config):
            _write_status(config, job_outcome(job_return))

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        table = sweep_table(sweep_dir)
        if table.empty:
            return
        path = sweep_dir / SUMMARY_FILE
        table.to_csv(path, index=False)
        print(format_sweep_table(table))
        print(f"sweep summary ({describe_counts(table)}): {path}")


def _is_multirun(config: DictConfig) -> bool:
    return config.hydra.mode == RunMode.MULTIRUN


def _write_status(config: DictConfig, outcome: dict[str, Any]) -> None:
    job = config.hydra.job
    record = {"job": job.num, "overrides": [redact(o) for o in config.hydra.overrides.task], **outcome}
    folder = Path(config.hydra.runtime.output_dir) / ".hydra"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / STATUS_FILE).write_text(json.dumps(record, indent=2, default=str))


def job_outcome(job_return: JobReturn) -> dict[str, Any]:
    """Status, returned value and error of a finished job, in JSON-ready form."""
    if job_return.status == JobStatus.COMPLETED:
        return {"status": "finished", "value": _as_float(job_result(job_return))}
    error = job_result(job_return)
    return {"status": "failed", "error": f"{type(error).__name__}: {error}"}


def _as_float(value: object) -> Optional[float]:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def sweep_table(sweep_dir: Path) -> pd.DataFrame:
    """One row per job that started under `sweep_dir`, in job order."""
    records = [_read_json(path) | {"run_dir": path.parent.parent} for path in _status_files(sweep_dir)]
    records.sort(key=lambda r: r["job"])
    swept = _swept_keys(records)
    return pd.DataFrame([_row(record, swept) for record in records])


def _status_files(sweep_dir: Path) -> list[Path]:
    return [p for p in sweep_dir.rglob(STATUS_FILE) if p.parent.name == ".hydra"]


def _swept_keys(records: list[dict]) -> list[str]:
    """Keys set on the command line that differ between jobs, in the order they first appear."""
    values: dict[str, set[str]] = {}
    for record in records:
        for key, value in _parse_overrides(record["overrides"]).items():
            values.setdefault(key, set()).add(value)
    return [key for key, seen in values.items() if len(seen) > 1 or len(records) == 1]


def _parse_overrides(overrides: list[str]) -> dict[str, str]:
    pairs = (o.lstrip("+~").split("=", 1) for o in overrides)
    return {pair[0]: pair[1] if len(pair) == 2 else "" for pair in pairs}


def _row(record: dict, swept: list[str]) -> dict[str, object]:
    run_dir: Path = record["run_dir"]
    summary = _read_json(run_dir / "summary.json")
    config = _read_config(run_dir / ".hydra" / "config.yaml")
    status, error = _status(record, summary)
    metric = _select(config, "optimized_metric")
    metrics = summary.get("metrics", {})
    overrides = _parse_overrides(record["overrides"])
    settings = {key: _select(config, key, overrides.get(key)) for key in [*swept, *KEY_SETTINGS]}
    return {
        "job": record["job"],
        "status": status,
        "overrides": " ".join(record["overrides"]),
        **settings,
        "optimized_metric": metric,
        "value": record.get("value", metrics.get(metric)),
        **{name: metrics.get(name) for name in MAIN_METRICS},
        "wall_time_s": summary.get("wall_time_s"),
        "run_dir": str(run_dir),
        "error": error,
    }


def _status(record: dict, summary: dict) -> tuple[str, Optional[str]]:
    """A job still `running` at the end of the sweep was stopped; its summary.json may say how."""
    if record["status"] != "running":
        return record["status"], record.get("error")
    if summary.get("status") == "failed":
        return "failed", summary.get("error")
    return "interrupted", summary.get("error")


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def _read_config(path: Path) -> Optional[DictConfig]:
    return OmegaConf.load(path) if path.is_file() else None  # type: ignore[return-value]


def _select(config: Optional[DictConfig], key: str, fallback: object = None) -> object:
    """A config value (group choices like `head=mlp` are not values: the override text stands in)."""
    if config is None:
        return fallback
    value = OmegaConf.select(config, key, default=fallback, throw_on_resolution_failure=False)
    return fallback if isinstance(value, DictConfig) or value is None else value


def describe_counts(table: pd.DataFrame) -> str:
    counts = table["status"].value_counts()
    parts = [f"{counts[s]} {s}" for s in ("finished", "failed", "interrupted") if s in counts]
    return f"{len(table)} jobs: {', '.join(parts)}"


def format_sweep_table(table: pd.DataFrame) -> str:
    """The columns that tell jobs apart: job, status, swept settings, value, test accuracy, error."""
    columns = list(table.columns)
    between = columns[columns.index("overrides") + 1 : columns.index("optimized_metric")]
    settings = [c for c in between if table[c].map(repr).nunique() > 1]
    columns = ["job", "status", *settings, "value", "test/accuracy", "error"]
    shown = table[columns].copy()
    shown["error"] = shown["error"].map(lambda e: "" if not isinstance(e, str) else e[:PRINTED_ERROR_LENGTH])
    return shown.to_string(index=False, na_rep="", float_format=lambda v: f"{v:.4g}")
