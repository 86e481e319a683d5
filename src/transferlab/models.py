"""Building the network: preprocessing, pretrained base, new head, and training-only augmentation.

The model maps raw RGB pixels (0..255) to logits: `preprocess -> base -> head`. Preprocessing is a
layer inside the model so a saved `.keras` file predicts from plain images. Augmentation runs in
the `tf.data` pipeline instead (asynchronously on the CPU, as the Keras guide advises), so it is
never part of the exported model.
"""

from __future__ import annotations

import functools
import logging
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import keras
import numpy as np
import yaml

from transferlab.bases import SAVED_MODEL, BaseSpec, WeightsKind, get_base_spec, preprocess_function, resolve_weights
from transferlab.config import AugmentationConfig, BaseModelConfig, HeadConfig, HeadKind, Pooling
from transferlab.errors import ModelError

log = logging.getLogger(__name__)

BASE_LAYER = "base"
OUTPUT_LAYER = "head_output"
POOL_LAYER = "head_pool"


@dataclass(frozen=True)
class TaskSpec:
    """What the data tells the model: input size (pixels, or tokens per text) and number of classes."""

    image_size: Optional[tuple[int, int]]
    num_classes: int
    sequence_length: Optional[int] = None

    @property
    def binary(self) -> bool:
        return self.num_classes == 2

    @property
    def output_units(self) -> int:
        # One logit for two classes, as in the Keras guide; one per class otherwise.
        return 1 if self.binary else self.num_classes


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


def digits_cnn(
    include_top: bool = False,
    weights: str | None = None,
    input_shape: tuple[int, int, int] = (32, 32, 3),
    name: str = "digits_cnn",
) -> keras.Model:
    """A 3-block CNN (conv 32/64/128, BatchNorm, max-pool), the base of the offline default."""
    del include_top  # the base never has a classifier; the argument mirrors keras.applications
    inputs = keras.Input(shape=input_shape)
    x = inputs
    for i, filters in enumerate((32, 64, 128), start=1):
        x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"block{i}_conv")(x)
        x = keras.layers.BatchNormalization(momentum=0.9, name=f"block{i}_bn")(x)
        x = keras.layers.Activation("relu", name=f"block{i}_relu")(x)
        x = keras.layers.MaxPooling2D(name=f"block{i}_pool")(x)
    model = keras.Model(inputs, x, name=name)
    if weights is not None:
        model.load_weights(weights)
    return model


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


def build_text_model(head_cfg: HeadConfig, task: TaskSpec, vocab_size: int, dim: int,
                     vectors: Optional[np.ndarray]) -> keras.Model:
    """Token ids in, logits out; the base is an embedding of the vocabulary, pretrained when `vectors` is given.

    Padding (id 0) is masked, so a BiLSTM or pooling head reads only the real tokens; a convolution
    cannot use a mask and sees padding as zero vectors.
    """
    tokens = keras.Input(shape=(task.sequence_length,), dtype="int64", name="tokens")
    base_input = keras.Input(shape=(task.sequence_length,), dtype="int64", name="base_tokens")
    masked = head_cfg.kind is not HeadKind.conv
    embedding = keras.layers.Embedding(vocab_size, dim, mask_zero=masked, name="embedding")
    base = keras.Model(base_input, embedding(base_input), name=BASE_LAYER)
    if vectors is not None:
        embedding.set_weights([vectors])
    outputs = build_head(base(tokens, training=False), head_cfg, task)
    return keras.Model(tokens, outputs, name="transferlab_text")


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
        raise ModelError(f"cannot build {spec.name}: {_one_line(exc)}") from exc
    except Exception as exc:  # urllib and Keras' get_file raise a generic Exception offline
        if source.kind is WeightsKind.named:
            raise ModelError(
                f"cannot fetch the {source.value} weights of {spec.name} ({_one_line(exc)}); download "
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
            f"cannot load weights '{path}' into {name}: {_one_line(exc)}; the file must come from the "
            "same architecture (same base_model.name and alpha) without its top"
        ) from exc


def _load_keras_base(path: str, unsafe: bool) -> keras.Model:
    try:
        loaded = keras.saving.load_model(path, compile=False, safe_mode=not unsafe)
    except ValueError as exc:
        if "safe_mode" in str(exc) or "Lambda" in str(exc):
            raise ModelError(
                f"'{path}' contains a Lambda layer, which runs code stored in the file; if you trust it, "
                "set base_model.unsafe_deserialization=true"
            ) from exc
        raise ModelError(f"cannot load the base model '{path}': {_one_line(exc)}") from exc
    except Exception as exc:
        raise ModelError(f"cannot load the base model '{path}': {_one_line(exc)}") from exc
    return keras.Model(loaded.input, loaded.output, name=BASE_LAYER)


