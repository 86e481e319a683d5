"""Prediction with a stock ImageNet classifier from keras.applications, no run needed."""

from __future__ import annotations

from transferlab.compat.tensorflow import import_tensorflow
from transferlab.config.schema import BadFilePolicy
from transferlab.data.inputs import ImageBatches, image_files
from transferlab.errors import ConfigError, ModelError, first_line
from transferlab.models.saved import in_batches
from transferlab.predict.run import check_top_k


def predict_with_imagenet(
    name: str, inputs: list[str], k: int, batch_size: int = 32, on_bad_file: BadFilePolicy = BadFilePolicy.fail
) -> list[dict]:
    """A keras.applications classifier with its ImageNet top, decoded to the 1,000 class names."""
    check_top_k(k)
    import_tensorflow()
    import keras

    from transferlab.models.bases import get_base_spec

    spec = get_base_spec(name)
    if spec.constructor.split(":")[0] != "keras.applications":
        raise ConfigError(f"'{name}' is not a keras.applications model with an ImageNet classifier")
    files = image_files(inputs)
    images = ImageBatches((spec.default_size, spec.default_size), on_bad_file, spec.load("preprocess"))
    try:
        model = spec.load("constructor")(weights="imagenet")
    except Exception as exc:  # Keras' downloader raises a bare Exception offline
        raise _imagenet_unavailable(name, exc) from exc
    kept, scores = in_batches(model, files, images, batch_size)
    images.report(len(files))
    try:
        predictions = keras.applications.imagenet_utils.decode_predictions(scores, top=min(k, 1000))
    except Exception as exc:  # the class index is downloaded like the weights
        raise _imagenet_unavailable(name, exc) from exc
    return [
        {"file": str(file), "rank": rank, "class": label, "probability": float(score)}
        for file, top in zip(kept, predictions, strict=True)
        for rank, (_, label, score) in enumerate(top, start=1)
    ]


def _imagenet_unavailable(name: str, exc: Exception) -> ModelError:
    return ModelError(
        f"cannot load the ImageNet classifier {name} or its class names ({first_line(exc)}); "
        "they are downloaded once into $KERAS_HOME/models (default ~/.keras/models)"
    )
