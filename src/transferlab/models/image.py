"""Image classifiers: preprocessing layer, pretrained base (keras.applications, weights file, .keras or SavedModel), new head.

The model maps raw RGB pixels (0..255) to logits: `preprocess -> base -> head`. Preprocessing is a
layer inside the model so a saved `.keras` file predicts from plain images.
"""

from __future__ import annotations

import json
import zipfile
from contextvars import ContextVar
from pathlib import Path
from typing import Optional

import keras

from transferlab.compat.keras import require_private_method
from transferlab.config.schema import BaseModelConfig, HeadConfig
from transferlab.errors import ModelError, first_line
from transferlab.models.bases import (
    BaseSpec,
    WeightsKind,
    get_base_spec,
    preprocess_function,
    resolve_weights,
)
from transferlab.models.heads import BASE_LAYER, TaskSpec, build_head


@keras.saving.register_keras_serializable(package="transferlab")
class Preprocess(keras.layers.Layer):
    """Applies a base model's own `preprocess_input` (by registry name), or "none" or "unit".

    Storing the name rather than a function keeps saved models loadable with safe mode on.
    """

    def __init__(self, base_name: str, **kwargs):
        super().__init__(**kwargs)
        self.base_name = base_name
        self._fn = preprocess_function(base_name)

    def call(self, inputs):
        return self._fn(keras.ops.cast(inputs, self.compute_dtype))

    def get_config(self) -> dict:
        return {**super().get_config(), "base_name": self.base_name}


def scale_to_unit(images):
    """Preprocessing of the project's own bases: pixels to [0, 1]."""
    return images / 255.0


def build_model(base_cfg: BaseModelConfig, head_cfg: HeadConfig, task: TaskSpec) -> keras.Model:
    """The full classifier: raw pixels in, logits out; the base is the layer named `base`."""
    spec = get_base_spec(base_cfg.name)
    base = build_base(spec, base_cfg, task.image_size)
    inputs = keras.Input(shape=(*task.image_size, 3), name="image")
    x = Preprocess(base_cfg.preprocess or spec.name, name="preprocess")(inputs)
    # training=False keeps BatchNorm in inference mode while the base is frozen; phase 2 also sets
    # BatchNorm layers non-trainable, because Keras 3.15 still passes training=True down then.
    x = base(x, training=False)
    outputs = build_head(x, head_cfg, task)
    return keras.Model(inputs, outputs, name=f"transferlab_{spec.name}")


def build_base(spec: BaseSpec, cfg: BaseModelConfig, image_size: tuple[int, int]) -> keras.Model:
    source = resolve_weights(spec, cfg.weights)
    if source.kind is WeightsKind.keras_model:
        return _load_keras_base(source.value, cfg.unsafe_deserialization)
    if source.kind is WeightsKind.saved_model:
        return _load_saved_model_base(source.value, cfg.endpoint, image_size)
    kwargs = {"alpha": cfg.alpha} if cfg.alpha is not None else {}
    if kwargs and not spec.takes_alpha:
        raise ModelError(f"base_model.alpha is set but {spec.name} has no width multiplier; remove it")
    constructor = spec.load("constructor")
    try:
        built = constructor(
            include_top=False,
            weights=source.value if source.kind is WeightsKind.named else None,
            input_shape=(*image_size, 3),
            **kwargs,
        )
    except ValueError as exc:
        raise ModelError(f"cannot build {spec.name}: {first_line(exc)}") from exc
    except Exception as exc:  # urllib and Keras' get_file raise a generic Exception offline
        if source.kind is WeightsKind.named:
            raise ModelError(
                f"cannot fetch the {source.value} weights of {spec.name} ({first_line(exc)}); download "
                "them once online (Keras caches them in $KERAS_HOME/models, default ~/.keras/models) "
                "or set base_model.weights to a local weights file"
            ) from exc
        raise
    # Re-wrapped (same layers, same weights) to get a fixed name: some constructors misuse their
    # `name` argument (EfficientNetV2 looks its block layout up by it).
    base = keras.Model(built.input, built.output, name=BASE_LAYER)
    if source.kind is WeightsKind.file:
        _load_weights_file(base, source.value, spec.name)
    return base


