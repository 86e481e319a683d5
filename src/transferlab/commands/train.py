"""`transferlab train [group=option ...] [key=value ...]`: one transfer-learning experiment, or a sweep with -m."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from transferlab.cli import run_from_hydra
from transferlab.commands import run_hydra_command


def task(cfg: DictConfig) -> float:
    """The Hydra job; the optimized metric goes back to the sweeper."""
    return run_from_hydra(cfg)


def main(config_path: Path | None = None) -> None:
    """Train from the command line; `config_path` is the configs folder (default: see `config_dir`)."""
    run_hydra_command(task, config_path)
