"""KerasHub preset handles, checked before TensorFlow or KerasHub start: a local directory is read as
files, and a remote handle fails in about a second when its host cannot be reached.

A preset is a directory, as in KerasHub: either one written by `save_to_preset` (its config.json
names a registered Keras class) or a Hugging Face model folder (its config.json has a `model_type`),
which KerasHub converts on load.
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from transferlab.errors import ConfigError, DataError

HUB_TEXT = "hub_text"

# Hugging Face architectures KerasHub 0.32 converts to a text encoder backbone.
HF_TEXT_ENCODERS = ("bert", "distilbert", "roberta", "xlm-roberta", "albert", "deberta-v2", "electra")

# How long a remote handle may take to show that its host answers at all.
REACH_TIMEOUT_S = 1.0


@dataclass(frozen=True)
class PresetInfo:
    """What the preset's files say about the model, read without loading it."""

    handle: str
    local: Optional[Path]  # None: a remote handle KerasHub downloads (and caches)
    max_sequence_length: Optional[int] = None


def check_text_preset(handle: Optional[str], sequence_length: int) -> PresetInfo:
    """The preset of a hub_text base: found (or its host reachable), a text encoder, long enough."""
    if handle is None:
        raise ConfigError(
            "base_model=hub_text needs base_model.preset: a KerasHub preset name (e.g. bert_tiny_en_uncased), "
            "kaggle://..., hf://..., or a local model directory"
        )
    folder = local_folder(handle)
    info = _read_local(handle, folder) if folder is not None else _check_remote(handle)
    if info.max_sequence_length is not None and sequence_length > info.max_sequence_length:
        raise ConfigError(
            f"dataset.sequence_length={sequence_length} is longer than the {info.max_sequence_length} tokens "
            f"base_model.preset='{handle}' was trained on; set dataset.sequence_length to at most "
            f"{info.max_sequence_length}"
        )
    return info


def local_folder(handle: str) -> Optional[Path]:
    """The directory a handle names, or None for a preset name or a hub URL."""
    if handle.startswith("file://"):
        return Path(handle.removeprefix("file://")).expanduser()
    if "://" in handle:
        return None
    path = Path(handle).expanduser()
    if path.exists() or handle.startswith((".", "/", "~")) or os.sep in handle:
        return path
    return None


def _read_local(handle: str, folder: Path) -> PresetInfo:
    config_file = folder / "config.json"
    if not folder.is_dir():
        raise DataError(f"base_model.preset '{folder}' does not exist; point it at a KerasHub preset or Hugging Face model directory")
    if not config_file.is_file():
        raise DataError(
            f"base_model.preset '{folder}' is not a model directory (no config.json); give a folder written by "
            "save_to_preset, or a Hugging Face model folder (config.json, model.safetensors, vocab.txt)"
        )
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise DataError(f"base_model.preset '{config_file}' is not readable JSON ({exc}); restore the file") from None
    if not isinstance(config, dict):
        raise DataError(f"base_model.preset '{config_file}' holds no model configuration; restore the file")
    if "registered_name" in config:
        return _keras_preset(handle, folder, config)
    if "model_type" in config:
        return _hf_folder(handle, folder, config)
    raise DataError(
        f"base_model.preset '{folder}' has a config.json that is neither a KerasHub preset's nor a Hugging Face "
        "model's; save the model with save_to_preset, or download the Hugging Face model folder"
    )


def _keras_preset(handle: str, folder: Path, config: dict) -> PresetInfo:
    if not (folder / "tokenizer.json").is_file():
        has_images = (folder / "image_converter.json").is_file()
        kind = "an image model (it has an image converter)" if has_images else "a model without a tokenizer"
        raise ConfigError(
            f"base_model.preset '{folder}' is {kind}, but the dataset is text; use a text encoder preset "
            "(one with tokenizer.json)"
        )
    inner = config.get("config", {})
    _check_vocabulary(folder, inner.get("vocabulary_size"), folder / "assets" / "tokenizer" / "vocabulary.txt")
    return PresetInfo(handle, folder, inner.get("max_sequence_length"))


def _hf_folder(handle: str, folder: Path, config: dict) -> PresetInfo:
    model_type = config["model_type"]
    if model_type not in HF_TEXT_ENCODERS:
        raise ConfigError(
            f"base_model.preset '{folder}' is a Hugging Face '{model_type}' model; hub_text converts the text "
            f"encoders {', '.join(HF_TEXT_ENCODERS)}"
        )
    if not (folder / "model.safetensors").is_file():
        raise DataError(
            f"base_model.preset '{folder}' has no model.safetensors; KerasHub reads Hugging Face weights in "
            "safetensors format only (download that file of the model)"
        )
    _check_vocabulary(folder, config.get("vocab_size"), folder / "vocab.txt")
    return PresetInfo(handle, folder, config.get("max_position_embeddings"))


def _check_vocabulary(folder: Path, size: Optional[int], vocabulary: Path) -> None:
    """A vocabulary file longer than the embedding table would index past it on the first rare word."""
    if size is None or not vocabulary.is_file():
        return
    with vocabulary.open(encoding="utf-8", errors="replace") as lines:
        words = sum(1 for _ in lines)
    if words > size:
        raise DataError(
            f"base_model.preset '{folder}': its vocabulary has {words} tokens but the model embeds only {size}; "
            "the tokenizer files belong to another model, copy the ones saved with these weights"
        )


def _check_remote(handle: str) -> PresetInfo:
    """Fail at once when the hub a handle downloads from cannot be reached, unless a cache is declared."""
    scheme = handle.split("://", 1)[0].lower() if "://" in handle else "kaggle"
    # A declared cache is KerasHub's to read (HF_HUB_OFFLINE=1 never calls the hub; kagglehub's cache is
    # read before the network), so no reachability check stands in its way.
    cache_declared = os.environ.get("HF_HUB_OFFLINE") == "1" if scheme == "hf" else bool(os.environ.get("KAGGLEHUB_CACHE"))
    host = {"hf": "huggingface.co", "kaggle": "www.kaggle.com"}.get(scheme)
    if host is None or cache_declared:
        return PresetInfo(handle, None)
    try:
        socket.create_connection((host, 443), timeout=REACH_TIMEOUT_S).close()
    except OSError:
        cache = "HF_HUB_OFFLINE=1 to use the Hugging Face cache" if scheme == "hf" else "KAGGLEHUB_CACHE to a kagglehub cache that holds it"
        raise ConfigError(
            f"base_model.preset='{handle}' must be downloaded from {host}, which cannot be reached; point "
            f"base_model.preset at a local copy (a directory saved with save_to_preset, or a Hugging Face model "
            f"folder), or set {cache}"
        ) from None
    return PresetInfo(handle, None)
