"""Experiment trackers behind one small interface, so training code never asks which are on.

A tracker that cannot start, or fails later, is reported once and dropped: local outputs (history,
models, summary, plots) are written by the run itself and never depend on a tracker. TensorFlow,
Neptune and MLflow are imported only inside the tracker that needs them.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import os
import re
import socket
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit
from typing import TYPE_CHECKING, Callable, Iterator, Optional, Protocol

from transferlab.repro import environment_info, redact

if TYPE_CHECKING:
    from transferlab.config import ExperimentConfig, MlflowConfig, NeptuneConfig

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


PHASE_INDEX = {"head": 1, "fine_tune": 2}

# Hyperparameters shown as HParams columns in TensorBoard (every key still goes to the other trackers).
HPARAM_KEYS = (
    "name", "dataset.name", "dataset.batch_size", "dataset.train_per_class", "base_model.name",
    "base_model.weights", "head.pooling", "head.hidden_units", "head.dropout", "augmentation.flip",
    "augmentation.rotation", "augmentation.zoom", "optimizer.name", "optimizer.weight_decay",
    "schedule.head.epochs", "schedule.head.lr", "schedule.fine_tune.epochs", "schedule.fine_tune.lr",
    "schedule.fine_tune.unfreeze", "trainer.seed",
)
HPARAM_METRICS = ("test/accuracy", "test/loss", "best/val_accuracy", "best/val_loss")


class TensorBoardTracker(NoOpTracker):
    """Scalars of both phases on one epoch axis, HParams for comparing runs, and the plots as images."""

    def __init__(self, log_dir: Path):
        import tensorflow as tf

        self._tf = tf
        self._root = tf.summary.create_file_writer(str(log_dir))
        self._writers = {
            split: tf.summary.create_file_writer(str(log_dir / split)) for split in ("train", "validation", "test")
        }
        self._step = 0

    def log_params(self, params: dict[str, object]) -> None:
        from tensorboard.plugins.hparams import api as hp

        text = "\n".join(f"    {key}: {value}" for key, value in sorted(params.items()))
        with self._writers["train"].as_default():
            self._tf.summary.text("config", text, step=0)
        hparams = {key: _scalar(params[key]) for key in HPARAM_KEYS if key in params}
        with self._root.as_default():
            hp.hparams_config(
                hparams=[hp.HParam(key) for key in hparams],
                metrics=[hp.Metric(name) for name in HPARAM_METRICS],
            )
            hp.hparams(hparams)

    def log_epoch(self, epoch: int, phase: str, metrics: dict[str, float]) -> None:
        for name, value in metrics.items():
            split, tag = ("validation", name[4:]) if name.startswith("val_") else ("train", name)
            with self._writers[split].as_default():
                self._tf.summary.scalar(f"epoch_{tag}", value, step=epoch)
        with self._writers["train"].as_default():
            self._tf.summary.scalar("phase", PHASE_INDEX.get(phase, 0), step=epoch)
        self._step = epoch

    def log_summary(self, summary: dict[str, object]) -> None:
        metrics = summary.get("metrics", {})
        step = int(summary.get("epochs", 0))
        with self._writers["test"].as_default():
            for name, value in metrics.items():
                if name.startswith("test/"):
                    self._tf.summary.scalar(f"epoch_{name[5:]}", value, step=step)
        with self._root.as_default():  # the HParams dashboard reads final metrics from the session's folder
            for name, value in metrics.items():
                self._tf.summary.scalar(name, value, step=step)

    def log_artifact(self, path: Path) -> None:
        if path.suffix != ".png":
            return
        image = self._tf.io.decode_png(self._tf.io.read_file(str(path)), channels=3)
        with self._root.as_default():
            self._tf.summary.image(f"plots/{path.stem}", image[None], step=self._step)

    def close(self) -> None:
        for writer in (self._root, *self._writers.values()):
            writer.close()


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
        self._mode = cfg.mode
        self._run = neptune.init_run(
            project=cfg.project,
            mode=cfg.mode,
            name=cfg.name or name,
            description=cfg.description,
            tags=list(dict.fromkeys([*tags, *cfg.tags])),
            # Stable per run directory: a resumed run (resume=...) re-opens the same Neptune run.
            custom_run_id=neptune_run_id(run_dir),
            # What the run records is chosen here; Neptune's own capture would add stdout and source files.
            capture_stdout=False,
            capture_stderr=False,
            capture_hardware_metrics=False,
            capture_traceback=False,
            source_files=[],
            git_ref=False,
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


def neptune_run_id(run_dir: Path) -> str:
    """Neptune's custom run id for a run directory (at most 36 characters)."""
    return hashlib.sha1(str(run_dir.resolve()).encode()).hexdigest()[:32]


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
            else self._client.create_experiment(experiment_name, artifact_location=_sqlite_artifact_root(cfg.tracking_uri))
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


