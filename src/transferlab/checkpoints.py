"""Per-epoch checkpoints a killed run resumes from.

Each completed epoch is written to a fresh folder `checkpoints/epoch-NNNN/` (the model with its
optimizer state, the schedule state, early stopping's best weights, the RNG states); only then
does the one-line file `checkpoints/latest` switch to it, by an atomic rename, and older folders
are removed. A crash at any moment therefore leaves a complete previous checkpoint.

While the base is frozen its weights cannot change, so rewriting them every epoch is wasted work
(most of the time of a cached head phase). A frozen-base checkpoint holds only what trains: the
variables outside the base and the optimizer's variables; a resumed run rebuilds the model from
its config (the same base weights, the same seeded initialisation) and restores those into it.
"""

from __future__ import annotations

import json
import os
import pickle
import random
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional

import numpy as np

from transferlab.errors import ModelError

if TYPE_CHECKING:
    import keras

LATEST = "latest"
TRAINED = "trained.npz"  # a frozen-base checkpoint: the variables outside the base
OPTIMIZER = "optimizer.npz"
BASE_DIGEST = "base.sha256"  # which base weights a frozen-base checkpoint (or its pending best) was trained on
BASE_LAYER = "base"  # transferlab.models.BASE_LAYER, named here to keep this module free of Keras


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

    @property
    def frozen_base(self) -> bool:
        return (self.folder / TRAINED).is_file()

    def load_model(self, build: Optional[Callable[[], "keras.Model"]] = None) -> "keras.Model":
        """The checkpointed model; a frozen-base checkpoint restores its variables into `build()`."""
        if not self.frozen_base:
            from transferlab.models import load_trained_model

            return load_trained_model(str(self.folder / "model.keras"))
        model = self._rebuilt(build)
        _assign(trained_variables(model), _load_arrays(self.folder / TRAINED))
        return model

    def write_pending_best(self, build: Callable[[], "keras.Model"], path: Path) -> None:
        """best.keras of a run stopped while fine-tuning, before fine-tuning beat the head phase's best.

        Such a checkpoint keeps only the head of that best (the base it was found with is the
        pretrained one, rebuilt from the config), so the resumed run writes it first.
        """
        pending = None if self.frozen_base else self.arrays(BEST_PENDING)
        if pending is None:
            return
        model = self._rebuilt(build)
        _assign(trained_variables(model), pending)
        model.save(path, overwrite=True)

    def _rebuilt(self, build: Callable[[], "keras.Model"]) -> "keras.Model":
        """The model built from the config, refused unless its base is the one the checkpoint was trained on."""
        model = build()
        if base_digest(model) != (self.folder / BASE_DIGEST).read_text():
            raise ModelError(
                "the base rebuilt from the config has other weights than the checkpoint was trained on "
                "(was the weights file replaced?); restore it, or start a new run without resume"
            )
        return model

    def restore_optimizer(self, model: "keras.Model") -> None:
        """Put a frozen-base checkpoint's optimizer state into the freshly compiled model's optimizer."""
        optimizer = model.optimizer
        if not optimizer.built:
            optimizer.build(model.trainable_variables)
        _assign(optimizer.variables, _load_arrays(self.folder / OPTIMIZER))

    def arrays(self, name: str) -> Optional[list[np.ndarray]]:
        """A list of arrays saved with the checkpoint (e.g. early stopping's best weights), or None."""
        path = self.folder / f"{name}.npz"
        return _load_arrays(path) if path.is_file() else None

    def early_stopping_weights(self) -> Optional[list[np.ndarray]]:
        return self.arrays(EARLY_STOPPING_BEST)

    def restore_rng(self, model: "keras.Model") -> None:
        """Python, NumPy and Keras generators, and the model's own (dropout) seed states."""
        with open(self.folder / "rng.pkl", "rb") as f:
            states = pickle.load(f)
        random.setstate(states["python"])
        np.random.set_state(states["numpy"])
        _keras_seed_generator().state.assign(states["keras"])
        for variable, value in zip(_seed_states(model), states["model"], strict=True):
            variable.assign(value)


EARLY_STOPPING_BEST = "early_stopping_best"
BEST_PENDING = "best_pending"  # the head phase's best variables outside the base, not yet in best.keras


def base_digest(model: "keras.Model") -> str:
    """Hash of the base's weights: a rebuilt base must be the one the head was trained on."""
    import hashlib

    digest = hashlib.sha256()
    for variable in model.get_layer(BASE_LAYER).variables:
        digest.update(np.ascontiguousarray(variable.numpy()).tobytes())
    return digest.hexdigest()


def trained_variables(model: "keras.Model") -> list:
    """The model's variables outside the base: all that changes while the base is frozen."""
    frozen = {id(v) for v in model.get_layer(BASE_LAYER).variables}
    return [v for v in model.variables if id(v) not in frozen]


def save_checkpoint(
    root: Path,
    model: "keras.Model",
    state: ScheduleState,
    early_stopping_weights: Optional[list] = None,
    frozen_base: bool = False,
    base_sha256: Optional[str] = None,
    **arrays: Optional[list],
) -> Path:
    """Write the epoch's checkpoint folder completely, then point `latest` at it.

    `frozen_base` writes only the variables that can train (and the optimizer's), not the model
    file, with the base's digest (`base_sha256` when the caller already knows it: hashing the base
    costs as much as the rest of the checkpoint); a full-model checkpoint gets `base_sha256` when it
    carries a head-phase best (`best_pending`) found on that base. `arrays` are further lists of
    arrays saved as `<name>.npz`.
    """
    root.mkdir(parents=True, exist_ok=True)
    name = f"epoch-{state.epoch:04d}"
    folder = root / name
    staging = root / f".{name}.writing"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    if frozen_base:
        _save_arrays(staging / TRAINED, trained_variables(model))
        _save_arrays(staging / OPTIMIZER, model.optimizer.variables)
    else:
        model.save(staging / "model.keras")
    if frozen_base or base_sha256:
        (staging / BASE_DIGEST).write_text(base_sha256 or base_digest(model))
    (staging / "state.json").write_text(json.dumps(asdict(state), indent=2))
    for array_name, values in {EARLY_STOPPING_BEST: early_stopping_weights, **arrays}.items():
        if values is not None:
            _save_arrays(staging / f"{array_name}.npz", values)
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


def _save_arrays(path: Path, values: list) -> None:
    np.savez(path, **{f"w{i}": np.asarray(v) for i, v in enumerate(values)})


def _load_arrays(path: Path) -> list[np.ndarray]:
    with np.load(path) as arrays:
        return [arrays[f"w{i}"] for i in range(len(arrays.files))]


def _assign(variables: list, values: list[np.ndarray]) -> None:
    """Assign saved values in order; a different model or optimizer fails here rather than training on."""
    if len(variables) != len(values) or any(tuple(v.shape) != w.shape for v, w in zip(variables, values, strict=True)):
        raise ModelError("the checkpoint does not fit this model (its variables differ); resume with the run's own config")
    for variable, value in zip(variables, values, strict=True):
        variable.assign(value)


def _seed_states(model: "keras.Model") -> list:
    return [v for v in model.variables if v.name == "seed_generator_state"]


def _keras_seed_generator():
    from keras.src.random.seed_generator import global_seed_generator

    return global_seed_generator()
