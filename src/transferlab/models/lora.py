"""LoRA's variables, told apart by name: Keras' `enable_lora` adds two factors beside a layer's kernel."""

from __future__ import annotations

LORA_FACTORS = ("lora_kernel_a", "lora_kernel_b")


def is_lora_factor(variable) -> bool:
    return variable.path.rsplit("/", 1)[-1] in LORA_FACTORS


def pretrained_variables(base) -> list:
    """The base's own variables, without the LoRA factors fine-tuning may have added."""
    return [v for v in base.variables if not is_lora_factor(v)]


def without_adapter_updates(variables) -> None:
    """Zero every LoRA B factor among `variables`: each adapted layer then computes its pretrained kernel again,
    as it did when the adapters were added (Keras starts B at zero)."""
    import numpy as np

    for variable in variables:
        if variable.path.rsplit("/", 1)[-1] == LORA_FACTORS[1]:
            variable.assign(np.zeros(variable.shape, variable.dtype))


def adapter_variables(model) -> list:
    """Every LoRA-adapted layer's kernel and factors: model.keras stores only their merged sum (and
    zeroes the factors on load), from which training the factors on would not be the same run."""
    adapted = {v.path.rsplit("/", 1)[0] for v in model.variables if is_lora_factor(v)}
    names = ("kernel", *LORA_FACTORS)
    return [v for v in model.variables if v.path.rsplit("/", 1)[0] in adapted and v.path.rsplit("/", 1)[-1] in names]
