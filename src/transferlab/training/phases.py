"""The two phases: what each trains, how much of the base is unfrozen, and BatchNorm kept in inference mode."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, Optional

import keras

from transferlab.config.schema import FineTuneConfig, HeadPhaseConfig, HeadSolver, LRDecay, ScheduleConfig
from transferlab.errors import ConfigError
from transferlab.models.saved import get_base

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
    lora_rank: Optional[int] = None  # train adapters of this rank instead of the unfrozen weights
    warmup: float = 0.0  # fraction of the phase's steps the learning rate rises over
    decay: LRDecay = LRDecay.constant
    solver: HeadSolver = HeadSolver.sgd  # lbfgs: the head solved in one step on cached features (its one epoch)
    base_lr_scale: float = 1.0  # the base's learning rate as a fraction of `lr`

    @property
    def scheduled(self) -> bool:
        """Whether the learning rate changes within the phase."""
        return self.warmup > 0 or self.decay is not LRDecay.constant


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
    solver: str = HeadSolver.sgd.value
    solver_C: Optional[float] = None  # the lbfgs solver's chosen inverse L2 strength
    # The phase's best weights on the test split, measured when a later phase follows (the last phase's
    # are the run's test metrics): what the head alone scored before fine-tuning.
    test: dict = field(default_factory=dict)


@dataclass
class ScheduleResult:
    phases: list[PhaseResult]
    history: list[dict]  # one row per epoch: epoch, phase, lr, train and validation metrics


def plan_phases(cfg: ScheduleConfig, cache_by_default: bool = True, linear_head: bool = False) -> list[Phase]:
    """The phases that will run; a phase with 0 epochs is left out.

    `cache_features: null` caches when `cache_by_default`: for image bases without augmentation.
    `solver: auto` solves the head (one epoch) when it is linear on cached features (`linear_head`).
    """
    head: HeadPhaseConfig = cfg.head
    fine: FineTuneConfig = cfg.fine_tune
    cache = head.cache_features if head.cache_features is not None else cache_by_default
    solver = _head_solver(head.solver, cache, linear_head)
    phases = [
        Phase(HEAD, 1 if solver is HeadSolver.lbfgs and head.epochs > 0 else head.epochs, head.lr, head.patience,
              cache_features=cache, warmup=head.warmup, decay=head.decay, solver=solver),
        Phase(FINE_TUNE, fine.epochs, fine.lr, fine.patience, unfreeze=fine.unfreeze, lora_rank=fine.lora_rank,
              warmup=fine.warmup, decay=fine.decay, base_lr_scale=fine.base_lr_scale),
    ]
    return [p for p in phases if p.epochs > 0]


def _head_solver(solver: HeadSolver, cache: bool, linear_head: bool) -> HeadSolver:
    if solver is HeadSolver.auto:
        return HeadSolver.lbfgs if cache and linear_head else HeadSolver.sgd
    if solver is HeadSolver.lbfgs and not cache:
        raise ConfigError(
            "schedule.head.solver=lbfgs solves the head on cached base features, but this head phase runs on the "
            "inputs (augmentation is on, or schedule.head.cache_features=false); use schedule.head.solver=sgd"
        )
    if solver is HeadSolver.lbfgs and not linear_head:
        raise ConfigError(
            "schedule.head.solver=lbfgs solves a linear head on feature vectors, and this base's features are not "
            "vectors the head maps linearly (token sequences, or hidden layers); use schedule.head.solver=sgd"
        )
    return solver


def check_unfreeze(model: keras.Model, cfg: ScheduleConfig) -> None:
    """Fail before training if `schedule.fine_tune.unfreeze` names no part of this base, or a part
    with nothing to train (a SavedModel that exposes no trainable variables)."""
    if cfg.fine_tune.epochs <= 0:
        return
    base = get_base(model)
    if cfg.fine_tune.lora_rank is not None and not hasattr(base, "enable_lora"):
        raise ConfigError(
            f"schedule.fine_tune.lora_rank={cfg.fine_tune.lora_rank} needs a KerasHub base (base_model=hub_text, or "
            "base_model=hub_image with a ViT, DeiT or DINOv2 preset); "
            f"this base has no attention layers to adapt: set schedule.fine_tune.lora_rank=null"
        )
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
    blocks = getattr(base, "blocks", [])
    if unfreeze.isdigit() and blocks:
        n = int(unfreeze)
        if not 0 < n <= len(blocks):
            raise ConfigError(
                f"schedule.fine_tune.unfreeze={n} but the encoder has {len(blocks)} transformer blocks; "
                f"use a number from 1 to {len(blocks)}, a layer name, or all"
            )
        return layers.index(blocks[-n])
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
    if phase.lora_rank is not None:
        base.enable_lora(phase.lora_rank)
        return
    start = unfreeze_start(base, phase.unfreeze)
    base.trainable = True
    for layer in base.layers[:start]:
        layer.trainable = False
    for layer in _all_layers(base):
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False


def base_variable_indices(model: keras.Model) -> list[int]:
    """Positions of the base's variables among the model's trainable ones: those a base learning-rate scale slows."""
    in_base = {id(v) for v in get_base(model).trainable_variables}
    return [i for i, v in enumerate(model.trainable_variables) if id(v) in in_base]


def _all_layers(model: keras.Model) -> Iterator[keras.layers.Layer]:
    for layer in model.layers:
        yield layer
        if hasattr(layer, "layers"):
            yield from _all_layers(layer)
