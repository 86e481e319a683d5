"""The two-phase schedule: train a new head on a frozen base, then fine-tune the unfrozen base.

Rules the Keras transfer-learning guide teaches, each enforced here:
- phase 1 sets `base.trainable = False`, so only the head's weights change;
- phase 2 unfreezes all or the top part of the base, and sets every BatchNormalization layer in it
  non-trainable, which keeps it in inference mode (Keras 3.15 passes training=True into the base
  during fit despite `base(x, training=False)`, keras-team/keras#20285);
- the model is compiled again after `trainable` changes, since trainable variables are fixed at
  compile time;
- epochs continue across phases (`initial_epoch`), so the history is one run with a phase column.

After every epoch the model, its optimizer state and the schedule's position are checkpointed
(`transferlab.checkpoints`), so a killed run resumes in the right phase at the next epoch.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator, Optional

import keras
import numpy as np

from transferlab.config import (
    FineTuneConfig, HeadPhaseConfig, OptimizerConfig, OptimizerName, ScheduleConfig, monitor_mode,
)
from transferlab.checkpoints import (
    BEST_PENDING, EARLY_STOPPING_STATE, Checkpoint, ScheduleState, base_digest, save_checkpoint, trained_variables,
)
from transferlab.data import SplitData
from transferlab.errors import ConfigError, TrainingError
from transferlab.features import FeatureStore, cached_feature_data, split_model
from transferlab.models import TaskSpec, get_base
from transferlab.reporting import save_model, write_history
from transferlab.tracking import Trackers

log = logging.getLogger(__name__)

HEAD = "head"
FINE_TUNE = "fine_tune"


@dataclass(frozen=True)
class Phase:
    name: str
    epochs: int
    lr: float
    patience: Optional[int]
    unfreeze: Optional[str] = None  # None: base frozen
    cache_features: bool = False


@dataclass
class PhaseResult:
    name: str
    first_epoch: int  # 1-based, on the run's continuous epoch axis
    epochs_run: int
    lr: float
    wall_time_s: float
    stopped_early: bool
    trainable_params: int
    feature_extraction_s: float = 0.0  # the one pass of the frozen base when phase 1 trains on cached features


@dataclass
class ScheduleResult:
    phases: list[PhaseResult]
    history: list[dict]  # one row per epoch: epoch, phase, lr, train and validation metrics


def plan_phases(cfg: ScheduleConfig, cache_by_default: bool = True) -> list[Phase]:
    """The phases that will run; a phase with 0 epochs is left out.

    `cache_features: null` caches when `cache_by_default`: for image bases without augmentation.
    """
    head: HeadPhaseConfig = cfg.head
    fine: FineTuneConfig = cfg.fine_tune
    cache = head.cache_features if head.cache_features is not None else cache_by_default
    phases = [
        Phase(HEAD, head.epochs, head.lr, head.patience, cache_features=cache),
        Phase(FINE_TUNE, fine.epochs, fine.lr, fine.patience, unfreeze=fine.unfreeze),
    ]
    return [p for p in phases if p.epochs > 0]


def check_unfreeze(model: keras.Model, cfg: ScheduleConfig) -> None:
    """Fail before training if `schedule.fine_tune.unfreeze` names no part of this base, or a part
    with nothing to train (a SavedModel that exposes no trainable variables)."""
    if cfg.fine_tune.epochs <= 0:
        return
    base = get_base(model)
    unfrozen = base.layers[unfreeze_start(base, cfg.fine_tune.unfreeze):]
    if not any(v.trainable for layer in unfrozen for v in layer.weights):
        raise ConfigError(
            f"schedule.fine_tune.unfreeze={cfg.fine_tune.unfreeze} leaves nothing to fine-tune: that part of the "
            "base has no trainable variables (a SavedModel exported without them cannot be fine-tuned); "
            "set schedule.fine_tune.epochs=0 or schedule=head_only"
        )


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


def compile_model(
    model: keras.Model,
    optimizer: OptimizerConfig | keras.optimizers.Optimizer,
    lr: float,
    task: TaskSpec,
    jit_compile: bool = False,
    steps_per_execution: int = 1,
) -> None:
    """Loss on logits and an accuracy named `accuracy` for either task; a given optimizer is shared.

    Under a mixed_float16 policy Keras wraps the optimizer in a LossScaleOptimizer itself.
    """
    if isinstance(optimizer, OptimizerConfig):
        optimizer = make_optimizer(optimizer, lr)
    if task.binary:
        loss = keras.losses.BinaryCrossentropy(from_logits=True)
        accuracy = keras.metrics.BinaryAccuracy(name="accuracy", threshold=0.0)
    else:
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        accuracy = keras.metrics.SparseCategoricalAccuracy(name="accuracy")
    model.compile(
        optimizer=optimizer, loss=loss, metrics=[accuracy], jit_compile=jit_compile, steps_per_execution=steps_per_execution
    )


class EpochRecorder(keras.callbacks.Callback):
    """Appends each epoch to the history (in the schedule state) and forwards it to the trackers."""

    def __init__(self, trackers: Trackers, state: ScheduleState):
        super().__init__()
        self.trackers = trackers
        self.state = state
        self.phase: Optional[Phase] = None
        self._epoch_start = 0.0

    def on_epoch_begin(self, epoch: int, logs=None) -> None:
        self._epoch_start = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        metrics = {k: float(v) for k, v in (logs or {}).items()}
        row = {"epoch": epoch + 1, "phase": self.phase.name, "lr": self.phase.lr, **metrics}
        row["epoch_time_s"] = time.perf_counter() - self._epoch_start
        self.state.history.append(row)
        self.state.epoch = epoch + 1
        self.trackers.log_epoch(epoch + 1, self.phase.name, {**metrics, "lr": self.phase.lr})


class ResumableEarlyStopping(keras.callbacks.EarlyStopping):
    """EarlyStopping whose counters and best weights survive a restart of the process."""

    def __init__(self, *args, saved: Optional[dict] = None, saved_weights: Optional[list] = None, **kwargs):
        super().__init__(*args, **kwargs)
        self._saved, self._saved_weights = saved or {}, saved_weights

    def on_train_begin(self, logs=None) -> None:
        super().on_train_begin(logs)
        if self._saved:
            for key in EARLY_STOPPING_STATE:
                setattr(self, key, self._saved[key])
            self.best_weights = self._saved_weights

    def state(self) -> dict:
        best = None if self.best is None else float(self.best)
        return {"wait": self.wait, "best": best, "best_epoch": self.best_epoch, "stopped_epoch": self.stopped_epoch}


class BestModelCheckpoint(keras.callbacks.ModelCheckpoint):
    """best.keras of the whole classifier, written only when it is needed.

    While the base is frozen (`defer`), an improvement only copies the variables outside the base
    (`pending`). The full model is written when the phase ends, unless a fine-tuning phase follows:
    then the frozen base's weights are kept in memory when fine-tuning starts (`pending_base`), and
    the head phase's best is written only if fine-tuning never beats it, or the run stops first. A
    usual two-phase run therefore writes best.keras only for fine-tuning's improvements. Every
    checkpoint carries `pending` until it is written, so a killed run loses nothing.
    """

    def __init__(self, full_model: keras.Model, *args, pending: Optional[list] = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.full_model, self.pending = full_model, pending
        self.pending_base: Optional[list[np.ndarray]] = None
        self.defer = self.hold = False

    def begin_phase(self, frozen_base: bool, last: bool) -> None:
        """Before a phase's fit: a frozen base defers writes, and holds them past the phase unless it is the last."""
        self.defer, self.hold = frozen_base, frozen_base and not last
        if not frozen_base and self.pending is not None and self.pending_base is None:
            self.pending_base = [np.array(v) for v in get_base(self.full_model).variables]

    def set_model(self, model: keras.Model) -> None:
        super().set_model(self.full_model)

    def _save_model(self, epoch, batch, logs) -> None:
        if not self._should_save_model(epoch, batch, logs, self.filepath):
            return
        if self.defer:
            self.pending = [np.array(v) for v in trained_variables(self.full_model)]
        else:
            save_model(self.full_model, Path(self.filepath))
            self.pending = self.pending_base = None

    def on_train_end(self, logs=None) -> None:
        if not self.hold:
            self.write_pending()

    def write_pending(self) -> None:
        """Write best.keras from the pending best variables, leaving the model's own as they were."""
        if self.pending is None:
            return
        variables, values = trained_variables(self.full_model), list(self.pending)
        if self.pending_base is not None:
            variables += get_base(self.full_model).variables
            values += self.pending_base
        current = [np.array(v) for v in variables]
        for variable, value in zip(variables, values, strict=True):
            variable.assign(value)
        try:
            save_model(self.full_model, Path(self.filepath))
        finally:
            for variable, value in zip(variables, current, strict=True):
                variable.assign(value)
        self.pending = self.pending_base = None


