"""From Hydra's DictConfig to the typed ExperimentConfig: unknown keys get a did-you-mean, the rest is OmegaConf's typed merge."""

from __future__ import annotations

import dataclasses
import difflib
import typing
from enum import Enum
from typing import Optional

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue, ValidationError

from transferlab.config.schema import ExperimentConfig
from transferlab.config.validate import validate
from transferlab.errors import ConfigError, first_line


def to_experiment_config(cfg: DictConfig | ExperimentConfig) -> ExperimentConfig:
    """Resolve a composed config into the typed dataclass, validating ranges on the way."""
    if isinstance(cfg, ExperimentConfig):
        config = cfg
    else:
        reject_unknown_keys(cfg, ExperimentConfig)
        try:
            merged = OmegaConf.merge(OmegaConf.structured(ExperimentConfig), cfg)
            config = OmegaConf.to_object(merged)
        except MissingMandatoryValue as exc:
            raise ConfigError(f"{exc.full_key} has no value (???); set it, e.g. {exc.full_key}=<value>") from exc
        except ValidationError as exc:
            raise ConfigError(invalid_value_message(exc.full_key, exc.value, first_line(exc))) from exc
        except Exception as exc:  # OmegaConf raises several unrelated types for one cause
            raise ConfigError(f"invalid config: {first_line(exc)}") from exc
    validate(config)
    return config


def reject_unknown_keys(node: DictConfig, schema: type, prefix: str = "") -> None:
    """Keys added with `+key=value` slip past Hydra's struct check; nothing would read them, so refuse them."""
    fields = _field_types(schema)
    for key in node.keys():
        if key not in fields:
            raise ConfigError(unknown_key_message(f"{prefix}{key}"))
        if dataclasses.is_dataclass(fields[key]) and isinstance(node.get(key), DictConfig):
            reject_unknown_keys(node[key], fields[key], f"{prefix}{key}.")


def unknown_key_message(full_key: str) -> str:
    """Name the unknown key and the closest real one (or list the real ones)."""
    parent, _, leaf = full_key.rpartition(".")
    schema: Optional[type] = ExperimentConfig
    for part in filter(None, parent.split(".")):
        schema = _field_types(schema).get(part) if dataclasses.is_dataclass(schema) else None
    known = list(_field_types(schema)) if dataclasses.is_dataclass(schema) else []
    close = difflib.get_close_matches(leaf, known, n=1)
    hint = f"did you mean '{parent + '.' if parent else ''}{close[0]}'?" if close else f"known keys: {', '.join(known)}"
    return f"unknown config key '{full_key}': {hint}"


def invalid_value_message(full_key: str, value: object, problem: str) -> str:
    """A key typed by an Enum lists its choices and the closest one; any other key says what its type wants."""
    field_type, optional = schema_field(full_key)
    if isinstance(field_type, type) and issubclass(field_type, Enum):
        return choice_message(full_key, value, field_type, optional)
    return f"invalid value for '{full_key}': {problem}"


def choice_message(key: str, value: object, choices: type[Enum], optional: bool = False) -> str:
    """The one wording for a value outside a fixed set of choices."""
    names = [str(choice.value) for choice in choices]
    close = difflib.get_close_matches(str(value), names, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return (
        f"{key}={value!r} must be one of {', '.join(names)}{' or null' if optional else ''}{hint}; "
        "fix it in the config or on the command line"
    )


def schema_field(full_key: str) -> tuple[object, bool]:
    """The schema type of a dotted key, Optional[X] read as X, and whether null is allowed; (None, False) if unknown."""
    schema: object = ExperimentConfig
    optional = False
    for part in full_key.split("."):
        if not dataclasses.is_dataclass(schema):
            return None, False
        hints = typing.get_type_hints(schema)
        if part not in hints:
            return None, False
        schema, optional = _unwrap_optional(hints[part]), type(None) in typing.get_args(hints[part])
    return schema, optional


def _field_types(schema: type) -> dict[str, object]:
    """Field name to type, with the postponed (string) annotations resolved and Optional[X] read as X."""
    hints = typing.get_type_hints(schema)
    return {f.name: _unwrap_optional(hints[f.name]) for f in dataclasses.fields(schema)}


def _unwrap_optional(tp: object) -> object:
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    return args[0] if typing.get_origin(tp) is typing.Union and len(args) == 1 else tp


def flatten(cfg: ExperimentConfig) -> dict[str, object]:
    """The resolved config as dotted keys, the form trackers compare runs by."""
    flat: dict[str, object] = {}

    def walk(node: object, prefix: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, f"{prefix}{key}.")
        else:
            flat[prefix[:-1]] = node

    walk(OmegaConf.to_container(OmegaConf.structured(cfg), enum_to_str=True), "")
    return flat
