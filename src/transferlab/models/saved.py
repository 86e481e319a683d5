"""Saved models: loading them back in safe mode, finding the base, and the traced inference function."""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path
from typing import Callable, Optional

import keras
import numpy as np
import yaml

from transferlab.models.bases import SAVED_MODEL
from transferlab.models.heads import BASE_LAYER
from transferlab.models.image import stored_layer_classes, trusted_saved_model
from transferlab.models.lora import is_lora_factor


def get_base(model: keras.Model) -> keras.Model:
    return model.get_layer(BASE_LAYER)


def base_digest(model: "keras.Model") -> str:
    """Hash of the base's pretrained weights: a rebuilt base must be the one the head was trained on.

    Left out: LoRA factors, added when fine-tuning starts (the base a head-phase best was found on
    is the one without them), and dropout's seed states, which depend on what else the process built.
    """
    digest = hashlib.sha256()
    weights = (v for v in get_base(model).variables if not is_lora_factor(v) and v.name != "seed_generator_state")
    for variable in weights:
        digest.update(np.ascontiguousarray(variable.numpy()).tobytes())
    return digest.hexdigest()


@functools.lru_cache(maxsize=4)
def inference_function(model: keras.Model) -> Callable:
    """The model's forward pass in inference mode, traced once for every batch size.

    `predict_on_batch` traces the whole model again for a last, smaller batch (which costs more
    than the batch itself) and, under a distribution strategy, runs the batch on every replica and
    concatenates the copies; a direct call in one relaxed-shape function does neither.
    """
    import tensorflow as tf

    spec = tf.TensorSpec((None, *model.inputs[0].shape[1:]), model.inputs[0].dtype)
    return tf.function(lambda inputs: model(inputs, training=False), input_signature=[spec])


def load_trained_model(path: str) -> keras.Model:
    """Load a model this project saved, in safe mode (its Preprocess layer is registered on import).

    A SavedModel base is loaded only from the directory the run's own config.yaml names (found
    beside the file, or above it for a checkpoint's model).
    """
    import transferlab.models.learning_rate  # noqa: F401  registers the schedule a saved optimizer may hold

    stored = stored_layer_classes(path)
    if "TextEncoder" in stored:
        import transferlab.models.hub_text  # noqa: F401  registers the encoder layer
    if "ImageEncoder" in stored:
        import transferlab.models.hub_image  # noqa: F401  registers the encoder layer
    token = trusted_saved_model.set(configured_saved_model(Path(path)))
    try:
        return keras.saving.load_model(path, safe_mode=True)
    finally:
        trusted_saved_model.reset(token)


def configured_saved_model(model_path: Path) -> Optional[Path]:
    """The SavedModel directory of the run that wrote `model_path`, or None when it has no such base."""
    for folder in list(model_path.resolve().parents)[:3]:  # run dir, or run dir/checkpoints/epoch-N
        config = folder / "config.yaml"
        if config.is_file():
            try:
                base = yaml.safe_load(config.read_text()).get("base_model", {})
            except (OSError, yaml.YAMLError, AttributeError):
                return None
            if base.get("name") == SAVED_MODEL and base.get("weights"):
                return Path(base["weights"]).expanduser().resolve()
            return None
    return None


def in_batches(model, items: list, load: Callable, batch_size: int) -> tuple[list, np.ndarray]:
    """The items `load` kept and the model's outputs for them, loaded a batch at a time (a folder of photos
    need not fit in memory) and run through one traced function, which a last, smaller batch does not
    trace again."""
    forward = inference_function(model)
    kept: list = []
    outputs: list[np.ndarray] = []
    for start in range(0, len(items), batch_size):
        chunk, inputs = load(items[start : start + batch_size])
        if len(chunk):
            kept.extend(chunk)
            outputs.append(np.asarray(forward(inputs)))
    return kept, np.concatenate(outputs) if outputs else np.zeros((0, 1))
