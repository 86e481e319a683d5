"""A study's finished Optuna trials kept in a JSON-lines file, so a relaunched sweep continues it.

hydra-optuna-sweeper 1.3 pins optuna 2.10, whose SQLite storage fails under SQLAlchemy 2 (which
MLflow needs), and optuna 2.10 has no journal storage yet. This is the small part of one we need:
an in-memory study that appends each trial to the file as it finishes, and that is rebuilt from the
file at the next launch.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any, Optional

import optuna
from optuna.distributions import distribution_to_json, json_to_distribution
from optuna.storages import InMemoryStorage
from optuna.trial import FrozenTrial, TrialState


class JournaledStorage(InMemoryStorage):
    """In-memory storage that appends every trial reaching a finished state to `path`."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path

    def set_trial_state(self, trial_id: int, state: TrialState) -> bool:
        changed = super().set_trial_state(trial_id, state)
        if changed and state.is_finished():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a") as journal:
                journal.write(json.dumps(trial_to_json(self.get_trial(trial_id))) + "\n")
        return changed


def open_study(path: Path, study_name: Optional[str], directions: list[str]) -> tuple[JournaledStorage, optuna.Study]:
    """The study with the trials finished in earlier launches, and its storage journaling the ones to come."""
    storage = JournaledStorage(path)
    study = optuna.create_study(study_name=study_name, storage=storage, directions=directions)
    for trial in read_trials(path):
        study.add_trial(trial)  # a copied trial is not journaled again: its state is set directly
    return storage, study


def read_trials(path: Path) -> list[FrozenTrial]:
    if not path.is_file():
        return []
    lines = path.read_text().splitlines()
    return [trial_from_json(json.loads(line)) for line in lines if line.strip()]


def trial_to_json(trial: FrozenTrial) -> dict[str, Any]:
    return {
        "number": trial.number,
        "state": trial.state.name,
        "values": trial.values,
        "params": trial.params,
        "distributions": {name: distribution_to_json(d) for name, d in trial.distributions.items()},
        "user_attrs": trial.user_attrs,
        "system_attrs": trial.system_attrs,
        "intermediate_values": trial.intermediate_values,
        "datetime_start": _iso(trial.datetime_start),
        "datetime_complete": _iso(trial.datetime_complete),
    }


def trial_from_json(data: dict[str, Any]) -> FrozenTrial:
    trial = optuna.trial.create_trial(
        state=TrialState[data["state"]],
        values=data["values"],
        params=data["params"],
        distributions={name: json_to_distribution(d) for name, d in data["distributions"].items()},
        user_attrs=data["user_attrs"],
        system_attrs=data["system_attrs"],
        intermediate_values={int(step): value for step, value in data["intermediate_values"].items()},
    )
    trial.datetime_start = _parse_time(data["datetime_start"])
    trial.datetime_complete = _parse_time(data["datetime_complete"])
    return trial


def _iso(moment: Optional[datetime]) -> Optional[str]:
    return moment.isoformat() if moment else None


def _parse_time(text: Optional[str]) -> Optional[datetime]:
    return datetime.fromisoformat(text) if text else None
