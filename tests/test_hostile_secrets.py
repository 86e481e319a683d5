"""Tracker tokens and passwords never reach a file, a log or a tracker, however they are passed."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import yaml
from conftest import run_train_script, tiny_overrides

from transferlab.repro import REDACTED, environment_info, redact
from transferlab.tracking.base import NoOpTracker, Trackers
from transferlab.training.run_guard import RedactingFilter


def test_a_token_given_on_the_command_line_or_in_the_environment_is_in_no_file(image_folder, base_weights, tmp_path):
    on_command_line, in_environment, password = "tl-cli-3f9a0c71e2d4b8", "tl-env-81be27c4d90f3a", "tl-pw-5d0e9a1c7b"
    out = tmp_path / "run"
    args = tiny_overrides(
        image_folder, out, base_weights, "logger=neptune", "schedule.head.epochs=1", "schedule.fine_tune.epochs=1",
        "baseline.estimator=null", f"+hydra.job.env_set.NEPTUNE_API_TOKEN={on_command_line}",
    )
    result = run_train_script(
        [*args, f"hydra.run.dir={out}"], cwd=tmp_path,
        env={"NEPTUNE_API_TOKEN": in_environment, "NEPTUNE_MODE": "offline", "MLFLOW_TRACKING_PASSWORD": password},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    names = {p.name for p in files}
    assert {"summary.json", "hydra.yaml", "overrides.yaml", "train.log", "data-1.log"} <= names, names
    leaks = [
        (str(p.relative_to(tmp_path)), secret)
        for p in files for secret in (on_command_line, in_environment, password) if secret.encode() in p.read_bytes()
    ]
    assert leaks == []
    assert on_command_line not in result.stdout + result.stderr
    # Recorded, but redacted: the command line in summary.json and the env_set in Hydra's saved config.
    command = json.loads((out / "summary.json").read_text())["environment"]["command"]
    assert f"env_set.NEPTUNE_API_TOKEN={REDACTED}" in command
    hydra_yaml = yaml.safe_load((out / ".hydra" / "hydra.yaml").read_text())
    assert hydra_yaml["hydra"]["job"]["env_set"]["NEPTUNE_API_TOKEN"] == REDACTED


def test_redact_removes_secret_values_and_secret_settings_and_nothing_else(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "mlflow-tok-0001")
    monkeypatch.setenv("OBJECT_STORE_SECRET", "store-secret-0002")
    monkeypatch.setenv("SOME_API_KEY", "api-key-0003")
    monkeypatch.setenv("DATASET_NAME", "cats-and-dogs")
    monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD", raising=False)
    text = (
        "train.py dataset.batch_size=8 uri=https://u:mlflow-tok-0001@host key='api-key-0003' "
        "+hydra.job.env_set.MLFLOW_TRACKING_PASSWORD=never-in-env-0004 dataset.name=cats-and-dogs\n"
        "env_set:\n  NEPTUNE_API_TOKEN: unset-token-0005\n  OBJECT_STORE_SECRET: store-secret-0002\n"
    )
    cleaned = redact(text)
    for secret in ("mlflow-tok-0001", "store-secret-0002", "api-key-0003", "never-in-env-0004", "unset-token-0005"):
        assert secret not in cleaned
    assert "dataset.batch_size=8" in cleaned and "dataset.name=cats-and-dogs" in cleaned
    assert f"MLFLOW_TRACKING_PASSWORD={REDACTED}" in cleaned
    # Hydra's redacted YAML still loads, with the secret's key kept.
    assert yaml.safe_load(cleaned.split("\n", 1)[1])["env_set"]["NEPTUNE_API_TOKEN"] == REDACTED


def test_command_line_tracker_params_and_log_records_are_redacted(monkeypatch, tmp_path):
    monkeypatch.setenv("NEPTUNE_API_TOKEN", "tl-neptune-9e1f2a")
    monkeypatch.setattr("sys.argv", ["train.py", "+hydra.job.env_set.NEPTUNE_API_TOKEN=tl-neptune-9e1f2a", "name=x"])
    assert environment_info()["command"] == f"train.py +hydra.job.env_set.NEPTUNE_API_TOKEN={REDACTED} name=x"

    class Recorder(NoOpTracker):
        params: dict[str, object] = {}

        def log_params(self, params: dict[str, object]) -> None:
            Recorder.params = params

    Trackers([Recorder()]).log_params({"logger.mlflow.tracking_uri": "https://tl-neptune-9e1f2a@h", "dataset.batch_size": 8})
    assert Recorder.params == {"logger.mlflow.tracking_uri": f"https://{REDACTED}@h", "dataset.batch_size": 8}

    handler = logging.FileHandler(tmp_path / "job.log")
    handler.addFilter(RedactingFilter())
    logger = logging.getLogger("transferlab.test_secrets")
    logger.addHandler(handler)
    try:
        logger.warning("tracker failed with token %s", "tl-neptune-9e1f2a")
    finally:
        logger.removeHandler(handler)
        handler.close()
    assert Path(tmp_path / "job.log").read_text() == f"tracker failed with token {REDACTED}\n"


def test_a_password_inside_a_uri_is_redacted_wherever_the_uri_is_recorded():
    from transferlab.repro import redact

    line = "logger.mlflow.tracking_uri=https://bob:s3cretpw@mlflow.example:5000 db=postgresql://u:pw12345@db/x"
    assert redact(line) == "logger.mlflow.tracking_uri=https://bob:<redacted>@mlflow.example:5000 db=postgresql://u:<redacted>@db/x"
    assert redact("http://host:5000/path@v2 and user@example.org") == "http://host:5000/path@v2 and user@example.org"
