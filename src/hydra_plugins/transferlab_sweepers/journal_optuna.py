"""The Optuna sweeper with a study that outlives one launch: `hydra/sweeper=optuna_journal`.

`hydra.sweeper.journal` names a JSON-lines file of finished trials. Relaunching with the same file
and study continues the study: `n_trials` counts all its trials, so only the missing ones run, and
job numbers go on from the trials already there. Needs the `sweeps` extra (hydra-optuna-sweeper).
"""

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, List, Optional

from hydra.core.config_store import ConfigStore

log = logging.getLogger(__name__)

try:
    from hydra_plugins.hydra_optuna_sweeper.config import OptunaSweeperConf
    from hydra_plugins.hydra_optuna_sweeper.optuna_sweeper import OptunaSweeper
except ImportError:  # the sweeps extra is not installed: Hydra's own sweepers still work
    OptunaSweeper = None


if OptunaSweeper is not None:

    @dataclass
    class JournalOptunaSweeperConf(OptunaSweeperConf):
        _target_: str = "hydra_plugins.transferlab_sweepers.journal_optuna.JournalOptunaSweeper"
        # JSON lines, one finished trial a line; null keeps the study in memory for this launch only.
        journal: Optional[str] = None

    ConfigStore.instance().store(
        group="hydra/sweeper", name="optuna_journal", node=JournalOptunaSweeperConf, provider="transferlab"
    )

    class JournalOptunaSweeper(OptunaSweeper):
        """OptunaSweeper whose study is rebuilt from, and appended to, the journal file."""

        def __init__(self, journal: Optional[str], **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.journal = journal

        def sweep(self, arguments: List[str]) -> None:
            from transferlab.errors import ConfigError

            impl = self.sweeper
            if _is_broken_sql_storage(impl.storage):
                raise ConfigError(_sql_storage_message(impl.storage))
            if self.journal:
                _continue_study(impl, Path(self.journal))
            return impl.sweep(arguments)

    def _continue_study(impl: Any, journal: Path) -> None:
        from transferlab.compat.hydra import optuna_directions
        from transferlab.sweeps.trial_journal import open_study, replay_sampler

        storage, study = open_study(journal, impl.study_name, optuna_directions(impl))
        done = len(study.trials)
        if done and not replay_sampler(impl.sampler, study, impl.n_jobs):
            log.warning(
                "the %s sampler cannot be replayed: this launch draws from its seed again and may repeat "
                "earlier trials' parameters; use the TPE (multivariate=false) or random sampler to continue "
                "a study exactly", type(impl.sampler).__name__,
            )
        impl.storage, impl.study_name = storage, study.study_name
        impl.job_idx = done  # job folders and numbers go on where the last launch stopped
        impl.n_trials = max(0, impl.n_trials - done)
        log.info("study %s: %d trials in %s, %d to run", study.study_name, done, journal, impl.n_trials)

    def _is_broken_sql_storage(storage: object) -> bool:
        import sqlalchemy

        sql = isinstance(storage, str) and not storage.startswith("redis")
        return sql and int(sqlalchemy.__version__.split(".")[0]) >= 2

    def _sql_storage_message(storage: str) -> str:
        return (
            f"hydra.sweeper.storage={storage} is not supported: optuna 2.10 (which hydra-optuna-sweeper "
            "requires) cannot use SQL databases under SQLAlchemy 2; set hydra.sweeper.journal=<file>.jsonl "
            "to keep the study across launches, and hydra.sweeper.storage=null"
        )
