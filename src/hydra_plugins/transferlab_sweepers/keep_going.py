"""The basic grid sweeper, except that a failed job does not end the sweep.

Hydra 1.3's basic sweeper re-raises the first failed job's exception once its batch has run: later
batches never start and the multirun-end callbacks (the sweep summary) never run. Here a failed job
is logged with its error and the sweep goes on; the sweep summary records it as failed.
"""

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import List, Sequence

from hydra.core.config_store import ConfigStore
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import JobReturn, JobStatus
from omegaconf import OmegaConf

from transferlab.compat.hydra import basic_sweeper, job_result

BasicSweeper, BasicSweeperConf = basic_sweeper()

log = logging.getLogger(__name__)


@dataclass
class KeepGoingSweeperConf(BasicSweeperConf):
    _target_: str = "hydra_plugins.transferlab_sweepers.keep_going.KeepGoingSweeper"


ConfigStore.instance().store(group="hydra/sweeper", name="keep_going", node=KeepGoingSweeperConf, provider="transferlab")


class KeepGoingSweeper(BasicSweeper):
    """Runs every batch of the grid whatever failed before; failures are logged, not raised."""

    def sweep(self, arguments: List[str]) -> List[Sequence[JobReturn]]:
        assert self.config is not None and self.launcher is not None and self.hydra_context is not None
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        self.overrides = self.split_arguments(
            parser.parse_overrides([*self._parse_config(), *arguments]), self.max_batch_size
        )
        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        returns: List[Sequence[JobReturn]] = []
        first_job = 0
        while not self.is_done():
            batch = self.get_job_batch()
            self.validate_batch_is_legal(batch)
            results = self.launcher.launch(batch, initial_job_idx=first_job)
            _log_failures(results, first_job)
            first_job += len(batch)
            returns.append(results)
        return returns


def _log_failures(results: Sequence[JobReturn], first_job: int) -> None:
    for number, result in enumerate(results, start=first_job):
        if result.status != JobStatus.COMPLETED:
            error = job_result(result)
            log.error("job %d (%s) failed: %s", number, " ".join(result.overrides or ()), error)
