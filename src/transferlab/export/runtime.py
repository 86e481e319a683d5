"""An exported artifact loaded with its own runtime: TensorFlow for a SavedModel, ONNX Runtime, or the
`ai_edge_litert` interpreter (not the deprecated `tf.lite.Interpreter`).

ONNX and LiteRT artifacts load without importing TensorFlow, so a serving host (and `predict` on an
export folder) needs neither TensorFlow nor this project's training code: only numpy and the runtime.
A text model's ONNX or LiteRT export takes token ids; its folder's `text_inputs.json` puts the TF-free
tokenizer in front, so the loaded artifact still takes raw strings.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path
from typing import Callable, Optional, Union

import numpy as np

from transferlab.errors import ConfigError, ModelError, first_line
from transferlab.export.text_inputs import TextInputs, load_text_inputs

# The file each format writes inside <run>/export/<format>/; a SavedModel is the folder itself.
ARTIFACT_FILES = {"saved_model": ".", "onnx": "model.onnx", "litert": "model.tflite"}
RUNTIME_PACKAGES = {"saved_model": "tensorflow", "onnx": "onnxruntime", "litert": "ai-edge-litert"}
INSTALL_HINT = "pip install 'transferlab[export]'"

# One array for a single-input model, or the arrays by input name (a text export's token ids).
ModelInputs = Union[np.ndarray, dict[str, np.ndarray]]


@dataclass
class Artifact:
    """A loaded export: a batch of inputs in, the model's logits out."""

    format: str
    runtime: str
    forward: Callable[[ModelInputs], np.ndarray]
    # Raw strings to the token ids `forward` takes, for a text model exported without its tokenizer.
    text_inputs: Optional[TextInputs] = None

    def predict(self, inputs: np.ndarray, batch_size: int = 32) -> np.ndarray:
        outputs = [np.asarray(self.forward(self.model_inputs(inputs[i : i + batch_size])), dtype=np.float32)
                   for i in range(0, len(inputs), batch_size)]
        return np.concatenate(outputs) if outputs else np.zeros((0, 1), np.float32)

    def model_inputs(self, inputs: np.ndarray) -> ModelInputs:
        """What the artifact itself reads for `inputs`: the token ids of raw strings, else the inputs as they are."""
        return self.text_inputs([str(text) for text in inputs]) if self.text_inputs else inputs


def by_name(names: list[str], inputs: ModelInputs) -> dict[str, np.ndarray]:
    """The inputs keyed by the runtime's input names; a single array goes to the only input."""
    return {name: inputs[name] for name in names} if isinstance(inputs, dict) else {names[0]: inputs}


def read_manifest(folder: Path) -> dict:
    """The folder's export.json: format, input spec, class names and what verification measured."""
    path = folder / "export.json"
    if not path.is_file():
        raise ConfigError(f"'{folder}' is not an export folder (no export.json); run scripts/export.py <run dir> format=... first")
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read '{path}' ({first_line(exc)}); export the run again") from exc


def load_artifact(folder: Path, fmt: str) -> Artifact:
    """The artifact in `folder`, loaded by its runtime; an op the runtime lacks is named in the error."""
    loaders = {"saved_model": _saved_model, "onnx": _onnx, "litert": _litert}
    text_inputs = load_text_inputs(folder)
    try:
        artifact = loaders[fmt](folder / ARTIFACT_FILES[fmt])
    except ImportError as exc:
        raise ModelError(f"the {fmt} runtime '{RUNTIME_PACKAGES[fmt]}' is not installed ({first_line(exc)}); {INSTALL_HINT}") from exc
    artifact.text_inputs = text_inputs
    return artifact


def _saved_model(path: Path) -> Artifact:
    from transferlab.compat.tensorflow import import_tensorflow

    import_tensorflow()
    import tensorflow as tf

    runtime = f"tensorflow {tf.__version__}"
    try:
        loaded = tf.saved_model.load(str(path))  # kept: the endpoint's variables live as long as this object
    except Exception as exc:  # TensorFlow raises RuntimeError or NotFoundError for an unregistered op
        if "Op type not registered" not in str(exc) or find_spec("tensorflow_text") is None:
            raise
        # A KerasHub tokenizer's ops (RegexSplitWithOffsets, ...) are registered by importing tensorflow_text.
        import tensorflow_text  # noqa: F401

        loaded, runtime = tf.saved_model.load(str(path)), f"{runtime} with tensorflow-text"
    return Artifact("saved_model", runtime, lambda x: loaded.serve(tf.constant(x)).numpy())


def _onnx(path: Path) -> Artifact:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    names = [entry.name for entry in session.get_inputs()]
    return Artifact("onnx", f"onnxruntime {ort.__version__}", lambda x: session.run(None, by_name(names, x))[0])


def _litert(path: Path) -> Artifact:
    """Called through the model's signature, which takes inputs by name and resizes them to the batch."""
    from importlib.metadata import version

    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    interpreter.allocate_tensors()  # here the interpreter refuses ops it lacks (SELECT_TF_OPS, Flex*)
    runner = interpreter.get_signature_runner()
    dtypes = {name: entry["dtype"] for name, entry in runner.get_input_details().items()}

    def forward(x: ModelInputs) -> np.ndarray:
        feeds = by_name(list(dtypes), x)
        (output,) = runner(**{name: np.asarray(value, dtype=dtypes[name]) for name, value in feeds.items()}).values()
        return output

    return Artifact("litert", f"ai-edge-litert {version('ai-edge-litert')}", forward)


def unsupported_ops(message: str) -> list[str]:
    """Op names a runtime's load error mentions: LiteRT's Flex* nodes, ONNX Runtime's missing kernels,
    TensorFlow's unregistered ops."""
    flex = re.findall(r"\b(Flex\w+)", message)
    kernels = re.findall(r"implementation for (\w+)\(", message)
    unregistered = re.findall(r"Op type not registered '(\w+)'", message)
    return sorted(set(flex + kernels + unregistered))
