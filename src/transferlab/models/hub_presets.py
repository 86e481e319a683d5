"""KerasHub preset handles, checked before TensorFlow or KerasHub start: a local directory is read as
files, and a remote handle fails in about a second when its host cannot be reached.

A preset is a directory, as in KerasHub: either one written by `save_to_preset` (its config.json
names a registered Keras class) or a Hugging Face model folder (its config.json has a `model_type`),
which KerasHub converts on load. Whether it holds a text or an image model is in its files: a text
preset has tokenizer.json, an image preset image_converter.json.
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from transferlab.errors import ConfigError, DataError

HUB_TEXT = "hub_text"
HUB_IMAGE = "hub_image"

# Hugging Face architectures KerasHub 0.32 converts to a text encoder backbone.
HF_TEXT_ENCODERS = ("bert", "distilbert", "roberta", "xlm-roberta", "albert", "deberta-v2", "electra")

# KerasHub image backbones without attention layers: LoRA has nothing to adapt in them.
CNN_BACKBONES = (
    "CSPNetBackbone", "DenseNetBackbone", "EfficientNetBackbone", "HGNetV2Backbone", "MobileNetBackbone",
    "ResNetBackbone", "VGGBackbone", "XceptionBackbone",
)

# What a local copy of each family's preset may be, as the error messages name it.
LOCAL_COPIES = {
    HUB_TEXT: (
        "a folder written by save_to_preset, or a Hugging Face model folder with config.json, model.safetensors "
        "and vocab.txt"
    ),
    HUB_IMAGE: "a folder written by save_to_preset, with config.json and image_converter.json",
}

# How long a remote handle may take to show that its host answers at all.
REACH_TIMEOUT_S = 1.0


@dataclass(frozen=True)
class PresetInfo:
    """What the preset's files say about the model, read without loading it."""

    handle: str
    local: Optional[Path]  # None: a remote handle KerasHub downloads (and caches)
    max_sequence_length: Optional[int] = None
    image_size: Optional[tuple[int, int]] = None  # what the pipeline feeds an image backbone; None: ask its converter
    backbone: Optional[str] = None  # the backbone's class name


def check_text_preset(handle: Optional[str], sequence_length: int) -> PresetInfo:
    """The preset of a hub_text base: found (or its host reachable), a text encoder, long enough."""
    folder, config = _preset_config(handle, HUB_TEXT, "bert_tiny_en_uncased")
    if folder is None:
        info = PresetInfo(handle, None)
    elif "registered_name" in config:
        info = _keras_text_preset(handle, folder, config)
    else:
        info = _hf_folder(handle, folder, config)
    if info.max_sequence_length is not None and sequence_length > info.max_sequence_length:
        raise ConfigError(
            f"dataset.sequence_length={sequence_length} is longer than the {info.max_sequence_length} tokens "
            f"base_model.preset='{handle}' was trained on; set dataset.sequence_length to at most "
            f"{info.max_sequence_length}"
        )
    return info


def check_image_preset(handle: Optional[str], image_size: Optional[tuple[int, int]]) -> PresetInfo:
    """The preset of a hub_image base: found (or its host reachable), an image model with a converter; the
    pipeline's image size is `image_size` (dataset.image_size) if set, else the size the converter resizes to."""
    folder, config = _preset_config(handle, HUB_IMAGE, "efficientnet_b0_ra_imagenet")
    if folder is None:
        return PresetInfo(handle, None, image_size=image_size)
    if "registered_name" not in config:
        raise ConfigError(
            f"base_model.preset '{folder}' is a Hugging Face '{config['model_type']}' model folder, which KerasHub "
            "loads without its image converter; use a KerasHub preset (a name, or a folder save_to_preset wrote)"
        )
    converter_file = folder / "image_converter.json"
    if not converter_file.is_file():
        has_text = (folder / "tokenizer.json").is_file()
        kind = "a text model (it has a tokenizer)" if has_text else "a model without an image converter"
        raise ConfigError(
            f"base_model.preset '{folder}' is {kind}, but the dataset is images; use an image preset "
            "(one with image_converter.json)"
        )
    size = image_size or _converter_size(folder, _read_json(converter_file), config)
    return PresetInfo(handle, folder, image_size=size, backbone=config.get("class_name"))


