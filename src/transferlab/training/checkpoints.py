"""Per-epoch checkpoints a killed run resumes from.

Each completed epoch is written to a fresh folder `checkpoints/epoch-NNNN/` (the model with its
optimizer state, the schedule state, early stopping's best weights, the RNG states); only then
does the one-line file `checkpoints/latest` switch to it, by an atomic rename, and folders older
than the previous one are removed. A crash at any moment therefore leaves a complete checkpoint,
and a damaged latest one (a truncated file, a full disk) still leaves the one before it.

A run folder may come from someone else, so nothing in it is executed: every piece is data (JSON,
`.npz` read with allow_pickle=False, `.keras` loaded in Keras' safe mode), and each is checked when
the checkpoint is loaded, so a damaged piece is reported in one line instead of a traceback later.

While the base is frozen its weights cannot change, so rewriting them every epoch is wasted work
(most of the time of a cached head phase). A frozen-base checkpoint holds only what trains: the
variables outside the base and the optimizer's variables; a resumed run rebuilds the model from
its config (the same base weights, the same seeded initialisation) and restores those into it.
A LoRA fine-tune's checkpoint also keeps its adapted kernels and factors apart (`adapters.npz`),
since model.keras holds them merged.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import shutil
import zipfile
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional

import numpy as np

from transferlab.atomic import name_the_file, save_model
from transferlab.errors import CheckpointError, ModelError, first_line
from transferlab.models.lora import adapter_variables, pretrained_variables

if TYPE_CHECKING:
    import keras

log = logging.getLogger(__name__)

LATEST = "latest"
MODEL = "model.keras"
STATE = "state.json"
RNG = "rng.json"  # Python's and NumPy's generator states
SEEDS = "seeds.npz"  # Keras' global seed generator state, then the model's own seed generator states
TRAINED = "trained.npz"  # a frozen-base checkpoint: the variables outside the base
OPTIMIZER = "optimizer.npz"
BASE_DIGEST = "base.sha256"  # which base weights a frozen-base checkpoint (or its pending best) was trained on
BASE_LAYER = "base"  # transferlab.models.BASE_LAYER, named here to keep this module free of Keras
FOLDER_NAME = re.compile(r"epoch-(\d{4,})")
# What a ScheduleState field must hold when read back from state.json.
STATE_TYPES = {
    "phase": str, "epoch": int, "phase_first_epoch": int, "finished_phases": list, "best_value": (float, int, type(None)),
    "early_stopping": dict, "history": list, "phase_results": list,
}
EARLY_STOPPING_STATE = ("wait", "best", "best_epoch", "stopped_epoch")  # ScheduleState.early_stopping's keys, when set


@dataclass
class ScheduleState:
    """Where the schedule stands; everything a resumed run needs besides the weights."""

    phase: str = ""
    epoch: int = 0  # epochs completed over the whole run
    phase_first_epoch: int = 0  # value of `epoch` when the current phase started
    finished_phases: list[str] = field(default_factory=list)
    best_value: Optional[float] = None  # best monitored value so far (what best.keras holds)
    early_stopping: dict = field(default_factory=dict)  # EARLY_STOPPING_STATE
    history: list[dict] = field(default_factory=list)  # one row per completed epoch
    phase_results: list[dict] = field(default_factory=list)  # one per finished phase

    def start_phase(self, name: str) -> None:
        self.phase, self.phase_first_epoch, self.early_stopping = name, self.epoch, {}

    @property
    def mid_phase(self) -> bool:
        return bool(self.phase) and self.phase not in self.finished_phases


@dataclass
class Checkpoint:
    """A checkpoint whose pieces have all been read and checked (see `open_checkpoint`)."""

    folder: Path
    state: ScheduleState
    rng: dict  # rng.json: Python's and NumPy's generator states
    stored: dict[str, list[np.ndarray]]  # every `.npz` of the folder, by file name
    model: Optional["keras.Model"] = None  # model.keras, loaded; None in a frozen-base checkpoint
    pending_base: Optional[list[np.ndarray]] = None  # the pretrained base of a pending best, once it was rebuilt

    @property
    def frozen_base(self) -> bool:
        return TRAINED in self.stored

    @property
    def base_sha256(self) -> Optional[str]:
        """The digest of the base a frozen-base checkpoint, or its pending best, was trained on."""
        path = self.folder / BASE_DIGEST
        return path.read_text() if path.is_file() else None

    def resumed_model(self, build: Callable[[], "keras.Model"], best_path: Path) -> "keras.Model":
        """The model to continue training; a pending best.keras the killed run owed is written first."""
        self.write_pending_best(build, best_path)
        return self.load_model(build)

    def load_model(self, build: Optional[Callable[[], "keras.Model"]] = None) -> "keras.Model":
        """The checkpointed model (loaded, to be checked, when the checkpoint was); a frozen-base
        checkpoint restores its variables into `build()`."""
        if not self.frozen_base:
            adapters = self.arrays(ADAPTERS)
            if adapters is not None:
                _assign(adapter_variables(self.model), adapters)
            return self.model
        model = self._rebuilt(build)
        _assign(trained_variables(model), self.stored[TRAINED])
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
        save_model(model, path)
        # The base that best was found with, for the resumed run to end on that model if fine-tuning never beats it.
        self.pending_base = [np.array(v) for v in pretrained_variables(model.get_layer(BASE_LAYER))]

    def _rebuilt(self, build: Callable[[], "keras.Model"]) -> "keras.Model":
        """The model built from the config, refused unless its base is the one the checkpoint was trained on."""
        model = build()
        from transferlab.models.saved import base_digest

        if base_digest(model) != self.base_sha256:
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
        _assign(optimizer.variables, self.stored[OPTIMIZER])

    def arrays(self, name: str) -> Optional[list[np.ndarray]]:
        """A list of arrays saved with the checkpoint (e.g. early stopping's best weights), or None."""
        return self.stored.get(f"{name}.npz")

    def early_stopping_weights(self) -> Optional[list[np.ndarray]]:
        return self.arrays(EARLY_STOPPING_BEST)

    def restore_rng(self, model: "keras.Model") -> None:
        """Python, NumPy and Keras generators, and the model's own (dropout) seed states."""
        from transferlab.compat.keras import global_seed_generator

        random.setstate(_python_state(self.rng["python"]))
        np.random.set_state(_numpy_state(self.rng["numpy"]))
        keras_state, *model_states = self.stored[SEEDS]
        _assign([global_seed_generator().state, *_seed_states(model)], [keras_state, *model_states])


EARLY_STOPPING_BEST = "early_stopping_best"
BEST_PENDING = "best_pending"  # the head phase's best variables outside the base, not yet in best.keras
ADAPTERS = "adapters"  # a LoRA fine-tune's adapted kernels and their factors, unmerged


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
    arrays saved as `<name>.npz`. A failed write removes its partial folder (it would only take space).
    """
    from transferlab.compat.keras import global_seed_generator
    from transferlab.models.saved import base_digest

    root.mkdir(parents=True, exist_ok=True)
    name = f"epoch-{state.epoch:04d}"
    folder = root / name
    staging = root / f".{name}.writing"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        if frozen_base:
            _save_arrays(staging / TRAINED, trained_variables(model))
            _save_arrays(staging / OPTIMIZER, model.optimizer.variables)
        else:
            model.save(staging / MODEL)
            adapters = adapter_variables(model)
            if adapters:
                _save_arrays(staging / f"{ADAPTERS}.npz", adapters)
        if frozen_base or base_sha256:
            (staging / BASE_DIGEST).write_text(base_sha256 or base_digest(model))
        (staging / STATE).write_text(json.dumps(asdict(state), indent=2))
        for array_name, values in {EARLY_STOPPING_BEST: early_stopping_weights, **arrays}.items():
            if values is not None:
                _save_arrays(staging / f"{array_name}.npz", values)
        python_version, python_internal, gauss_next = random.getstate()
        generator, key, pos, has_gauss, cached_gaussian = np.random.get_state()
        rng = {
            "python": {"version": python_version, "internal": list(python_internal), "gauss_next": gauss_next},
            "numpy": {"name": generator, "key": key.tolist(), "pos": int(pos), "has_gauss": int(has_gauss),
                      "cached_gaussian": float(cached_gaussian)},
        }
        (staging / RNG).write_text(json.dumps(rng))
        # Layers' seed generators are not restored by load_model: keep them here.
        _save_arrays(staging / SEEDS, [global_seed_generator().state, *_seed_states(model)])
    except BaseException as exc:
        shutil.rmtree(staging, ignore_errors=True)
        name_the_file(exc, folder)
        raise
    shutil.rmtree(folder, ignore_errors=True)
    staging.rename(folder)
    pointer = root / f".{LATEST}.tmp"
    pointer.write_text(name)
    os.replace(pointer, root / LATEST)
    # The previous epoch's folder stays: it is what a resume falls back to if this one is damaged.
    previous = max((f for f in _epoch_folders(root) if _epoch_of(f) < state.epoch), key=_epoch_of, default=None)
    for old in _epoch_folders(root):
        if old not in (folder, previous):
            shutil.rmtree(old, ignore_errors=True)
    return folder


def load_checkpoint(root: Path) -> Optional[Checkpoint]:
    """The checkpoint `latest` points at, or the newest other complete one when that is damaged;
    None when the run has not completed an epoch.

    Every piece is read and checked here, so a damaged one is named in one line: a warning when an
    earlier checkpoint can be used instead, else a CheckpointError.
    """
    candidates = sorted(_epoch_folders(root), key=_epoch_of, reverse=True)
    pointer = root / LATEST
    damage: list[str] = []
    if pointer.is_file() or candidates:
        try:
            latest = _pointed_folder(root)
            candidates = [latest, *(c for c in candidates if c != latest)]
        except CheckpointError as exc:
            damage.append(str(exc))
    for folder in candidates:
        try:
            checkpoint = open_checkpoint(folder)
        except CheckpointError as exc:
            damage.append(str(exc))
            continue
        if damage:
            log.warning("%s; resuming from the checkpoint %s (epoch %d) instead", damage[0], folder.name, checkpoint.state.epoch)
        return checkpoint
    if not damage:
        return None
    raise CheckpointError(
        f"cannot resume: {damage[0]}, and no other checkpoint in '{root}' is complete; delete that folder and "
        "resume again to retrain the run from its first epoch, or start a new run without resume"
    )


def open_checkpoint(folder: Path) -> Checkpoint:
    """Read and check every piece of one checkpoint folder; a damaged or missing piece is a CheckpointError."""
    stored = {path.name: _load_arrays(path) for path in sorted(folder.glob("*.npz"))}
    frozen_base = TRAINED in stored
    required = [STATE, RNG, SEEDS, *([OPTIMIZER, BASE_DIGEST] if frozen_base else [MODEL])]
    if f"{BEST_PENDING}.npz" in stored:
        required.append(BASE_DIGEST)
    for name in required:
        if not (folder / name).is_file():
            old = " (it was written by an older version, whose rng.pkl is no longer read)" if name == RNG and (
                folder / "rng.pkl").exists() else ""
            raise CheckpointError(f"the checkpoint '{folder}' has no {name}{old}")
    state = _read_state(folder / STATE)
    rng = _read_rng(folder / RNG)
    model = None if frozen_base else _load_keras(folder / MODEL)
    return Checkpoint(folder, state, rng, stored, model)


def _pointed_folder(root: Path) -> Path:
    """The folder `latest` names; only a name of this run's epoch folders is accepted."""
    pointer = root / LATEST
    try:
        name = pointer.read_text().strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"'{pointer}' is missing or unreadable ({first_line(exc, with_type=True)})") from exc
    folder = root / name
    if not FOLDER_NAME.fullmatch(name):
        raise CheckpointError(f"'{pointer}' names '{name[:60]}', which is not a checkpoint folder")
    if not folder.is_dir():
        raise CheckpointError(f"'{pointer}' names {name}, which does not exist")
    return folder


