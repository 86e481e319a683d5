"""Extract features with a frozen pretrained base and fit the scikit-learn baseline on them.

Same config groups as train.py: `python scripts/extract.py dataset=cats_dogs base_model=mobilenet_v2`.
Writes features.npz (pooled features, labels and image paths or texts per split; features.parquet,
one row per image or text, with `extract.format=parquet`) and extraction.json to the run directory.
The installed `transferlab extract`, reading this checkout's conf/.
"""

from pathlib import Path

from transferlab.commands import extract

if __name__ == "__main__":
    extract.main(config_path=Path(__file__).resolve().parents[1] / "conf")