def lora_refusal(rank: int, backbone: str) -> ConfigError:
    """LoRA on a backbone without attention: KerasHub's `enable_lora` would adapt nothing and train nothing."""
    return ConfigError(
        f"schedule.fine_tune.lora_rank={rank} adapts the query and value projections of attention layers, and "
        f"{backbone} has none; set schedule.fine_tune.lora_rank=null, or use a ViT, DeiT or DINOv2 preset"
    )


def require_keras_hub(base: str) -> None:
    """KerasHub is an extra: found (not imported, which costs seconds) before anything else is checked."""
    if importlib.util.find_spec("keras_hub") is None:
        raise ConfigError(
            f"base_model={base} needs KerasHub, which is not installed; install the extra: pip install -e '.[hub]'"
        )


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


def _preset_config(handle: Optional[str], family: str, example: str) -> tuple[Optional[Path], Optional[dict]]:
    """A local preset's folder and config.json, or (None, None) for a remote handle whose host answers."""
    if handle is None:
        raise ConfigError(
            f"base_model={family} needs base_model.preset: a KerasHub preset name (e.g. {example}), "
            "kaggle://..., hf://..., or a local model directory"
        )
    folder = local_folder(handle)
    if folder is None:
        _check_remote(handle, LOCAL_COPIES[family])
        return None, None
    config_file = folder / "config.json"
    if not folder.is_dir():
        raise DataError(f"base_model.preset '{folder}' does not exist; point it at {LOCAL_COPIES[family]}")
    if not config_file.is_file():
        raise DataError(
            f"base_model.preset '{folder}' is not a model directory (no config.json); give {LOCAL_COPIES[family]}"
        )
    config = _read_json(config_file)
    if "registered_name" not in config and "model_type" not in config:
        raise DataError(
            f"base_model.preset '{folder}' has a config.json that is neither a KerasHub preset's nor a Hugging Face "
            "model's; save the model with save_to_preset, or download the Hugging Face model folder"
        )
    return folder, config


def _read_json(path: Path) -> dict:
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise DataError(f"base_model.preset '{path}' is not readable JSON ({exc}); restore the file") from None
    if not isinstance(config, dict):
        raise DataError(f"base_model.preset '{path}' holds no model configuration; restore the file")
    return config


def _converter_size(folder: Path, converter: dict, backbone: dict) -> tuple[int, int]:
    """The converter's resize target, else the backbone's fixed input size."""
    resized = converter.get("config", {}).get("image_size")
    fixed = (backbone.get("config", {}).get("image_shape") or [])[:2]
    for size in (resized, fixed):
        if size and len(size) == 2 and all(isinstance(side, int) and side > 0 for side in size):
            return tuple(size)
    raise ConfigError(
        f"base_model.preset '{folder}' fixes no image size (its converter does not resize and its backbone takes "
        "any size); set dataset.image_size"
    )


def _keras_text_preset(handle: str, folder: Path, config: dict) -> PresetInfo:
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


def _check_remote(handle: str, local_copy: str) -> None:
    """Fail at once when the hub a handle downloads from cannot be reached, unless a cache is declared."""
    scheme = handle.split("://", 1)[0].lower() if "://" in handle else "kaggle"
    # A declared cache is KerasHub's to read (HF_HUB_OFFLINE=1 never calls the hub; kagglehub's cache is
    # read before the network), so no reachability check stands in its way.
    cache_declared = os.environ.get("HF_HUB_OFFLINE") == "1" if scheme == "hf" else bool(os.environ.get("KAGGLEHUB_CACHE"))
    host = {"hf": "huggingface.co", "kaggle": "www.kaggle.com"}.get(scheme)
    if host is None or cache_declared:
        return
    try:
        socket.create_connection((host, 443), timeout=REACH_TIMEOUT_S).close()
    except OSError:
        cache = "HF_HUB_OFFLINE=1 to use the Hugging Face cache" if scheme == "hf" else "KAGGLEHUB_CACHE to a kagglehub cache that holds it"
        raise ConfigError(
            f"base_model.preset='{handle}' must be downloaded from {host}, which cannot be reached; point "
            f"base_model.preset at a local copy ({local_copy}), or set {cache}"
        ) from None
