"""The registry of base models: one line per model, checked before TensorFlow is imported.

Each name maps to its constructor, its own `preprocess_input`, its default and minimum input size,
and the weight sets it knows by name. Adding a `keras.applications` model is one line here.
"""

from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass, field
from enum import Enum
from importlib import resources
from pathlib import Path
from typing import Callable, Optional

from transferlab.errors import ConfigError, ModelError

IMAGENET = "imagenet"
# `base_model.weights=default`: the base's own default weight set, so that switching the base by
# name (base_model.name=densenet201) never carries another base's weights along.
DEFAULT_WEIGHTS = "default"
SAVED_MODEL = "saved_model"
NO_PREPROCESS, UNIT_PREPROCESS = "none", "unit"
UNIT_SCALING = "transferlab.models.image:scale_to_unit"
DIGITS_WEIGHTS = "digits_0_4"
DIGITS_WEIGHTS_FILE = "digits_cnn_0-4.weights.h5"


@dataclass(frozen=True)
class BaseSpec:
    name: str
    constructor: str  # "module:attribute"
    preprocess: str  # "module:attribute", maps raw 0..255 RGB to what the base expects
    default_size: int
    min_size: int
    takes_alpha: bool = False
    # Weight sets known by name: None passes the name to the constructor (Keras downloads and
    # caches them); a string is a file shipped in `transferlab/assets`.
    named_weights: dict[str, Optional[str]] = field(default_factory=lambda: {IMAGENET: None})
    default_weights: Optional[str] = IMAGENET  # what `default` means; None: random initialisation
    imagenet_alphas: tuple[float, ...] = ()  # the width multipliers Keras has ImageNet weights for

    def load(self, attribute: str) -> Callable:
        module, _, attr = getattr(self, attribute).partition(":")
        return getattr(importlib.import_module(module), attr)


def _app(name: str, module: str, ctor: str, size: int, min_size: int = 32, alphas: tuple[float, ...] = ()) -> BaseSpec:
    preprocess = f"keras.applications.{module}:preprocess_input"
    return BaseSpec(name, f"keras.applications:{ctor}", preprocess, size, min_size, bool(alphas), imagenet_alphas=alphas)


_SPECS = [
    _app("xception", "xception", "Xception", 299, 71),
    _app("vgg16", "vgg16", "VGG16", 224),
    _app("vgg19", "vgg19", "VGG19", 224),
    _app("resnet50", "resnet", "ResNet50", 224),
    _app("resnet101", "resnet", "ResNet101", 224),
    _app("resnet152", "resnet", "ResNet152", 224),
    _app("resnet50_v2", "resnet_v2", "ResNet50V2", 224),
    _app("resnet101_v2", "resnet_v2", "ResNet101V2", 224),
    _app("resnet152_v2", "resnet_v2", "ResNet152V2", 224),
    _app("inception_v3", "inception_v3", "InceptionV3", 299, 75),
    _app("inception_resnet_v2", "inception_resnet_v2", "InceptionResNetV2", 299, 75),
    _app("mobilenet", "mobilenet", "MobileNet", 224, alphas=(0.25, 0.5, 0.75, 1.0)),
    _app("mobilenet_v2", "mobilenet_v2", "MobileNetV2", 224, alphas=(0.35, 0.5, 0.75, 1.0, 1.3, 1.4)),
    _app("mobilenet_v3_small", "mobilenet_v3", "MobileNetV3Small", 224, alphas=(0.75, 1.0)),
    _app("mobilenet_v3_large", "mobilenet_v3", "MobileNetV3Large", 224, alphas=(0.75, 1.0)),
    _app("densenet121", "densenet", "DenseNet121", 224),
    _app("densenet169", "densenet", "DenseNet169", 224),
    _app("densenet201", "densenet", "DenseNet201", 224),
    _app("nasnet_mobile", "nasnet", "NASNetMobile", 224),
    _app("nasnet_large", "nasnet", "NASNetLarge", 331),
    *(
        _app(f"efficientnet_b{i}", "efficientnet", f"EfficientNetB{i}", size)
        for i, size in enumerate((224, 240, 260, 300, 380, 456, 528, 600))
    ),
    *(
        _app(f"efficientnet_v2_{v.lower()}", "efficientnet_v2", f"EfficientNetV2{v}", size)
        for v, size in (("B0", 224), ("B1", 240), ("B2", 260), ("B3", 300), ("S", 384), ("M", 480), ("L", 480))
    ),
    *(
        _app(f"convnext_{v.lower()}", "convnext", f"ConvNeXt{v}", 224)
        for v in ("Tiny", "Small", "Base", "Large", "XLarge")
    ),
    # A TensorFlow SavedModel directory (e.g. a TF Hub feature vector) given as base_model.weights.
    BaseSpec(SAVED_MODEL, "", UNIT_SCALING, 224, 1, named_weights={}, default_weights=None),
    BaseSpec(
        "digits_cnn",
        "transferlab.models.digits:digits_cnn",
        UNIT_SCALING,
        32,
        8,
        named_weights={DIGITS_WEIGHTS: DIGITS_WEIGHTS_FILE},
        default_weights=DIGITS_WEIGHTS,
    ),
]

BASES: dict[str, BaseSpec] = {spec.name: spec for spec in _SPECS}


def get_base_spec(name: str) -> BaseSpec:
    """Look a base up by name; an unknown name fails with the closest known ones."""
    if name not in BASES:
        raise ConfigError(f"unknown base_model.name '{name}': {known_bases_hint(name)}")
    return BASES[name]


