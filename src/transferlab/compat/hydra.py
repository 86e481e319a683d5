"""The guarded home of private Hydra APIs: the basic sweeper `hydra/sweeper=keep_going` extends, a
finished job's outcome read without re-raising its error, and the Optuna sweeper's study directions
the journal sweeper opens its study with.

Both are checked when used, against what Hydra 1.3 has; `tests/test_compat.py` fails as soon as an
installed Hydra moves them.
"""

from __future__ import annotations

from importlib import metadata
from typing import TYPE_CHECKING

from transferlab.errors import UpstreamChangedError

if TYPE_CHECKING:
    from hydra.core.utils import JobReturn


def basic_sweeper() -> tuple[type, type]:
    """Hydra's BasicSweeper and its config class (internal: Hydra exports no base for grid sweepers)."""
    try:
        from hydra._internal.core_plugins.basic_sweeper import (
            BasicSweeper,
            BasicSweeperConf,
        )
    except ImportError as exc:
        raise UpstreamChangedError(
            f"this hydra-core ({metadata.version('hydra-core')}) has no hydra._internal.core_plugins.basic_sweeper."
            "BasicSweeper, which hydra/sweeper=keep_going extends; use hydra-core 1.3"
        ) from exc
    return BasicSweeper, BasicSweeperConf


def job_result(job_return: "JobReturn") -> object:
    """A finished job's returned value, or its exception: `JobReturn.return_value` re-raises a failure."""
    if "_return_value" not in getattr(type(job_return), "__dataclass_fields__", {}):
        raise UpstreamChangedError(
            f"this hydra-core ({metadata.version('hydra-core')}) has no JobReturn._return_value, which the sweep "
            "summary reads a failed job's error from; use hydra-core 1.3"
        )
    return job_return._return_value


def optuna_directions(impl: object) -> list[str]:
    """The study directions the Optuna sweeper was configured with ("minimize"/"maximize" per objective)."""
    directions = getattr(impl, "_get_directions", None)
    if not callable(directions):
        raise UpstreamChangedError(
            f"this hydra-optuna-sweeper ({metadata.version('hydra-optuna-sweeper')}) has no "
            "OptunaSweeperImpl._get_directions, which hydra/sweeper=optuna_journal opens its study with; "
            "use hydra-optuna-sweeper 1.3"
        )
    return directions()
