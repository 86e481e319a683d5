"""Compare runs from their files alone (summary.json, config.yaml, history.csv): no tracking service needed.

`load_runs` reads every run under a folder, single runs and multirun sweeps alike, into one DataFrame
(config keys as `dataset.name`-style columns, metrics as `test/accuracy`-style columns); `comparison_table`
keeps the hyperparameters that differ, the metrics, phase wall times and run ids, sorted by a metric;
`write_reports` saves it as CSV and as a self-contained HTML page with plots.
"""

from __future__ import annotations

import html
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import pandas as pd
import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from transferlab.errors import ConfigError, DataError, first_line

log = logging.getLogger(__name__)

# Config keys that say where or how a run was recorded, not what was trained.
NOT_HYPERPARAMETERS = ("paths.", "logger.", "trainer.verbose", "name", "tags")
DEFAULT_SORT = ("test/accuracy", "best/val_accuracy", "best/val_loss")
ID_COLUMNS = ("neptune_id", "mlflow_run_id")
# Metric columns in this order, so each run reads left to right: its linear baseline on the frozen features,
# the head phase alone, fine-tuning, then the final model (best epoch, last epoch, test split).
METRIC_GROUPS = ("baseline/", "head/", "fine_tune/", "best/", "final/", "test/")


@dataclass
class Filters:
    tags: tuple[str, ...] = ()
    name: Optional[str] = None
    sweep: Optional[str] = None


def find_runs(root: Path) -> list[Path]:
    """Every folder under `root` holding a summary.json, in path order."""
    if not root.is_dir():
        raise ConfigError(f"no folder '{root}' to compare runs in; pass the outputs folder of your runs")
    return sorted(path.parent for path in root.rglob("summary.json"))


@dataclass
class FoundRuns:
    """The runs read under a folder, and the run folders that could not be read, with why."""

    runs: pd.DataFrame
    unreadable: list[tuple[str, str]]


def load_runs(root: Path, filters: Optional[Filters] = None) -> pd.DataFrame:
    """One row per readable run: run folder, name, status, tags, sweep, config keys, metrics, phase times, run ids."""
    return scan_runs(root, filters).runs


def scan_runs(root: Path, filters: Optional[Filters] = None) -> FoundRuns:
    """Every run under `root`: a broken run folder is listed as unreadable and the others are still read.

    Refuses only when there is nothing to compare: no run at all, or none of them readable.
    """
    run_dirs = find_runs(root)
    if not run_dirs:
        raise DataError(f"no runs under '{root}' (no summary.json in it or below); pass the outputs folder of your runs")
    rows, unreadable = [], []
    for run_dir in run_dirs:
        try:
            rows.append(_read_run(run_dir, root))
        except UnreadableRun as exc:
            unreadable.append((_relative(run_dir, root), str(exc)))
    if not rows:
        run, reason = unreadable[0]
        raise DataError(
            f"none of the {len(unreadable)} run(s) under '{root}' could be read, e.g. '{run}' ({reason}); "
            "fix or remove the damaged summary.json / config.yaml files"
        )
    return FoundRuns(pd.DataFrame([row for row in rows if _matches(row, filters or Filters())]), unreadable)


def _relative(run_dir: Path, root: Path) -> str:
    return run_dir.relative_to(root).as_posix() or "."


class UnreadableRun(Exception):
    """A run folder's summary.json or config.yaml is damaged; the message names the file and why."""


def _read_run(run_dir: Path, root: Path) -> dict[str, object]:
    """A run's row; raises UnreadableRun on a summary.json or config.yaml that is not what a run writes."""
    summary = _read(run_dir / "summary.json", lambda path: json.loads(path.read_text()))
    config_file = run_dir / "config.yaml"
    config = _read(config_file, lambda path: OmegaConf.to_container(OmegaConf.load(path))) if config_file.is_file() else {}
    metrics = summary.get("metrics") or {}
    if not isinstance(metrics, dict):
        raise UnreadableRun("summary.json: its metrics are not a mapping of names to numbers")
    odd = [name for name, value in metrics.items() if not isinstance(value, (int, float)) or isinstance(value, bool)]
    if odd:
        raise UnreadableRun(f"summary.json: metric {odd[0]!r} is not a number")
    config = _flatten(config)
    tracking = summary.get("tracking") or {}
    row: dict[str, object] = {
        "run": _relative(run_dir, root),
        "name": config.get("name"),
        "status": summary.get("status"),
        **config,
        # After the config: the tags a run was recorded with include the automatic ones.
        "tags": list(tracking.get("tags") or config.get("tags") or []),
        "sweep": tracking.get("sweep"),
        **metrics,
        **{f"time/{phase}": p.get("wall_time_s") for phase, p in (summary.get("phases") or {}).items()},
        "time/total": summary.get("wall_time_s"),
        "neptune_id": (tracking.get("neptune") or {}).get("id"),
        "mlflow_run_id": (tracking.get("mlflow") or {}).get("run_id"),
    }
    return row


def _read(path: Path, parse: Callable[[Path], object]) -> dict:
    """A run file parsed into a mapping, or UnreadableRun naming the file and the first line of why."""
    try:
        content = parse(path)
    except (OSError, ValueError, OmegaConfBaseException, yaml.YAMLError) as exc:
        raise UnreadableRun(f"{path.name}: {first_line(exc, with_type=True)}") from exc
    if not isinstance(content, dict):
        raise UnreadableRun(f"{path.name}: holds a {type(content).__name__}, not a mapping")
    return content


