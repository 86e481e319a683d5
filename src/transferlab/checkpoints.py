"""Per-epoch checkpoints a killed run resumes from.

Each completed epoch is written to a fresh folder `checkpoints/epoch-NNNN/` (the model with its
optimizer state, the schedule state, early stopping's best weights, the RNG states); only then
does the one-line file `checkpoints/latest` switch to it, by an atomic rename, and older folders
are removed. A crash at any moment therefore leaves a complete previous checkpoint.
"""

from __future__ import annotations

import json
import os
import pickle
import random
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import numpy as np

if TYPE_CHECKING:
    import keras

LATEST = "latest"


@dataclass
class ScheduleState:
    """Where the schedule stands; everything a resumed run needs besides the weights."""

    phase: str = ""
    epoch: int = 0  # epochs completed over the whole run
    phase_first_epoch: int = 0  # value of `epoch` when the current phase started
    finished_phases: list[str] = field(default_factory=list)
    best_value: Optional[float] = None  # best monitored value so far (what best.keras holds)
    early_stopping: dict = field(default_factory=dict)  # wait, best, best_epoch, stopped_epoch
    history: list[dict] = field(default_factory=list)  # one row per completed epoch
    phase_results: list[dict] = field(default_factory=list)  # one per finished phase

    def start_phase(self, name: str) -> None:
        self.phase, self.phase_first_epoch, self.early_stopping = name, self.epoch, {}

    @property
    def mid_phase(self) -> bool:
        return bool(self.phase) and self.phase not in self.finished_phases


@dataclass
class Checkpoint:
    folder: Path
    state: ScheduleState

    def load_model(self) -> "keras.Model":
        from transferlab.models import load_trained_model

        return load_trained_model(str(self.folder / "model.keras"))

    def early_stopping_weights(self) -> Optional[list[np.ndarray]]:
        path = self.folder / "early_stopping_best.npz"
        if not path.is_file():
            return None
        with np.load(path) as arrays:
            return [arrays[f"w{i}"] for i in range(len(arrays.files))]

    def restore_rng(self, model: "keras.Model") -> None:
        """Python, NumPy and Keras generators, and the model's own (dropout) seed states."""
        with open(self.folder / "rng.pkl", "rb") as f:
            states = pickle.load(f)
        random.setstate(states["python"])
        np.random.set_state(states["numpy"])
        _keras_seed_generator().state.assign(states["keras"])
        for variable, value in zip(_seed_states(model), states["model"], strict=True):
            variable.assign(value)


def save_checkpoint(
    root: Path, model: "keras.Model", state: ScheduleState, early_stopping_weights: Optional[list] = None
) -> Path:
    """Write the epoch's checkpoint folder completely, then point `latest` at it."""
    root.mkdir(parents=True, exist_ok=True)
    name = f"epoch-{state.epoch:04d}"
    folder = root / name
    staging = root / f".{name}.writing"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    model.save(staging / "model.keras")
    (staging / "state.json").write_text(json.dumps(asdict(state), indent=2))
    if early_stopping_weights is not None:
        np.savez(staging / "early_stopping_best.npz", **{f"w{i}": w for i, w in enumerate(early_stopping_weights)})
    with open(staging / "rng.pkl", "wb") as f:
        pickle.dump(
            {
                "python": random.getstate(),
                "numpy": np.random.get_state(),
                "keras": np.asarray(_keras_seed_generator().state),
                # Layers' seed generators are not restored by load_model: keep them here.
                "model": [np.asarray(v) for v in _seed_states(model)],
            },
            f,
        )
    shutil.rmtree(folder, ignore_errors=True)
    staging.rename(folder)
    pointer = root / f".{LATEST}.tmp"
    pointer.write_text(name)
    os.replace(pointer, root / LATEST)
    for old in root.glob("epoch-*"):
        if old.name != name:
            shutil.rmtree(old, ignore_errors=True)
    return folder


def load_checkpoint(root: Path) -> Optional[Checkpoint]:
    """The checkpoint `latest` points at, or None when the run has not completed an epoch."""
    pointer = root / LATEST
    if not pointer.is_file():
        return None
    folder = root / pointer.read_text().strip()
    state = ScheduleState(**json.loads((folder / "state.json").read_text()))
    return Checkpoint(folder, state)


def _seed_states(model: "keras.Model") -> list:
    return [v for v in model.variables if v.name == "seed_generator_state"]


def _keras_seed_generator():
    from keras.src.random.seed_generator import global_seed_generator

    return global_seed_generator()