def known_bases_hint(name: str) -> str:
    """The registered bases closest to a misspelt name, or all of them."""
    close = difflib.get_close_matches(name, BASES, n=3)
    return f"did you mean {', '.join(close)}?" if close else f"known: {', '.join(sorted(BASES))}"


class WeightsKind(str, Enum):
    none = "none"
    named = "named"  # passed to the constructor, e.g. "imagenet"
    file = "file"  # a weights file loaded into the constructed architecture
    keras_model = "keras_model"  # a whole saved model used as the base
    saved_model = "saved_model"  # a TensorFlow SavedModel directory used as the base


@dataclass(frozen=True)
class WeightsSource:
    kind: WeightsKind
    value: Optional[str] = None


def resolve_weights(spec: BaseSpec, weights: Optional[str]) -> WeightsSource:
    """Turn `base_model.weights` into what to load, failing early on names and paths that cannot work."""
    source = _resolve(spec, weights)
    if spec.name == SAVED_MODEL and source.kind is not WeightsKind.saved_model:
        raise ConfigError("base_model=saved_model needs base_model.weights set to a TensorFlow SavedModel directory")
    return source


def _resolve(spec: BaseSpec, weights: Optional[str]) -> WeightsSource:
    if weights == DEFAULT_WEIGHTS:
        weights = spec.default_weights
    if weights is None or weights.lower() in ("null", "none", "random"):
        return WeightsSource(WeightsKind.none)
    if weights in spec.named_weights:
        asset = spec.named_weights[weights]
        if asset is None:
            return WeightsSource(WeightsKind.named, weights)
        return WeightsSource(WeightsKind.file, str(asset_path(asset)))
    path = Path(weights).expanduser()
    if path.is_dir() or (not path.suffix and "/" in weights):
        return WeightsSource(WeightsKind.saved_model, str(check_saved_model_dir(path)))
    if path.suffix == ".keras":
        kind = WeightsKind.keras_model
    elif path.suffix in (".h5", ".hdf5"):
        kind = WeightsKind.file
    elif "/" not in weights and "." not in weights:
        known = ", ".join([DEFAULT_WEIGHTS, *spec.named_weights, "null"])
        raise ConfigError(
            f"base_model.weights='{weights}' is not a weight set of {spec.name} (known: {known}); "
            "or give a path to a .weights.h5 / .keras file or a SavedModel directory"
        )
    else:
        raise ConfigError(
            f"base_model.weights='{weights}' has an unsupported file type: "
            "use a Keras weights file (.weights.h5 or .h5), a saved model (.keras) or a SavedModel directory"
        )
    if not path.is_file():
        raise ModelError(f"weights file not found: '{path}'; check base_model.weights")
    return WeightsSource(kind, str(path))


def check_saved_model_dir(path: Path) -> Path:
    """A SavedModel directory holds saved_model.pb (or .pbtxt); say which part is missing."""
    if not path.is_dir():
        raise ModelError(f"SavedModel directory not found: '{path}'; check base_model.weights")
    if not any((path / name).is_file() for name in ("saved_model.pb", "saved_model.pbtxt")):
        raise ModelError(
            f"'{path}' is not a TensorFlow SavedModel directory (no saved_model.pb in it); point "
            "base_model.weights at the folder that holds saved_model.pb and variables/"
        )
    return path


def check_preprocess(name: Optional[str]) -> None:
    if name not in (None, NO_PREPROCESS, UNIT_PREPROCESS):
        get_preprocess_spec(name)


def preprocess_function(name: str) -> Callable:
    """What `base_model.preprocess` names: "none", "unit", or a registered base's own preprocessing."""
    if name == NO_PREPROCESS:
        return lambda images: images
    spec = BaseSpec(name, "", UNIT_SCALING, 0, 0) if name == UNIT_PREPROCESS else get_preprocess_spec(name)
    return spec.load("preprocess")


def get_preprocess_spec(name: str) -> BaseSpec:
    """The registered base whose preprocessing `name` asks for, failing like an unknown base name."""
    if name not in BASES:
        raise ConfigError(f"base_model.preprocess='{name}' is not none, unit or a base name: {known_bases_hint(name)}")
    return BASES[name]


def asset_path(filename: str) -> Path:
    """A file shipped inside the installed package."""
    return Path(str(resources.files("transferlab") / "assets" / filename))


def check_alpha(spec: BaseSpec, source: WeightsSource, alpha: Optional[float]) -> None:
    """Keras has ImageNet weights for a few width multipliers only, and says so only once it builds."""
    if alpha is None or source.kind is not WeightsKind.named or not spec.imagenet_alphas or alpha in spec.imagenet_alphas:
        return
    known = ", ".join(f"{a:g}" for a in spec.imagenet_alphas)
    raise ConfigError(
        f"base_model.alpha={alpha:g} has no ImageNet weights for {spec.name} (they exist for {known}); "
        "use one of those, or base_model.weights=null to train that width from scratch"
    )


def check_image_size(spec: BaseSpec, image_size: tuple[int, int]) -> None:
    if min(image_size) < spec.min_size:
        raise ConfigError(
            f"dataset.image_size={list(image_size)} is too small for {spec.name}, which needs at least "
            f"{spec.min_size}x{spec.min_size}; set dataset.image_size to [{spec.default_size}, {spec.default_size}] "
            "(its default) or larger"
        )
