"""Optimizers and compiling: where each phase's learning rate, loss and metrics are applied."""

from __future__ import annotations

from typing import Sequence

import keras

from transferlab.config.schema import LRDecay, OptimizerConfig, OptimizerName
from transferlab.models.heads import TaskSpec
from transferlab.models.learning_rate import BaseScaledAdam, BaseScaledAdamW, BaseScaledSGD, WarmupDecay

PLAIN = {OptimizerName.adam: keras.optimizers.Adam, OptimizerName.adamw: keras.optimizers.AdamW,
         OptimizerName.sgd: keras.optimizers.SGD}
SCALED = {OptimizerName.adam: BaseScaledAdam, OptimizerName.adamw: BaseScaledAdamW, OptimizerName.sgd: BaseScaledSGD}


def phase_learning_rate(lr: float, warmup: float, decay: LRDecay, steps: int) -> float | WarmupDecay:
    """The phase's learning rate: `lr` itself, or a schedule over the phase's `steps` when it warms up or decays."""
    if warmup == 0 and decay is LRDecay.constant:
        return lr
    return WarmupDecay(lr, steps, round(warmup * steps), decay.value)


def make_optimizer(cfg: OptimizerConfig, lr: float | WarmupDecay, scaled: Sequence[int] = (),
                   base_lr_scale: float = 1.0) -> keras.optimizers.Optimizer:
    """The configured optimizer; with `scaled` trainable-variable indices and a `base_lr_scale` below 1, one that
    steps those (the base's) at that fraction of the rate."""
    common = {"learning_rate": lr, "clipnorm": cfg.clipnorm}
    if cfg.weight_decay is not None:
        common["weight_decay"] = cfg.weight_decay
    if cfg.name is OptimizerName.sgd:
        common.update(momentum=cfg.momentum, nesterov=cfg.nesterov)
    if scaled and base_lr_scale != 1.0:
        return SCALED[cfg.name](base_lr_scale=base_lr_scale, scaled=scaled, **common)
    return PLAIN[cfg.name](**common)


def compile_model(
    model: keras.Model,
    optimizer: OptimizerConfig | keras.optimizers.Optimizer,
    lr: float | WarmupDecay,
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
