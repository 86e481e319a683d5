"""The learning-rate schedule a phase compiles with. It lives beside the models because every saved
model carries its optimizer, schedule included, and must load in a process that never trained."""

from __future__ import annotations

import math

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
