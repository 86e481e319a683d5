"""LoRA's variables, told apart by name: Keras' `enable_lora` adds two factors beside a layer's kernel."""

from __future__ import annotations

LORA_FACTORS = ("lora_kernel_a", "lora_kernel_b")


def is_lora_factor(variable) -> bool:
    return variable.path.rsplit("/", 1)[-1] in LORA_FACTORS
