"""Train one transfer-learning experiment: `python scripts/train.py [group=option ...] [key=value ...]`."""

import hydra
from omegaconf import DictConfig

from transferlab.cli import main_with_clear_errors, run_from_hydra


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> float:
    return run_from_hydra(cfg)


if __name__ == "__main__":
    main_with_clear_errors(main)
