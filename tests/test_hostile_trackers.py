"""Trackers whose store cannot be written or reached are dropped in seconds, with one warning; the run goes on."""

from __future__ import annotations

import base64
import json
import logging
import socket
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import compose_config, tiny_overrides

import transferlab
from transferlab.config.convert import to_experiment_config
from transferlab.tracking.stores import StoreUnreachable, check_mlflow_store
from transferlab.tracking.trackers import open_trackers


def closed_port() -> int:
    """A localhost port nothing listens on: bound, read, released."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def unwritable_sqlite(tmp_path: Path) -> str:
    """A store whose folder cannot be made, whoever runs the test (even root): its parent is a file."""
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    return f"sqlite:///{blocker / 'store' / 'mlflow.db'}"


def tracker_warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name.startswith("transferlab.tracking") and r.levelno == logging.WARNING]


def test_run_with_an_unwritable_mlflow_store_finishes_with_every_local_result(
    image_folder, base_weights, tmp_path, caplog
):
    out = tmp_path / "run"
    uri = unwritable_sqlite(tmp_path)
    with caplog.at_level(logging.WARNING, logger="transferlab.tracking"):
        summary = transferlab.train(compose_config(tiny_overrides(
            image_folder, out, base_weights, "logger=mlflow", f"logger.mlflow.tracking_uri={uri}",
            "logger.tensorboard=true", "logger.csv=true", "schedule.fine_tune.epochs=0", "baseline.estimator=null",
        )))
    assert tracker_warnings(caplog) == [
        f"MLflow tracker could not start (store {uri}: {tmp_path / 'a_file'} is a file, so no folder can be made there); "
        "continuing without it"
    ]
    assert summary.status == "completed" and "mlflow" not in summary.tracking
    assert len(pd.read_csv(out / "history.csv")) == 2 and len(pd.read_csv(out / "csv" / "metrics.csv")) > 0
    assert json.loads((out / "summary.json").read_text())["status"] == "completed"
    assert any((out / "tensorboard").rglob("events.out.tfevents.*")) and (out / "model.keras").is_file()


def neptune_token(address: str) -> str:
    """An API token of the shape Neptune issues, naming `address` as the server (the key is made up)."""
    return base64.b64encode(json.dumps({"api_address": address, "api_url": address, "api_key": "made-up"}).encode()).decode()


@pytest.mark.parametrize("store", ["sqlite", "http", "neptune"])
def test_an_unreachable_store_is_dropped_in_seconds_not_after_the_clients_retries(store, tmp_path, monkeypatch, caplog):
    port = closed_port()
    overrides = {
        "sqlite": ["logger=mlflow", f"logger.mlflow.tracking_uri={unwritable_sqlite(tmp_path)}"],
        "http": ["logger=mlflow", f"logger.mlflow.tracking_uri=http://127.0.0.1:{port}"],
        "neptune": ["logger=neptune", "logger.neptune.mode=async", "logger.neptune.project=someone/something"],
    }[store]
    token = neptune_token(f"http://127.0.0.1:{port}")
    monkeypatch.setenv("NEPTUNE_API_TOKEN", token)
    monkeypatch.chdir(tmp_path)
    cfg = to_experiment_config(compose_config([*overrides, f"paths.output_dir={tmp_path / 'run'}"]))
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="transferlab.tracking"):
        with open_trackers(cfg, tmp_path / "run") as trackers:
            opened = time.monotonic() - started
            assert trackers.run_info() == {"tags": trackers.tags, "sweep": None}  # no tracker left
    assert opened < 10, opened  # MLflow retries for about 100 s, Neptune for about 64 s
    [warning] = tracker_warnings(caplog)
    name = "Neptune" if store == "neptune" else "MLflow"
    assert warning.startswith(f"{name} tracker could not start (") and warning.endswith("; continuing without it")
    if store != "sqlite":
        assert f"127.0.0.1:{port}: no connection to 127.0.0.1:{port} within 2 s" in warning
    assert token not in caplog.text


def test_writable_and_reachable_stores_pass_the_check(tmp_path):
    check_mlflow_store(f"sqlite:///{tmp_path / 'not' / 'yet' / 'made' / 'mlflow.db'}")  # the tracker creates the folders
    check_mlflow_store(str(tmp_path / "mlruns"))
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        check_mlflow_store(f"http://127.0.0.1:{server.getsockname()[1]}")
    (tmp_path / "folder.db").mkdir()
    with pytest.raises(StoreUnreachable, match="folder.db is a folder, not a database file"):
        check_mlflow_store(f"sqlite:///{tmp_path / 'folder.db'}")
    # The password is redacted as everywhere else (repro.redact); the user name stays to say which login.
    with pytest.raises(StoreUnreachable, match=r"store postgresql://me:<redacted>@127\.0\.0\.1:\d+/runs: no connection") as caught:
        check_mlflow_store(f"postgresql://me:secret@127.0.0.1:{closed_port()}/runs")
    assert "secret" not in str(caught.value)
