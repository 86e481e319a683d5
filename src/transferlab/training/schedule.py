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
(`transferlab.training.checkpoints`), so a killed run resumes in the right phase at the next epoch.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

import keras

from transferlab.config.schema import BaselineConfig, HeadSolver, OptimizerConfig, ScheduleConfig
from transferlab.data.splits import SplitData
from transferlab.errors import TrainingError
from transferlab.features.store import FeatureStore, cached_feature_data, split_model
from transferlab.models.heads import TaskSpec
from transferlab.tracking.base import Trackers
from transferlab.training.callbacks import PhaseCallbacks
from transferlab.training.checkpoints import Checkpoint, ScheduleState
from transferlab.training.head_solver import linear_output, probe_grid, solve_linear_head
from transferlab.training.optimizers import compile_model, make_optimizer, phase_learning_rate
from transferlab.training.phases import (
    Phase,
    PhaseResult,
    ScheduleResult,
    base_variable_indices,
    plan_phases,
    set_trainable_for_phase,
)

log = logging.getLogger(__name__)

SOLVER_C = "solver_C"  # the history column of the inverse L2 strength the head's solver chose


@dataclass
class ScheduleRun:
    """What the schedule trains, on what, with which settings, and where it records."""

    model: keras.Model
    data: SplitData
    task: TaskSpec
    features: FeatureStore  # the run's store, shared with the baseline: a cached head phase reads from it
    schedule: ScheduleConfig
    optimizer: OptimizerConfig
    trackers: Trackers
    run_dir: Path
    baseline: BaselineConfig = field(default_factory=BaselineConfig)  # its C is one the head's solver tries
    resume_from: Optional[Checkpoint] = None
    cache_by_default: bool = True  # whether the head phase caches base features unless the config says
    jit_compile: bool = False
    verbose: int = 2


def run_schedule(run: ScheduleRun) -> ScheduleResult:
    """Run each planned phase with its own trainable set, compile, and callbacks; return the history.

    With `resume_from`, `model` is the checkpoint's model (compiled, with its optimizer state), the
    finished phases are skipped, and the interrupted phase continues at the next epoch.
    """
    model, resume_from = run.model, run.resume_from
    state = resume_from.state if resume_from else ScheduleState()
    if resume_from:
        resume_from.restore_rng(model)
    callbacks = PhaseCallbacks(model, run.schedule, run.trackers, run.run_dir, state, resume_from)
    planned = plan_phases(run.schedule, run.cache_by_default, linear_head=linear_output(split_model(model)[1]) is not None)
    phases = [p for p in planned if p.name not in state.finished_phases]
    try:
        for phase in phases:
            last = phase is phases[-1]
            resuming = _enter_phase(model, phase, state, run.optimizer, run.task, resume_from, run.data.steps_per_epoch,
                                    run.jit_compile)
            phase_callbacks = callbacks.for_phase(phase, last=last, resuming=resuming)
            started, resumed_at = time.perf_counter(), state.epoch
            fit_model, fit_data, extraction_s = _what_to_fit(model, run.data, phase, run.task, run.features)
            if phase.solver is HeadSolver.lbfgs:
                _solve(fit_model, run.features, state, phase, phase_callbacks, run.schedule.head.solver_grid, run.baseline)
            else:
                _fit(fit_model, fit_data, state, phase, phase_callbacks, run.verbose)
            state.finished_phases.append(phase.name)
            elapsed_s = time.perf_counter() - started
            result = _phase_result(phase, state, model, extraction_s, elapsed_s, resumed_at)
            # The run's own test metrics cover the last phase; an earlier one's are kept to set beside them.
            result.test = {} if last else _test_metrics(fit_model, run.data, phase, run.features)
            state.phase_results.append(asdict(result))
            callbacks.checkpointer.save()
    except BaseException:
        callbacks.keep_best_after_failure()
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


def _solve(head: keras.Model, features: FeatureStore, state: ScheduleState, phase: Phase, callbacks: list,
           grid: list[float], baseline: BaselineConfig) -> None:
    """The head phase as one epoch of the L-BFGS linear probe, recorded through the phase's callbacks like a
    trained epoch (history, trackers, best model, checkpoint); a resumed run whose solve was checkpointed keeps it."""
    if state.epoch > state.phase_first_epoch:
        return
    validation = features.get("validation") if features.data.validation is not None else None
    callback_list = keras.callbacks.CallbackList(callbacks, model=head)
    callback_list.on_train_begin()
    callback_list.on_epoch_begin(state.epoch)
    probe = solve_linear_head(head, features.get("train"), validation, probe_grid(grid, baseline))
    logs = _evaluate(head, *features.get("train"))
    if validation is not None:
        logs.update({f"val_{k}": v for k, v in _evaluate(head, *validation).items()})
    log.info("head solved by L-BFGS: C=%g of %s, validation accuracy %s", probe.C, grid,
             "n/a" if probe.validation_accuracy is None else f"{probe.validation_accuracy:.4f}")
    callback_list.on_epoch_end(state.epoch, {**logs, SOLVER_C: probe.C})
    callback_list.on_train_end()


def _evaluate(model: keras.Model, x, y=None) -> dict[str, float]:
    """The compiled loss and accuracy, as fit's logs name them."""
    return {k: float(v) for k, v in model.evaluate(x, y, verbose=0, return_dict=True).items()}


def _test_metrics(fit_model: keras.Model, data: SplitData, phase: Phase, features: FeatureStore) -> dict[str, float]:
    """The phase's model on the test split: the head on its cached test features, or the model on the test batches."""
    if data.test is None:
        return {}
    return _evaluate(fit_model, *features.get("test")) if phase.cache_features else _evaluate(fit_model, data.test)


def _enter_phase(
    model: keras.Model, phase: Phase, state: ScheduleState, optimizer: OptimizerConfig, task: TaskSpec,
    resume_from: Optional[Checkpoint], steps_per_epoch: int, jit_compile: bool = False,
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
    lr = phase_learning_rate(phase.lr, phase.warmup, phase.decay, phase.epochs * steps_per_epoch)
    compile_model(model, make_optimizer(optimizer, lr, base_variable_indices(model), phase.base_lr_scale), lr, task,
                  jit_compile)
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
    chosen_c = [r[SOLVER_C] for r in rows if SOLVER_C in r]
    return PhaseResult(
        name=phase.name,
        first_epoch=state.phase_first_epoch + 1,
        epochs_run=len(rows),
        lr=phase.lr,
        wall_time_s=earlier_s + elapsed_s,
        stopped_early=bool(state.early_stopping.get("stopped_epoch")),
        trainable_params=sum(int(math.prod(w.shape)) for w in model.trainable_weights),
        feature_extraction_s=extraction_s,
        solver=phase.solver.value,
        solver_C=chosen_c[-1] if chosen_c else None,
    )


def _raise_if_diverged(rows: list[dict], phase: Phase) -> None:
    if rows and not math.isfinite(rows[-1].get("loss", 0.0)):
        raise TrainingError(
            f"the training loss became {rows[-1]['loss']} at epoch {rows[-1]['epoch']} of phase {phase.name}; "
            f"lower schedule.{phase.name}.lr (now {phase.lr}) or check the data for broken labels"
        )
