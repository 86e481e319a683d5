"""Export a finished run's model for serving: SavedModel, ONNX or LiteRT, verified in a fresh process.

    python scripts/export.py outputs/default/2026-11-29_10-00-00_3f9a2c format=onnx
    python scripts/export.py <run dir> format=[saved_model,onnx,litert] tolerance=1e-5
    python scripts/export.py <run dir> -m format=onnx,litert

Writes <run dir>/export/<format>/ (the artifact and export.json) only once the artifact, loaded back with
its own runtime, matched the Keras model on the run's test split. The installed `transferlab export`,
reading this checkout's conf/.
"""

from pathlib import Path

from transferlab.commands import export

if __name__ == "__main__":
    export.main(config_path=Path(__file__).resolve().parents[1] / "conf")