def _read_state(path: Path) -> ScheduleState:
    try:
        values = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"'{path}' is damaged ({first_line(exc, with_type=True)})") from exc
    names = {f.name for f in fields(ScheduleState)}
    if not isinstance(values, dict) or set(values) != names:
        raise CheckpointError(f"'{path}' is damaged (it does not hold the fields {', '.join(sorted(names))})")
    wrong = [k for k, kind in STATE_TYPES.items() if not isinstance(values[k], kind) or isinstance(values[k], bool)]
    wrong += [k for k in ("history", "phase_results") if k not in wrong and not all(isinstance(r, dict) for r in values[k])]
    if "early_stopping" not in wrong and values["early_stopping"] and set(values["early_stopping"]) != set(EARLY_STOPPING_STATE):
        wrong.append("early_stopping")
    if wrong:
        raise CheckpointError(f"'{path}' is damaged ({wrong[0]} is {values[wrong[0]]!r:.60})")
    return ScheduleState(**values)


def _read_rng(path: Path) -> dict:
    """rng.json, checked by setting its states into scratch generators."""
    try:
        rng = json.loads(path.read_text())
        random.Random().setstate(_python_state(rng["python"]))
        np.random.RandomState().set_state(_numpy_state(rng["numpy"]))
    except (OSError, ValueError, TypeError, KeyError, IndexError) as exc:
        raise CheckpointError(f"'{path}' is damaged ({first_line(exc, with_type=True)})") from exc
    return rng


