"""Extract features with a frozen pretrained base and fit the scikit-learn baseline on them.

Same config groups as train.py: `python scripts/extract.py dataset=cats_dogs base_model=mobilenet_v2`.
Writes features.npz (pooled features, labels and image paths or texts per split; features.parquet,
one row per image or text, with `extract.format=parquet`) and extraction.json to the run directory.
"""

import hydra
from omegaconf import DictConfig

from transferlab.cli import main_with_clear_errors, run_extraction_from_hydra


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> None:
    run_extraction_from_hydra(cfg)


if __name__ == "__main__":
    main_with_clear_errors(main)
