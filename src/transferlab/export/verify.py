"""The separate process that loads an artifact with its own runtime and runs it on the saved test inputs.

A fresh interpreter proves what a serving host would see: nothing of the exporting process (its Keras
objects, registered layers, loaded kernels) helps the artifact load.

    python -m transferlab.export.verify <folder> <format> <inputs.npy> <outputs.npz> <batch size>

writes the logits (`outputs`) and, for a text export that tokenizes in front of the artifact, the token ids
it fed (one array per input name) to outputs.npz, and prints {"runtime", "latency_ms_per_example"} as
JSON; a load or run failure is one `error:` line. Latency includes that tokenization: it is what a
serving host pays per raw string.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

from transferlab.errors import TransferlabError, fail, first_line
from transferlab.export.runtime import Artifact, load_artifact, unsupported_ops

WAY_OUT = {
    "litert": "export format=saved_model or format=onnx, or litert_builtins_only=true to find the layer "
              "without a LiteRT builtin and replace it",
    "onnx": "export format=saved_model, or change the layer to one ONNX Runtime supports",
    "saved_model": "string ops of a tokenizer need tensorflow-text installed where the SavedModel is loaded "
                   "(pip install tensorflow-text; import tensorflow_text before loading)",
}


def run(folder: Path, fmt: str, inputs: np.ndarray, batch_size: int) -> tuple[Artifact, np.ndarray, float]:
    """The artifact's outputs on `inputs` and the seconds per example after one warm-up batch."""
    try:
        artifact = load_artifact(folder, fmt)
        artifact.predict(inputs[:batch_size], batch_size)
        started = time.perf_counter()
        outputs = artifact.predict(inputs, batch_size)
        return artifact, outputs, (time.perf_counter() - started) / max(len(inputs), 1)
    except TransferlabError:
        raise
    except Exception as exc:  # each runtime raises its own types (RuntimeError, onnxruntime's Fail, ...)
        ops = unsupported_ops(str(exc))
        what = f"unsupported op(s) {', '.join(ops)}" if ops else f"{type(exc).__name__}: {first_line(exc)}"
        raise TransferlabError(f"the {fmt} runtime cannot run the exported model ({what}); {WAY_OUT[fmt]}") from exc


def main(argv: list[str]) -> None:
    folder, fmt, inputs_path, outputs_path, batch_size = argv
    inputs = np.load(inputs_path)
    try:
        artifact, outputs, seconds = run(Path(folder), fmt, inputs, int(batch_size))
    except TransferlabError as exc:
        fail(str(exc))
    ids = artifact.model_inputs(inputs) if artifact.text_inputs else {}
    np.savez(outputs_path, outputs=outputs, **ids)
    print(json.dumps({"runtime": artifact.runtime, "latency_ms_per_example": seconds * 1000}))


if __name__ == "__main__":
    main(sys.argv[1:])
