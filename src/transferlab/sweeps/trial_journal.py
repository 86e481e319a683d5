"""A study's finished Optuna trials kept in a JSON-lines file, so a relaunched sweep continues it.

hydra-optuna-sweeper 1.3 pins optuna 2.10, whose SQLite storage fails under SQLAlchemy 2 (which
MLflow needs), and optuna 2.10 has no journal storage yet. This is the small part of one we need:
an in-memory study that appends each trial to the file as it finishes, and that is rebuilt from the
file at the next launch.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime
from pathlib import Path
from typing import Any, Optional, Sequence

import optuna
from optuna.distributions import distribution_to_json, json_to_distribution
from optuna.storages import InMemoryStorage
from optuna.trial import FrozenTrial, TrialState

log = logging.getLogger(__name__)


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


def replay_sampler(sampler: object, study: optuna.Study, batch_size: int) -> bool:
    """Bring a freshly seeded sampler to where it stood after the study's finished trials.

    A relaunch builds its sampler from the same seed, so without this it would draw the first
    trials' parameters again. Each finished trial's parameters are drawn once more, in order, from
    the study as it was when that trial was asked for (the trials finished before its batch), and
    thrown away: the sampler's random state then equals an uninterrupted study's. Only samplers that
    draw each parameter independently can be replayed so (random, and TPE without `multivariate`);
    False for any other.
    """
    finished = sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)
    independent = isinstance(sampler, (optuna.samplers.RandomSampler, optuna.samplers.TPESampler))
    if not independent or (finished and sampler.infer_relative_search_space(study, finished[0])):
        return False
    for trial in finished:
        batch_start = trial.number - trial.number % batch_size
        earlier = _StudyBefore(study, [t for t in finished if t.number < batch_start])
        for name, distribution in trial.distributions.items():
            sampler.sample_independent(earlier, trial, name, distribution)
    return True


class _StudyBefore:
    """What a sampler reads of a study, holding only the trials finished before a given one."""

    def __init__(self, study: optuna.Study, trials: list[FrozenTrial]) -> None:
        self._study, self._trials = study, trials
        self.directions = study.directions
        self.direction = study.directions[0]

    def get_trials(self, deepcopy: bool = True, states: Optional[Sequence[TrialState]] = None) -> list[FrozenTrial]:
        return [t for t in self._trials if states is None or t.state in states]

    def _is_multi_objective(self) -> bool:
        return len(self.directions) > 1


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