class EpochCheckpointer(keras.callbacks.Callback):
    """Saves the resumable checkpoint after each epoch; runs after every other callback of the epoch."""

    def __init__(self, root: Path, full_model: keras.Model, state: ScheduleState, best: BestModelCheckpoint):
        super().__init__()
        self.root, self.full_model, self.state, self.best = root, full_model, state, best
        self.early_stop: Optional[ResumableEarlyStopping] = None
        self.base_sha256: Optional[str] = None  # the digest of the base frozen or under the pending best

    @property
    def needs_base_digest(self) -> bool:
        """A frozen-base checkpoint, or one carrying a head-phase best, names the base it belongs to."""
        return self.best.defer or self.best.pending is not None

    def on_train_begin(self, logs=None) -> None:
        # Hashed once: before fine-tuning's first step the base is still the one the pending best was found with.
        self.base_sha256 = (self.base_sha256 or base_digest(self.full_model)) if self.needs_base_digest else None

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        self.state.best_value = None if self.best.best is None else float(self.best.best)
        weights = None
        if self.early_stop is not None:
            self.state.early_stopping = self.early_stop.state()
            weights = self.early_stop.best_weights
        write_history(self.state.history, self.root.parent / "history.csv")
        self.save(weights)

    def save(self, early_stopping_weights: Optional[list] = None) -> None:
        save_checkpoint(
            self.root, self.full_model, self.state, early_stopping_weights, frozen_base=self.best.defer,
            base_sha256=self.base_sha256 if self.needs_base_digest else None, **{BEST_PENDING: self.best.pending},
        )


