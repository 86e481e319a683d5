"""`transferlab extract [group=option ...]`: features of a frozen pretrained base, and the scikit-learn baseline on them.

Writes features.npz (or features.parquet with `extract.format=parquet`) and extraction.json to the run directory.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from transferlab.cli import run_extraction_from_hydra
from transferlab.commands import run_hydra_command


def task(cfg: DictConfig) -> None:
    """The Hydra job."""
    run_extraction_from_hydra(cfg)


def main(config_path: Path | None = None) -> None:
    """Extract from the command line; `config_path` is the configs folder (default: see `config_dir`)."""
    run_hydra_command(task, config_path)