# --- reachability, checked before a client's own retries (MLflow's about 100 s, Neptune's about 64 s) ---

REACH_TIMEOUT_S = 2.0
DEFAULT_PORTS = {"http": 80, "https": 443, "postgresql": 5432, "mysql": 3306, "mssql": 1433}


class StoreUnreachable(Exception):
    """A tracker's store cannot be written or its server cannot be reached; the message says which and why."""


def check_mlflow_store(uri: str) -> None:
    """A SQLite file or a folder store must be writable (or creatable), a server must accept a connection."""
    scheme = urlsplit(uri).scheme.split("+")[0]
    if scheme == "sqlite":
        if uri.startswith("sqlite:///") and uri != "sqlite:///:memory:":
            problem = _unwritable(Path(uri[len("sqlite:///") :]), database=True)
        else:
            problem = None
    elif scheme in ("", "file"):
        problem = _unwritable(Path(urlsplit(uri).path if scheme else uri))
    else:
        problem = _unreachable(uri)
    if problem:
        raise StoreUnreachable(f"store {redact(uri)}: {problem}")


def check_neptune_server() -> None:
    """The server an async or sync run talks to (named by the API token; the default app for ANONYMOUS)
    must accept a connection. A missing or malformed token is left for Neptune's own error."""
    from neptune.internal.credentials import Credentials

    try:
        credentials = Credentials.from_token()
    except Exception:  # Neptune reports a missing or invalid token itself, quickly
        return
    address = credentials.api_url_opt or credentials.token_origin_address
    problem = _unreachable(address)
    if problem:
        raise StoreUnreachable(f"server {redact(address)}: {problem}")


def _unwritable(path: Path, database: bool = False) -> Optional[str]:
    """Why the store at `path` (a database file, or a folder) cannot be written or created, or None."""
    path = path.expanduser().resolve()
    if database and path.exists():
        if path.is_dir():
            return f"{path} is a folder, not a database file"
        if not os.access(path, os.W_OK):
            return f"{path} is read-only"
    folder = path.parent if database else path
    while not folder.exists():  # the tracker creates missing folders, from the nearest existing one
        folder = folder.parent
    if not folder.is_dir():
        return f"{folder} is a file, so no folder can be made there"
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"folder {folder} is not writable"
    return None


def _unreachable(address: str) -> Optional[str]:
    """Why a TCP connection to the address's host (or to its proxy) fails within REACH_TIMEOUT_S, or None."""
    try:
        parts = urlsplit(address)
        scheme, host = parts.scheme.split("+")[0], parts.hostname
        port = parts.port or DEFAULT_PORTS.get(scheme)
    except ValueError:  # a malformed port: the client's own error says more
        return None
    if not host or not port:
        return None
    proxy = urllib.request.getproxies().get(scheme) if scheme in ("http", "https") else None
    if proxy and not urllib.request.proxy_bypass(host):
        proxied = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        host, port = proxied.hostname or host, proxied.port or 80
    try:
        with socket.create_connection((host, port), timeout=REACH_TIMEOUT_S):
            return None
    except OSError as exc:
        return f"no connection to {host}:{port} within {REACH_TIMEOUT_S:g} s ({exc.strerror or exc})"


def _sqlite_artifact_root(uri: str) -> Optional[str]:
    """`mlartifacts/` beside a SQLite store (created if needed); other stores choose their own."""
    if not uri.startswith("sqlite:///"):
        return None
    database = Path(uri[len("sqlite:///") :]).resolve()
    database.parent.mkdir(parents=True, exist_ok=True)
    return (database.parent / "mlartifacts").as_uri()


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


def _scalar(value: object) -> object:
    """HParams take bool, int, float or str."""
    return value if isinstance(value, (bool, int, float, str)) else str(value)


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