def _python_state(saved: dict) -> tuple:
    return saved["version"], tuple(saved["internal"]), saved["gauss_next"]


def _numpy_state(saved: dict) -> tuple:
    key = np.asarray(saved["key"], dtype=np.int64)
    if key.shape != (624,) or key.min() < 0 or key.max() >= 2**32:
        raise ValueError("numpy's key is not 624 unsigned 32-bit integers")
    return saved["name"], key.astype(np.uint32), saved["pos"], saved["has_gauss"], saved["cached_gaussian"]


def _load_keras(path: Path) -> "keras.Model":
    """model.keras in Keras' safe mode (transferlab.models.load_trained_model); any failure is one line."""
    from transferlab.models.saved import load_trained_model

    try:
        return load_trained_model(str(path))
    except Exception as exc:  # zipfile, h5py, JSON and Keras' deserialization raise many types
        raise CheckpointError(f"'{path}' cannot be loaded ({first_line(exc, with_type=True)})") from exc


def _epoch_folders(root: Path) -> list[Path]:
    return [f for f in root.glob("epoch-*") if f.is_dir() and FOLDER_NAME.fullmatch(f.name)] if root.is_dir() else []


def _epoch_of(folder: Path) -> int:
    return int(folder.name.removeprefix("epoch-"))


def _save_arrays(path: Path, values: list) -> None:
    np.savez(path, **{f"w{i}": np.asarray(v) for i, v in enumerate(values)})


def _load_arrays(path: Path) -> list[np.ndarray]:
    """Every array of a checkpoint's `.npz`, read in full (so a truncated file fails here), never unpickled."""
    try:
        with np.load(path, allow_pickle=False) as arrays:
            return [arrays[f"w{i}"] for i in range(len(arrays.files))]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise CheckpointError(f"'{path}' is damaged ({first_line(exc, with_type=True)})") from exc


def _assign(variables: list, values: list[np.ndarray]) -> None:
    """Assign saved values in order; a different model or optimizer fails here rather than training on."""
    if len(variables) != len(values) or any(tuple(v.shape) != w.shape for v, w in zip(variables, values, strict=True)):
        raise ModelError("the checkpoint does not fit this model (its variables differ); resume with the run's own config")
    for variable, value in zip(variables, values, strict=True):
        variable.assign(value)


def _seed_states(model: "keras.Model") -> list:
    return [v for v in model.variables if v.name == "seed_generator_state"]
