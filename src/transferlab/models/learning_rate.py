"""The learning-rate schedule a phase compiles with, and optimizers that give the base a smaller rate than
the head. They live beside the models because every saved model carries its optimizer, schedule
included, and must load in a process that never trained."""

from __future__ import annotations

import math
from typing import Iterable

import keras

from transferlab.config.schema import LRDecay


@keras.saving.register_keras_serializable(package="transferlab")
class WarmupDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warmup from 0 to `peak` over `warmup_steps`, then constant, linear or cosine decay to 0 at
    `total_steps`. A function of the optimizer's step alone, so a resumed phase continues on the curve."""

    def __init__(self, peak: float, total_steps: int, warmup_steps: int = 0, decay: str = LRDecay.constant.value):
        self.peak, self.total_steps, self.warmup_steps = float(peak), int(total_steps), int(warmup_steps)
        self.decay = LRDecay(decay)

    def __call__(self, step):
        step = keras.ops.cast(step, "float32")
        warm = self.peak * (step + 1.0) / max(self.warmup_steps, 1)
        progress = keras.ops.clip((step - self.warmup_steps) / max(self.total_steps - self.warmup_steps, 1), 0.0, 1.0)
        if self.decay is LRDecay.linear:
            after = self.peak * (1.0 - progress)
        elif self.decay is LRDecay.cosine:
            after = self.peak * 0.5 * (1.0 + keras.ops.cos(math.pi * progress))
        else:
            after = self.peak * keras.ops.ones_like(progress)
        return keras.ops.where(step < self.warmup_steps, warm, after)

    def get_config(self) -> dict:
        return {"peak": self.peak, "total_steps": self.total_steps, "warmup_steps": self.warmup_steps,
                "decay": self.decay.value}


class BaseRateScaled:
    """Discriminative learning rates: the variables at `scaled` (indices in the trainable variables the
    optimizer is built on, the base's) step at `base_lr_scale` times the learning rate, the head's at the
    full rate, so fine-tuning moves the pretrained features less than the new head. Weight decay is left
    at the full rate. Mixed into Keras' own optimizers, which call `update_step` once per variable."""

    def __init__(self, *args, base_lr_scale: float = 1.0, scaled: Iterable[int] = (), **kwargs):
        from transferlab.compat.keras import require_private_method

        require_private_method("keras.optimizers.Optimizer", "_get_variable_index", "the base's learning-rate scale")
        super().__init__(*args, **kwargs)
        self.base_lr_scale, self.scaled = float(base_lr_scale), frozenset(int(i) for i in scaled)

    def update_step(self, gradient, variable, learning_rate):
        if self._get_variable_index(variable) in self.scaled:
            learning_rate = learning_rate * self.base_lr_scale
        super().update_step(gradient, variable, learning_rate)

    def get_config(self) -> dict:
        return {**super().get_config(), "base_lr_scale": self.base_lr_scale, "scaled": sorted(self.scaled)}


@keras.saving.register_keras_serializable(package="transferlab")
class BaseScaledAdam(BaseRateScaled, keras.optimizers.Adam):
    pass


@keras.saving.register_keras_serializable(package="transferlab")
class BaseScaledAdamW(BaseRateScaled, keras.optimizers.AdamW):
    pass


@keras.saving.register_keras_serializable(package="transferlab")
class BaseScaledSGD(BaseRateScaled, keras.optimizers.SGD):
    pass
