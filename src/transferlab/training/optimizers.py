"""Optimizers and compiling: where each phase's learning rate, loss and metrics are applied."""

from __future__ import annotations

import keras

from transferlab.config.schema import LRDecay, OptimizerConfig, OptimizerName
from transferlab.models.heads import TaskSpec
from transferlab.models.learning_rate import WarmupDecay


def phase_learning_rate(lr: float, warmup: float, decay: LRDecay, steps: int) -> float | WarmupDecay:
    """The phase's learning rate: `lr` itself, or a schedule over the phase's `steps` when it warms up or decays."""
    if warmup == 0 and decay is LRDecay.constant:
        return lr
    return WarmupDecay(lr, steps, round(warmup * steps), decay.value)


def make_optimizer(cfg: OptimizerConfig, lr: float | WarmupDecay) -> keras.optimizers.Optimizer:
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