# Inside `load_trained_model`: the one SavedModel directory its run configured (see SavedModelBase).
_trusted_saved_model: ContextVar[Optional[Path]] = ContextVar("trusted_saved_model", default=None)


@keras.saving.register_keras_serializable(package="transferlab")
class SavedModelBase(keras.layers.TFSMLayer):
    """A TensorFlow SavedModel as the base, reloadable from the models this project saves.

    Keras' safe mode refuses every TFSMLayer, since reloading runs the graph of the directory named
    in the file. In the project's own outputs (`load_trained_model`) the directory that the run's
    config.yaml names as its base is trusted, and only that one: a planted model file naming any
    other directory, or a `.keras` base from elsewhere, stays under safe mode.
    """

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
        trusted = _trusted_saved_model.get()
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
            f"cannot load the SavedModel '{path}' (endpoint '{endpoint}'): {_one_line(exc)}; check "
            "base_model.weights, base_model.endpoint and dataset.image_size"
        ) from exc
    if isinstance(outputs, dict):
        if len(outputs) != 1:
            raise ModelError(f"the SavedModel '{path}' returns several outputs ({', '.join(outputs)}); "
                             "choose an endpoint with one feature output via base_model.endpoint")
        outputs = next(iter(outputs.values()))
    return keras.Model(inputs, outputs, name=BASE_LAYER)


def build_head(features, cfg: HeadConfig, task: TaskSpec):
    """Pool (or read the token sequence), optional hidden layers, dropout, then logits (kept float32
    for mixed precision)."""
    x = features
    if cfg.kind is HeadKind.bilstm:
        x = keras.layers.Bidirectional(keras.layers.LSTM(cfg.units), name="head_bilstm")(x)
    elif cfg.kind is HeadKind.conv:
        x = keras.layers.Conv1D(cfg.units, cfg.kernel_size, padding="same", activation=cfg.activation, name="head_conv")(x)
        x = keras.layers.GlobalMaxPooling1D(name=POOL_LAYER)(x)
    elif len(x.shape) in (3, 4):
        x = _pooling(cfg.pooling, spatial=len(x.shape) == 4)(name=POOL_LAYER)(x)
    for i, units in enumerate(cfg.hidden_units):
        x = keras.layers.Dense(units, activation=cfg.activation, name=f"head_dense_{i}")(x)
        if cfg.dropout > 0:
            x = keras.layers.Dropout(cfg.dropout, name=f"head_dropout_{i}")(x)
    if cfg.dropout > 0:
        x = keras.layers.Dropout(cfg.dropout, name="head_dropout")(x)
    return keras.layers.Dense(task.output_units, dtype="float32", name=OUTPUT_LAYER)(x)


def _pooling(pooling: Pooling, spatial: bool) -> type[keras.layers.Layer]:
    """Pooling over image positions (spatial) or over tokens, where the average skips padding."""
    if pooling is Pooling.flatten:
        return keras.layers.Flatten
    if spatial:
        return keras.layers.GlobalAveragePooling2D if pooling is Pooling.avg else keras.layers.GlobalMaxPooling2D
    return keras.layers.GlobalAveragePooling1D if pooling is Pooling.avg else keras.layers.GlobalMaxPooling1D


def build_augmentation(cfg: AugmentationConfig, seed: int) -> keras.Sequential | None:
    """Keras preprocessing layers for training batches; None when every factor is off."""
    layers = []
    if cfg.flip:
        layers.append(keras.layers.RandomFlip(cfg.flip, seed=seed))
    if cfg.rotation:
        layers.append(keras.layers.RandomRotation(cfg.rotation, seed=seed + 1))
    if cfg.zoom:
        layers.append(keras.layers.RandomZoom(cfg.zoom, seed=seed + 2))
    if cfg.translation:
        layers.append(keras.layers.RandomTranslation(cfg.translation, cfg.translation, seed=seed + 3))
    if cfg.contrast:
        layers.append(keras.layers.RandomContrast(cfg.contrast, seed=seed + 4))
    return keras.Sequential(layers, name="augmentation") if layers else None


def get_base(model: keras.Model) -> keras.Model:
    return model.get_layer(BASE_LAYER)


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
    token = _trusted_saved_model.set(configured_saved_model(Path(path)))
    try:
        return keras.saving.load_model(path, safe_mode=True)
    finally:
        _trusted_saved_model.reset(token)


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


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
