"""Export a finished run's model for serving (SavedModel, ONNX, LiteRT), verified in a fresh process.

`config` is the command's schema (no TensorFlow), `writer` exports and verifies, `runtime` loads an
artifact with its own runtime (ONNX Runtime and LiteRT without TensorFlow), `verify` is the separate
process that runs an artifact on the test split, and `serve` is `predict` on an export folder.
Nothing here imports TensorFlow on import; `predict/` never imports this package, which reuses it.
"""