def _load_weights_file(base: keras.Model, path: str, name: str) -> None:
    try:
        base.load_weights(path)
    except Exception as exc:  # h5py, Keras and the legacy loader each raise their own types
        raise ModelError(
            f"cannot load weights '{path}' into {name}: {first_line(exc)}; the file must come from the "
            "same architecture (same base_model.name and alpha) without its top"
        ) from exc


def _load_keras_base(path: str, unsafe: bool) -> keras.Model:
    if not unsafe and "Lambda" in stored_layer_classes(path):
        raise ModelError(
            f"'{path}' contains a Lambda layer, which runs code stored in the file; if you trust it, "
            "set base_model.unsafe_deserialization=true"
        )
    try:
        loaded = keras.saving.load_model(path, compile=False, safe_mode=not unsafe)
    except Exception as exc:  # the zip reader, h5py and Keras each raise their own types
        raise ModelError(f"cannot load the base model '{path}': {first_line(exc)}") from exc
    return keras.Model(loaded.input, loaded.output, name=BASE_LAYER)


def stored_layer_classes(path: str) -> set[str]:
    """Every layer class named in a `.keras` archive's architecture; empty when it cannot be read (the loader
    then says why)."""
    try:
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read("config.json"))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return set()
    names: set[str] = set()
    pending = [config]
    while pending:
        node = pending.pop()
        if isinstance(node, dict):
            if isinstance(node.get("class_name"), str):
                names.add(node["class_name"])
            pending.extend(node.values())
        elif isinstance(node, list):
            pending.extend(node)
    return names


# Inside `load_trained_model`: the one SavedModel directory its run configured (see SavedModelBase).
trusted_saved_model: ContextVar[Optional[Path]] = ContextVar("trusted_saved_model", default=None)


@keras.saving.register_keras_serializable(package="transferlab")
class SavedModelBase(keras.layers.TFSMLayer):
    """A TensorFlow SavedModel as the base, reloadable from the models this project saves.

    Keras' safe mode refuses every TFSMLayer, since reloading runs the graph of the directory named
    in the file. In the project's own outputs (`load_trained_model`) the directory that the run's
    config.yaml names as its base is trusted, and only that one: a planted model file naming any
    other directory, or a `.keras` base from elsewhere, stays under safe mode.
    """

    def __init__(self, *args, **kwargs):
        for method in ("_add_existing_weight", "_track_variable"):
            require_private_method("keras.layers.TFSMLayer", method, "fine-tuning a SavedModel base")
        super().__init__(*args, **kwargs)

    def _add_existing_weight(self, weight) -> None:
        # Keras 3.15 keeps TensorFlow's ":0" in these names, and optimizers then fail to name their
        # slot variables ("'conv_kernel:0_momentum' is not a valid scope name"): phase 2 could not run.
        variable = keras.Variable(
            initializer=weight, trainable=weight.trainable, dtype=weight.dtype, shape=weight.shape,
            name=weight.name.replace("/", "_").replace(":", "_"),
        )
        self._track_variable(variable)

    @classmethod
    def from_config(cls, config, custom_objects=None, safe_mode=None):
        trusted = trusted_saved_model.get()
        if trusted is not None and Path(config["filepath"]).expanduser().resolve() == trusted:
            return cls(**config)
        return super().from_config(config, custom_objects, safe_mode)


def _load_saved_model_base(path: str, endpoint: str, image_size: tuple[int, int]) -> keras.Model:
    """A TensorFlow SavedModel called through `keras.layers.TFSMLayer`, as a one-layer base."""
    try:
        layer = SavedModelBase(path, call_endpoint=endpoint, trainable=True, name="saved_model")
        inputs = keras.Input(shape=(*image_size, 3), name="pixels")
        outputs = layer(inputs)
    except Exception as exc:  # TensorFlow's loader raises many types for an unreadable directory
        raise ModelError(
            f"cannot load the SavedModel '{path}' (endpoint '{endpoint}'): {first_line(exc)}; check "
            "base_model.weights, base_model.endpoint and dataset.image_size"
        ) from exc
    if isinstance(outputs, dict):
        if len(outputs) != 1:
            raise ModelError(f"the SavedModel '{path}' returns several outputs ({', '.join(outputs)}); "
                             "choose an endpoint with one feature output via base_model.endpoint")
        outputs = next(iter(outputs.values()))
    return keras.Model(inputs, outputs, name=BASE_LAYER)
