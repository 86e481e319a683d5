"""The run's model in MLflow's own model format, so `mlflow.pyfunc.load_model` and `mlflow models` load it.

The folder holds the run's `model.keras` unchanged (as `data/model.keras`), an `MLmodel` with the `keras`
flavor and a `python_function` flavor whose loader is this module, a signature and an input example
(the first example of the run's test split as the saved model takes it: pixels, or a raw string; logits
out), and pinned requirements. The loader is this project's, because the model's own layers (its
Preprocess layer, a KerasHub encoder) are registered by importing transferlab: load it where
transferlab is installed (`mlflow models serve ... --env-manager local`).

Written with `mlflow.pyfunc.save_model` into a local folder that is then logged as artifacts: fast (no
requirement inference, which loads the model again in a subprocess), and clear of a bug in MLflow 3.17's
`mlflow.keras.save_model`, which writes the input example before it creates the folder
(FileNotFoundError on input_example.json).
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import numpy as np

if TYPE_CHECKING:
    import keras


def save_mlflow_model(model_path: Path, folder: Path) -> None:
    """`model_path` (a run's model.keras) as an MLflow model in `folder`, which must not exist yet."""
    import keras
    import mlflow.pyfunc
    from mlflow.models import Model, infer_signature

    from transferlab.models.saved import load_trained_model
    from transferlab.predict.run import held_out_examples, run_config

    model = KerasPyfunc(load_trained_model(str(model_path)))
    example, _ = held_out_examples(run_config(model_path.parent), 1)
    mlflow_model = Model()
    mlflow_model.add_flavor("keras", data="data", keras_version=keras.__version__, keras_backend=keras.backend.backend(),
                            save_exported_model=False)
    mlflow.pyfunc.save_model(
        str(folder), loader_module=__name__, data_path=str(model_path), mlflow_model=mlflow_model,
        signature=infer_signature(example, model.predict(example)), input_example=example,
        pip_requirements=requirements(),
    )


def requirements() -> list[str]:
    """The installed versions of what loading the model needs (transferlab itself aside: it is no registry package)."""
    pinned = []
    for package in ("mlflow", "tensorflow", "keras", "keras-hub", "tensorflow-text", "safetensors"):
        try:
            pinned.append(f"{package}=={version(package)}")
        except PackageNotFoundError:
            continue
    return pinned


class KerasPyfunc:
    """The pyfunc face of a saved Keras model: a batch of its inputs (pixels, strings) in, logits out."""

    def __init__(self, model: "keras.Model"):
        self.model = model

    def predict(self, data: np.ndarray, params: Optional[dict] = None) -> np.ndarray:
        import tensorflow as tf

        from transferlab.models.saved import in_batches

        dtype = self.model.inputs[0].dtype
        return in_batches(self.model, list(np.asarray(data)),
                          lambda chunk: (chunk, tf.constant(np.stack(chunk), dtype=dtype)), 32)[1]


def _load_pyfunc(path: str) -> KerasPyfunc:
    """MLflow's entry point (the python_function flavor's loader_module): the model file, in safe mode."""
    from transferlab.models.saved import load_trained_model

    return KerasPyfunc(load_trained_model(path))