def run_schedule(
    model: keras.Model,
    data: SplitData,
    cfg: ScheduleConfig,
    optimizer: OptimizerConfig,
    task: TaskSpec,
    trackers: Trackers,
    run_dir: Path,
    verbose: int = 2,
    resume_from: Optional[Checkpoint] = None,
    cache_by_default: bool = True,
    jit_compile: bool = False,
    features: Optional[FeatureStore] = None,
) -> ScheduleResult:
    """Run each planned phase with its own trainable set, compile, and callbacks; return the history.

    With `resume_from`, `model` is the checkpoint's model (compiled, with its optimizer state), the
    finished phases are skipped, and the interrupted phase continues at the next epoch. A cached head
    phase reads the base's features from `features` (the run's store, shared with the baseline).
    """
    state = resume_from.state if resume_from else ScheduleState()
    if resume_from:
        resume_from.restore_rng(model)
    recorder = EpochRecorder(trackers, state)
    # One best-model callback for both phases, so best.keras is the best epoch of the whole run.
    best_checkpoint = BestModelCheckpoint(
        model, run_dir / "best.keras", monitor=cfg.monitor, mode=monitor_mode(cfg), save_best_only=True,
        initial_value_threshold=state.best_value,
        # A full-model checkpoint's pending best was written before resuming (Checkpoint.write_pending_best).
        pending=resume_from.arrays(BEST_PENDING) if resume_from and resume_from.frozen_base else None,
    )
    checkpointer = EpochCheckpointer(run_dir / "checkpoints", model, state, best_checkpoint)
    phases = [p for p in plan_phases(cfg, cache_by_default) if p.name not in state.finished_phases]
    try:
        for phase in phases:
            resuming = _enter_phase(model, phase, state, optimizer, task, resume_from, jit_compile)
            best_checkpoint.begin_phase(frozen_base=phase.unfreeze is None, last=phase is phases[-1])
            recorder.phase = phase
            started, resumed_at = time.perf_counter(), state.epoch
            fit_model, fit_data, extraction_s = _what_to_fit(model, data, phase, task, features or FeatureStore(model, data))
            early_stop = None
            if phase.patience is not None:
                early_stop = ResumableEarlyStopping(
                    monitor=cfg.monitor, mode=monitor_mode(cfg), patience=phase.patience, restore_best_weights=True,
                    saved=state.early_stopping if resuming else None,
                    saved_weights=resume_from.early_stopping_weights() if resuming else None,
                )
            checkpointer.early_stop = early_stop
            callbacks = [recorder, best_checkpoint, keras.callbacks.TerminateOnNaN(), *filter(None, [early_stop]), checkpointer]
            _fit(fit_model, fit_data, state, phase, callbacks, verbose)
            state.finished_phases.append(phase.name)
            elapsed_s = time.perf_counter() - started
            state.phase_results.append(asdict(_phase_result(phase, state, model, extraction_s, elapsed_s, resumed_at)))
            checkpointer.save()
    except BaseException:
        try:
            best_checkpoint.write_pending()  # a failed or interrupted run keeps the best model it found
        except Exception as exc:  # e.g. the disk that failed the run is still full: report the first error
            log.warning("could not write %s after the run stopped (%s)", best_checkpoint.filepath, exc)
        raise
    return ScheduleResult([PhaseResult(**r) for r in state.phase_results], state.history)


