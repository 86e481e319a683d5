"""The export command's schema: which formats, how close an artifact must stay to the Keras model.

Registered in Hydra's ConfigStore as `transferlab_export_schema`, the first entry of conf/export.yaml's
defaults, as transferlab_schema is for conf/config.yaml. `format` takes one format or a list, so
`format=[onnx,litert]` exports both in one job and `-m format=onnx,litert` one per job.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, ListConfig

from transferlab.config.convert import choice_message
from transferlab.errors import ConfigError


class ExportFormat(StrEnum):
    saved_model = "saved_model"
    onnx = "onnx"
    litert = "litert"


@dataclass
class ExportConfig:
    run_dir: str = MISSING
    # One format or a list of them; not typed as a list so `format=onnx` needs no brackets.
    format: Any = ExportFormat.saved_model.value
    # Largest absolute difference allowed between the artifact's and the Keras model's logits.
    tolerance: float = 1e-4
    # Test examples the artifact is verified on (and timed with); null for the whole test split.
    max_examples: Any = 256
    batch_size: int = 32
    # LiteRT: only builtin ops. Keras' default also allows SELECT_TF_OPS (Flex ops), which the plain
    # ai_edge_litert interpreter cannot run; with this on, such a layer fails at conversion instead.
    litert_builtins_only: bool = False
    # Seconds the fresh process that loads and runs the artifact may take; a hung runtime is ended then.
    verify_timeout_s: float = 600.0


def register_export_configs() -> None:
    ConfigStore.instance().store(name="transferlab_export_schema", node=ExportConfig)


def formats(value: object) -> list[ExportFormat]:
    """The formats asked for, in order and each once; a typo gets the choices and the closest one."""
    items = list(value) if isinstance(value, (list, tuple, ListConfig)) else [value]
    chosen: list[ExportFormat] = []
    for item in items:
        try:
            fmt = ExportFormat(str(item))
        except ValueError:
            raise ConfigError(choice_message("format", item, ExportFormat)) from None
        if fmt not in chosen:
            chosen.append(fmt)
    if not chosen:
        raise ConfigError("format=[] names no format; give one of saved_model, onnx, litert (or a list of them)")
    return chosen


def check_export_config(cfg: ExportConfig) -> None:
    if not cfg.tolerance > 0:
        raise ConfigError(f"tolerance={cfg.tolerance} must be above 0 (the largest allowed max abs difference)")
    if not cfg.verify_timeout_s > 0:
        raise ConfigError(f"verify_timeout_s={cfg.verify_timeout_s} must be above 0 (seconds the verifying process may take)")
    if cfg.batch_size < 1:
        raise ConfigError(f"batch_size={cfg.batch_size} must be at least 1")
    if cfg.max_examples is not None and (not isinstance(cfg.max_examples, int) or cfg.max_examples < 1):
        raise ConfigError(f"max_examples={cfg.max_examples!r} must be a whole number of at least 1, or null for the whole test split")


register_export_configs()