def _flatten(node: object, prefix: str = "") -> dict[str, object]:
    if not isinstance(node, dict):
        return {prefix[:-1]: node}
    flat: dict[str, object] = {}
    for key, value in node.items():
        flat.update(_flatten(value, f"{prefix}{key}."))
    return flat


def _matches(row: dict, filters: Filters) -> bool:
    if filters.name is not None and row["name"] != filters.name:
        return False
    # A sweep is named by its folder (`multirun/<start time>`), which is also the id in the run's tags.
    if filters.sweep is not None and filters.sweep not in (row["sweep"], *row["run"].split("/")):
        return False
    return all(tag in row["tags"] for tag in filters.tags)


def varied_parameters(runs: pd.DataFrame) -> list[str]:
    """Config keys whose value is not the same in every run."""
    config_columns = [c for c in runs.columns if "." in c and "/" not in c]
    return [
        c for c in config_columns
        if not c.startswith(NOT_HYPERPARAMETERS) and runs[c].map(repr).nunique() > 1
    ]


def default_sort_metric(runs: pd.DataFrame) -> str:
    return next((m for m in DEFAULT_SORT if m in runs.columns), "run")


def comparison_table(runs: pd.DataFrame, sort_by: Optional[str] = None, ascending: Optional[bool] = None) -> pd.DataFrame:
    """Varied hyperparameters, metrics, phase times and run ids, best run first by `sort_by`."""
    if runs.empty:
        return runs
    sort_by = sort_by or default_sort_metric(runs)
    metrics = sorted((c for c in runs.columns if c.startswith(METRIC_GROUPS)),
                     key=lambda c: (METRIC_GROUPS.index(c.split("/", 1)[0] + "/"), c))
    if sort_by not in runs.columns:
        raise ConfigError(f"cannot sort by '{sort_by}': no run has it; use one of {', '.join(metrics) or 'run'}")
    if ascending is None:
        ascending = "loss" in sort_by or sort_by in ("run", "best/epoch")
    times = sorted(c for c in runs.columns if c.startswith("time/"))
    ids = [c for c in ID_COLUMNS if runs[c].notna().any()]
    columns = ["run", "name", "status", *varied_parameters(runs), *metrics, *times, *ids]
    table = runs[columns].copy()
    for column in table.columns:
        if table[column].map(lambda v: isinstance(v, (list, dict))).any():
            table[column] = table[column].map(str)
    return table.sort_values(sort_by, ascending=ascending, na_position="last", kind="stable").reset_index(drop=True)


def format_table(table: pd.DataFrame) -> str:
    if table.empty:
        return "no runs found"
    return table.to_string(index=False, float_format=lambda v: f"{v:.4g}")


def format_unreadable(unreadable: list[tuple[str, str]]) -> str:
    """The run folders left out of the comparison, one line each with the reason."""
    return "\n".join(f"unreadable run {run}: {reason}" for run, reason in unreadable)


def write_reports(
    table: pd.DataFrame, root: Path, out_dir: Path, sort_by: str, unreadable: Optional[list[tuple[str, str]]] = None
) -> tuple[Path, Path]:
    """comparison.csv and comparison.html (the table, unreadable runs, metric against each varied
    hyperparameter, curves)."""
    csv_path, html_path = out_dir / "comparison.csv", out_dir / "comparison.html"
    page = _html_report(table, root, sort_by, unreadable or [])
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        table.to_csv(csv_path, index=False)
        html_path.write_text(page)
    except OSError as exc:
        raise ConfigError(
            f"cannot write the comparison to '{out_dir}' ({exc.strerror or exc}); choose a writable folder with --out"
        ) from exc
    return csv_path, html_path


def _html_report(table: pd.DataFrame, root: Path, sort_by: str, unreadable: list[tuple[str, str]]) -> str:
    from transferlab.reporting import plots

    figures = []
    if not table.empty and sort_by in table.columns:
        for parameter in varied_parameters(table):
            figures.append(plots.metric_against(list(table[parameter]), list(table[sort_by]), parameter, sort_by))
    curves = {run: _history(root / run) for run in table.get("run", [])}
    curves = {run: rows for run, rows in curves.items() if rows}
    for metric in ("val_accuracy", "val_loss"):
        if any(metric in row for rows in curves.values() for row in rows):
            figures.append(plots.overlaid_curves(curves, metric))
    images = "\n".join(f'<img src="data:image/png;base64,{plots.to_base64_png(f)}">' for f in figures)
    return (
        "<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>transferlab: run comparison</title>"
        "<style>body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse;font-size:13px}"
        "td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}img{max-width:48%;margin:4px}</style>"
        f"</head><body><h1>Runs under {html.escape(str(root))}</h1>"
        f"<p>{len(table)} run(s), sorted by <b>{html.escape(sort_by)}</b>.</p>"
        f"{table.to_html(index=False, float_format=lambda v: f'{v:.4g}', na_rep='')}"
        f"{_unreadable_html(unreadable)}"
        f"<h2>Plots</h2>{images}</body></html>\n"
    )


def _unreadable_html(unreadable: list[tuple[str, str]]) -> str:
    if not unreadable:
        return ""
    items = "".join(f"<li>{html.escape(run)}: {html.escape(reason)}</li>" for run, reason in unreadable)
    return f"<h2>Unreadable runs (left out)</h2><ul>{items}</ul>"


def _history(run_dir: Path) -> list[dict]:
    """The run's epochs for the curves; a damaged history.csv leaves that run's curve out, not the report."""
    path = run_dir / "history.csv"
    if not path.is_file():
        return []
    try:
        return pd.read_csv(path).to_dict("records")
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        log.warning("no curves for %s: cannot read history.csv (%s)", run_dir, exc)
        return []