def _fit(model: keras.Model, data: SplitData, state: ScheduleState, phase: Phase, callbacks: list, verbose: int) -> None:
    """Fit the phase's remaining epochs; a diverged loss ends the run."""
    stopped = bool(state.early_stopping.get("stopped_epoch"))
    last_epoch = state.epoch if stopped else state.phase_first_epoch + phase.epochs
    model.fit(
        data.train_from(state.epoch, max(1, last_epoch - state.epoch)),
        steps_per_epoch=data.steps_per_epoch,
        validation_data=data.validation,
        initial_epoch=state.epoch,
        # An early stop decided just before a crash is kept: fit then only restores the best weights.
        epochs=last_epoch,
        callbacks=callbacks,
        verbose=verbose,
        shuffle=False,  # the tf.data pipeline shuffles; Keras would only warn
    )
    _raise_if_diverged(state.history, phase)


def _enter_phase(
    model: keras.Model, phase: Phase, state: ScheduleState, optimizer: OptimizerConfig, task: TaskSpec,
    resume_from: Optional[Checkpoint], jit_compile: bool = False,
) -> bool:
    """Set the phase's trainable layers and compile, unless a checkpoint's compiled model continues it;
    True when the phase is resumed. A frozen-base checkpoint's model is rebuilt uncompiled, so it is
    compiled here and its optimizer state restored."""
    resuming = state.mid_phase and state.phase == phase.name
    if resuming and not resume_from.frozen_base:
        return True
    if not resuming:
        state.start_phase(phase.name)
    set_trainable_for_phase(model, phase)
    compile_model(model, optimizer, phase.lr, task, jit_compile)
    if resuming:
        resume_from.restore_optimizer(model)
    return resuming


def _what_to_fit(
    model: keras.Model, data: SplitData, phase: Phase, task: TaskSpec, features: FeatureStore
) -> tuple[keras.Model, SplitData, float]:
    """The model and data a phase fits, and the seconds spent getting the base's features for it.

    With cached features, fit trains the head alone (the model's own head layers) on the base's
    stored outputs, with the model's optimizer so its state is saved with the model. Each call of
    the training function runs a whole epoch (a step on a batch of vectors takes less time than
    Keras spends between two calls), except under a distribution strategy, where Keras 3.15 cannot
    run several steps per call.
    """
    if not phase.cache_features:
        return model, data, 0.0
    import tensorflow as tf

    started = time.perf_counter()
    cached = cached_feature_data(features, data)
    extraction_s = time.perf_counter() - started
    _, head = split_model(model)
    # Without XLA: the head trains a few small epochs, which compiling would cost more than it saves.
    steps = 1 if tf.distribute.has_strategy() else data.steps_per_epoch
    compile_model(head, model.optimizer, phase.lr, task, jit_compile=False, steps_per_execution=steps)
    return head, cached, extraction_s


def _phase_result(
    phase: Phase, state: ScheduleState, model: keras.Model, extraction_s: float, elapsed_s: float, resumed_at: int
) -> PhaseResult:
    """The phase's numbers; its wall time counts everything since it started (checkpoints included),
    plus the epoch times of a process that ran part of it before a resume."""
    rows = [r for r in state.history if r["phase"] == phase.name]
    earlier_s = sum(r["epoch_time_s"] for r in rows if r["epoch"] <= resumed_at)
    return PhaseResult(
        name=phase.name,
        first_epoch=state.phase_first_epoch + 1,
        epochs_run=len(rows),
        lr=phase.lr,
        wall_time_s=earlier_s + elapsed_s,
        stopped_early=bool(state.early_stopping.get("stopped_epoch")),
        trainable_params=sum(int(math.prod(w.shape)) for w in model.trainable_weights),
        feature_extraction_s=extraction_s,
    )


def _raise_if_diverged(rows: list[dict], phase: Phase) -> None:
    if rows and not math.isfinite(rows[-1].get("loss", 0.0)):
        raise TrainingError(
            f"the training loss became {rows[-1]['loss']} at epoch {rows[-1]['epoch']} of phase {phase.name}; "
            f"lower schedule.{phase.name}.lr (now {phase.lr}) or check the data for broken labels"
        )
