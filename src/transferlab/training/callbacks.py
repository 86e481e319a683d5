"""The schedule's Keras callbacks: epoch history, resumable early stopping, best-model and per-epoch checkpoints,
and the one place that builds them for each phase."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Optional

import keras
import numpy as np

from transferlab.atomic import save_model, write_history
from transferlab.compat.keras import require_private_method
from transferlab.config.schema import ScheduleConfig, monitor_mode
from transferlab.models.lora import pretrained_variables, without_adapter_updates
from transferlab.models.saved import base_digest, get_base
from transferlab.tracking.base import Trackers
from transferlab.training.checkpoints import (
    BEST_PENDING,
    EARLY_STOPPING_STATE,
    Checkpoint,
    ScheduleState,
    save_checkpoint,
    trained_variables,
)
from transferlab.training.phases import Phase
from transferlab.training.runs import raise_if_signalled

log = logging.getLogger(__name__)


class EpochRecorder(keras.callbacks.Callback):
    """Appends each epoch to the history (in the schedule state) and forwards it to the trackers."""

    def __init__(self, trackers: Trackers, state: ScheduleState):
        super().__init__()
        self.trackers = trackers
        self.state = state
        self.phase: Optional[Phase] = None
        self._epoch_start = 0.0

    def on_epoch_begin(self, epoch: int, logs=None) -> None:
        raise_if_signalled()
        self._epoch_start = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        metrics = {k: float(v) for k, v in (logs or {}).items()}
        # Under a warmup or decay schedule: the rate it has reached at the end of the epoch.
        lr = float(self.model.optimizer.learning_rate) if self.phase.scheduled else self.phase.lr
        row = {"epoch": epoch + 1, "phase": self.phase.name, "lr": lr, **metrics}
        row["epoch_time_s"] = time.perf_counter() - self._epoch_start
        self.state.history.append(row)
        self.state.epoch = epoch + 1
        self.trackers.log_epoch(epoch + 1, self.phase.name, {**metrics, "lr": lr})


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

    def __init__(self, full_model: keras.Model, *args, pending: Optional[list] = None,
                 pending_base: Optional[list] = None, **kwargs):
        for method in ("_save_model", "_should_save_model"):
            require_private_method("keras.callbacks.ModelCheckpoint", method, "best.keras's deferred writes")
        super().__init__(*args, **kwargs)
        self.full_model, self.pending, self.pending_base = full_model, pending, pending_base
        self.defer = self.hold = False

    def begin_phase(self, frozen_base: bool, last: bool) -> None:
        """Before a phase's fit: a frozen base defers writes, and holds them past the phase unless it is the last."""
        self.defer, self.hold = frozen_base, frozen_base and not last
        if not frozen_base and self.pending is not None and self.pending_base is None:
            self.pending_base = [np.array(v) for v in pretrained_variables(get_base(self.full_model))]

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
        # After early stopping has put back the phase's best epoch: an earlier phase's best that is still
        # the run's best replaces it, so the model the run ends with is the one best.keras holds (LP-FT:
        # fine-tuning that never beat the head phase on validation leaves the head phase's model).
        if not self.hold:
            self.write_pending()

    def write_pending(self) -> None:
        """Put the pending best variables into the model and write best.keras from it."""
        if self.pending is None:
            return
        variables, values = trained_variables(self.full_model), list(self.pending)
        if self.pending_base is not None:
            base = get_base(self.full_model)
            variables += pretrained_variables(base)
            values += self.pending_base
            without_adapter_updates(base.variables)
        for variable, value in zip(variables, values, strict=True):
            variable.assign(value)
        save_model(self.full_model, Path(self.filepath))
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


class PhaseCallbacks:
    """The callbacks of every phase. The history recorder, best-model checkpoint and epoch checkpointer
    are one each for the whole run, so best.keras is the best epoch of both phases; early stopping
    is per phase, restored mid-phase from the checkpoint. At its end a phase's weights are those of its
    best epoch, and the last phase's those of the run's best, which is the model evaluated and saved."""

    def __init__(self, model: keras.Model, cfg: ScheduleConfig, trackers: Trackers, run_dir: Path,
                 state: ScheduleState, resume_from: Optional[Checkpoint]):
        self.cfg, self.state, self.resume_from = cfg, state, resume_from
        self.recorder = EpochRecorder(trackers, state)
        self.best = BestModelCheckpoint(
            model, run_dir / "best.keras", monitor=str(cfg.monitor), mode=monitor_mode(cfg), save_best_only=True,
            initial_value_threshold=state.best_value, pending=pending_best(resume_from),
            pending_base=resume_from.pending_base if resume_from else None,
        )
        self.checkpointer = EpochCheckpointer(run_dir / "checkpoints", model, state, self.best)
        # A resumed fine-tune whose head-phase best is still pending names the base that best was found on.
        self.checkpointer.base_sha256 = resume_from.base_sha256 if resume_from else None

    def for_phase(self, phase: Phase, last: bool, resuming: bool) -> list[keras.callbacks.Callback]:
        """The phase's callbacks in the order they must run: the checkpointer last, after every other's update."""
        self.best.begin_phase(frozen_base=phase.unfreeze is None, last=last)
        self.recorder.phase = phase
        early_stop = self._early_stopping(phase, resuming)
        self.checkpointer.early_stop = early_stop
        return [self.recorder, keras.callbacks.TerminateOnNaN(), early_stop, self.best, self.checkpointer]

    def _early_stopping(self, phase: Phase, resuming: bool) -> ResumableEarlyStopping:
        """Every phase ends on its best epoch (the next starts from it; LP-FT fine-tunes from the best head),
        and stops early only with a patience."""
        return ResumableEarlyStopping(
            monitor=str(self.cfg.monitor), mode=monitor_mode(self.cfg), patience=phase.epochs if phase.patience is None else phase.patience,
            restore_best_weights=True,
            saved=self.state.early_stopping if resuming else None,
            saved_weights=self.resume_from.early_stopping_weights() if resuming else None,
        )

    def keep_best_after_failure(self) -> None:
        """A failed or interrupted run keeps the best model it found; a second failure only warns."""
        try:
            self.best.write_pending()
        except Exception as exc:  # e.g. the disk that failed the run is still full: report the first error
            log.warning("could not write %s after the run stopped (%s)", self.best.filepath, exc)


def pending_best(checkpoint: Optional[Checkpoint]) -> Optional[list]:
    """The head-phase best a checkpoint still carries, to be written (again) when it is due, and kept in the
    model if nothing beats it.

    A full-model checkpoint's pending best needs the pretrained base rebuilt from the config, so the
    recipe writes it before resuming (`Checkpoint.write_pending_best`), which keeps that base's weights.
    """
    return checkpoint.arrays(BEST_PENDING) if checkpoint else None
