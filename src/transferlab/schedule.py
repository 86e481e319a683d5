"""The two-phase schedule: train a new head on a frozen base, then fine-tune the unfrozen base.

Rules the Keras transfer-learning guide teaches, each enforced here:
- phase 1 sets `base.trainable = False`, so only the head's weights change;
- phase 2 unfreezes all or the top part of the base, and sets every BatchNormalization layer in it
  non-trainable, which keeps it in inference mode (Keras 3.15 passes training=True into the base
  during fit despite `base(x, training=False)`, keras-team/keras#20285);
- the model is compiled again after `trainable` changes, since trainable variables are fixed at
  compile time;
- epochs continue across phases (`initial_epoch`), so the history is one run with a phase column.

The schedule's position (`ScheduleState`) is written after every epoch, so a later resume knows
which phase and epoch a killed run reached.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator, Optional

import keras

from transferlab.config import FineTuneConfig, OptimizerConfig, OptimizerName, PhaseConfig, ScheduleConfig
from transferlab.data import ImageData
from transferlab.errors import ConfigError, TrainingError
from transferlab.models import TaskSpec, get_base
from transferlab.tracking import Trackers

HEAD = "head"
FINE_TUNE = "fine_tune"


@dataclass(frozen=True)
class Phase:
    name: str
    epochs: int
    lr: float
    patience: Optional[int]
    unfreeze: Optional[str] = None  # None: base frozen


@dataclass
class ScheduleState:
    """Where the schedule stands: phase, epochs completed over the whole run, and phases finished."""

    phase: str = HEAD
    epoch: int = 0
    finished_phases: list[str] = field(default_factory=list)

    def save(self, path: Path) -> None:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2))
        os.replace(tmp, path)  # atomic: a crash mid-write leaves the previous state intact


@dataclass
class PhaseResult:
    name: str
    first_epoch: int  # 1-based, on the run's continuous epoch axis
    epochs_run: int
    lr: float
    wall_time_s: float
    stopped_early: bool
    trainable_params: int


@dataclass
class ScheduleResult:
    phases: list[PhaseResult]
    history: list[dict]  # one row per epoch: epoch, phase, lr, train and validation metrics


def plan_phases(cfg: ScheduleConfig) -> list[Phase]:
    """The phases that will run; a phase with 0 epochs is left out."""
    head: PhaseConfig = cfg.head
    fine: FineTuneConfig = cfg.fine_tune
    phases = [
        Phase(HEAD, head.epochs, head.lr, head.patience),
        Phase(FINE_TUNE, fine.epochs, fine.lr, fine.patience, unfreeze=fine.unfreeze),
    ]
    return [p for p in phases if p.epochs > 0]


def check_unfreeze(model: keras.Model, cfg: ScheduleConfig) -> None:
    """Fail before training if `schedule.fine_tune.unfreeze` names no part of this base."""
    if cfg.fine_tune.epochs > 0:
        unfreeze_start(get_base(model), cfg.fine_tune.unfreeze)


def unfreeze_start(base: keras.Model, unfreeze: str) -> int:
    """Index of the first base layer to train: 0 for "all", len-N for "N", the named layer's index."""
    layers = base.layers
    if unfreeze == "all":
        return 0
    if unfreeze.isdigit():
        n = int(unfreeze)
        if not 0 < n <= len(layers):
            raise ConfigError(
                f"schedule.fine_tune.unfreeze={n} but the base '{base.name}' has {len(layers)} layers; "
                f"use a number from 1 to {len(layers)}, a layer name, or all"
            )
        return len(layers) - n
    names = [layer.name for layer in layers]
    if unfreeze not in names:
        import difflib

        close = difflib.get_close_matches(unfreeze, names, n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise ConfigError(
            f"schedule.fine_tune.unfreeze='{unfreeze}' is not a layer of the base{hint}; "
            "use all, a number of top layers, or a layer name"
        )
    return names.index(unfreeze)


def set_trainable_for_phase(model: keras.Model, phase: Phase) -> None:
    base = get_base(model)
    if phase.unfreeze is None:
        base.trainable = False
        return
    start = unfreeze_start(base, phase.unfreeze)
    base.trainable = True
    for layer in base.layers[:start]:
        layer.trainable = False
    for layer in _all_layers(base):
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False


def _all_layers(model: keras.Model) -> Iterator[keras.layers.Layer]:
    for layer in model.layers:
        yield layer
        if hasattr(layer, "layers"):
            yield from _all_layers(layer)


def make_optimizer(cfg: OptimizerConfig, lr: float) -> keras.optimizers.Optimizer:
    common = {"learning_rate": lr, "clipnorm": cfg.clipnorm}
    if cfg.weight_decay is not None:
        common["weight_decay"] = cfg.weight_decay
    if cfg.name is OptimizerName.adam:
        return keras.optimizers.Adam(**common)
    if cfg.name is OptimizerName.adamw:
        return keras.optimizers.AdamW(**common)
    return keras.optimizers.SGD(momentum=cfg.momentum, nesterov=cfg.nesterov, **common)


def compile_model(model: keras.Model, optimizer: OptimizerConfig, lr: float, task: TaskSpec) -> None:
    if task.binary:
        loss = keras.losses.BinaryCrossentropy(from_logits=True)
        accuracy = keras.metrics.BinaryAccuracy(name="accuracy", threshold=0.0)
    else:
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        accuracy = keras.metrics.SparseCategoricalAccuracy(name="accuracy")
    model.compile(optimizer=make_optimizer(optimizer, lr), loss=loss, metrics=[accuracy])


class EpochRecorder(keras.callbacks.Callback):
    """Appends each epoch to the history, forwards it to the trackers, and saves the schedule state."""

    def __init__(self, trackers: Trackers, state: ScheduleState, run_dir: Path):
        super().__init__()
        self.trackers = trackers
        self.state = state
        self.state_path = run_dir / "schedule_state.json"
        self.rows: list[dict] = []
        self.phase: Optional[Phase] = None
        self._epoch_start = 0.0

    def on_epoch_begin(self, epoch: int, logs=None) -> None:
        self._epoch_start = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        metrics = {k: float(v) for k, v in (logs or {}).items()}
        row = {"epoch": epoch + 1, "phase": self.phase.name, "lr": self.phase.lr, **metrics}
        row["epoch_time_s"] = time.perf_counter() - self._epoch_start
        self.rows.append(row)
        self.trackers.log_epoch(epoch + 1, self.phase.name, {**metrics, "lr": self.phase.lr})
        self.state.epoch = epoch + 1
        self.state.save(self.state_path)


def run_schedule(
    model: keras.Model,
    data: ImageData,
    cfg: ScheduleConfig,
    optimizer: OptimizerConfig,
    task: TaskSpec,
    trackers: Trackers,
    run_dir: Path,
    verbose: int = 2,
) -> ScheduleResult:
    """Run each planned phase with its own trainable set, compile, and callbacks; return the history."""
    state = ScheduleState()
    recorder = EpochRecorder(trackers, state, run_dir)
    # One checkpoint callback for both phases, so best.keras is the best epoch of the whole run.
    best_checkpoint = keras.callbacks.ModelCheckpoint(
        run_dir / "best.keras", monitor=cfg.monitor, mode=cfg.mode.value, save_best_only=True
    )
    results = []
    for phase in plan_phases(cfg):
        state.phase = phase.name
        recorder.phase = phase
        set_trainable_for_phase(model, phase)
        compile_model(model, optimizer, phase.lr, task)
        callbacks = [recorder, best_checkpoint, keras.callbacks.TerminateOnNaN()]
        early_stop = None
        if phase.patience is not None:
            early_stop = keras.callbacks.EarlyStopping(
                monitor=cfg.monitor, mode=cfg.mode.value, patience=phase.patience, restore_best_weights=True
            )
            callbacks.append(early_stop)
        first_epoch = state.epoch
        start = time.perf_counter()
        model.fit(
            data.train,
            validation_data=data.validation,
            initial_epoch=first_epoch,
            epochs=first_epoch + phase.epochs,
            callbacks=callbacks,
            verbose=verbose,
            shuffle=False,  # the tf.data pipeline shuffles; Keras would only warn
        )
        _raise_if_diverged(recorder.rows, phase)
        state.finished_phases.append(phase.name)
        state.save(recorder.state_path)
        results.append(
            PhaseResult(
                name=phase.name,
                first_epoch=first_epoch + 1,
                epochs_run=state.epoch - first_epoch,
                lr=phase.lr,
                wall_time_s=time.perf_counter() - start,
                stopped_early=bool(early_stop and early_stop.stopped_epoch > 0),
                trainable_params=sum(int(math.prod(w.shape)) for w in model.trainable_weights),
            )
        )
    return ScheduleResult(results, recorder.rows)


def _raise_if_diverged(rows: list[dict], phase: Phase) -> None:
    if rows and not math.isfinite(rows[-1].get("loss", 0.0)):
        raise TrainingError(
            f"the training loss became {rows[-1]['loss']} at epoch {rows[-1]['epoch']} of phase {phase.name}; "
            f"lower schedule.{phase.name}.lr (now {phase.lr}) or check the data for broken labels"
        )
