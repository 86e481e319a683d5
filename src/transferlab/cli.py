"""The command-line boundary: Hydra in, one clear line out on any error a user can fix."""

from __future__ import annotations

import difflib
import logging
import os
import sys
from contextlib import contextmanager
from typing import Callable, Iterator

from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException, MissingConfigException, OverrideParseException
from hydra.types import RunMode
from omegaconf import DictConfig
from omegaconf.errors import (
    ConfigAttributeError,
    ConfigKeyError,
    OmegaConfBaseException,
)

from transferlab.config.convert import invalid_value_message, unknown_key_message
from transferlab.errors import TransferlabError, fail, first_line

log = logging.getLogger("transferlab")


def run_from_hydra(cfg: DictConfig) -> float:
    """Train from a Hydra-composed config and return the optimized metric to the sweeper."""
    from transferlab.training.recipe import train

    with one_line_errors():
        summary = train(cfg)
    return summary.metric(cfg.optimized_metric)


def run_extraction_from_hydra(cfg: DictConfig) -> None:
    """Extract features from a Hydra-composed config and print where they went and the baseline."""
    from transferlab.extraction import extract_features

    with one_line_errors():
        result = extract_features(cfg)
    log.info("features of %s written to %s; baseline %s", result["counts"], result["features"], result["metrics"])


@contextmanager
def one_line_errors() -> Iterator[None]:
    """A fixable error ends a single run with one line; in a sweep Hydra records the job as failed."""
    try:
        yield
    except TransferlabError as exc:
        if _in_multirun():
            raise  # the sweep goes on with the other jobs
        log_to_files_only(logging.ERROR, str(exc))
        fail(str(exc))
    except KeyboardInterrupt as exc:
        fail(f"interrupted ({exc or 'Ctrl-C'}); completed epochs are checkpointed: add resume=true to continue", 130)


def main_with_clear_errors(hydra_main: Callable[[], object]) -> None:
    """Run a `@hydra.main` function, turning config composition errors into one line."""
    check_flags(sys.argv[1:])
    wants_traceback = os.environ.get("HYDRA_FULL_ERROR") == "1"
    os.environ["HYDRA_FULL_ERROR"] = "1"  # let composition errors reach us instead of Hydra's printer
    try:
        hydra_main()
    except (HydraException, OmegaConfBaseException) as exc:
        if wants_traceback:
            raise
        fail(describe_config_error(exc))
    except TransferlabError as exc:
        fail(str(exc))
    except AssertionError as exc:
        # OmegaConf asserts when an override sets a key below a null node, e.g. logger.neptune.mode with
        # Neptune not selected.
        if wants_traceback or not _raised_in("omegaconf", exc):
            raise
        fail(
            "an override sets a key of a config section that is off (null), e.g. logger.neptune.* without "
            "logger=neptune; select that option first (logger=neptune, logger=mlflow, logger=tensorboard_neptune)"
        )


def _raised_in(package: str, exc: BaseException) -> bool:
    """Whether the innermost frame of the exception's traceback is in `package`."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is not None and tb.tb_frame.f_globals.get("__name__", "").split(".")[0] == package


def log_to_files_only(level: int, message: str) -> None:
    """Record a message in the run's log file without repeating on the console what stderr shows."""
    record = log.makeRecord(log.name, level, __file__, 0, message, (), None)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)


# Hydra 1.3's command-line flags (tests/test_hostile_commands.py checks this against Hydra's parser).
HYDRA_FLAGS = frozenset({
    "--cfg", "--config-dir", "--config-name", "--config-path", "--experimental-rerun", "--help", "--hydra-help",
    "--info", "--multirun", "--package", "--resolve", "--run", "--shell-completion", "--version",
    "-c", "-cd", "-cn", "-cp", "-h", "-i", "-m", "-p", "-r", "-sc",
})


def check_flags(args: list[str]) -> None:
    """An unknown flag gets one line, not Hydra's usage block; config values are key=value."""
    for arg in args:
        flag = arg.split("=", 1)[0]
        if arg.startswith("-") and flag not in HYDRA_FLAGS:
            close = difflib.get_close_matches(flag, HYDRA_FLAGS, n=1)
            hint = f"did you mean {close[0]}? " if close else ""
            fail(f"unknown option '{flag}'; {hint}config values are given as key=value, and --help lists the options")


def describe_config_error(exc: BaseException) -> str:
    """One line naming the bad key or option and the fix, from Hydra's and OmegaConf's errors."""
    if isinstance(exc, OverrideParseException):
        return override_syntax_message(exc.override, first_line(exc))
    if isinstance(exc, MissingConfigException) and exc.missing_cfg_file and "/" in exc.missing_cfg_file:
        group, option = exc.missing_cfg_file.rsplit("/", 1)
        hint = GROUP_HINTS.get(group, "").format(option=option)
        return f"unknown {group} '{option}'; available: {', '.join(exc.options or []) or 'none'}{hint}"
    cause = exc.__cause__ if isinstance(exc.__cause__, OmegaConfBaseException) else exc
    key = getattr(cause, "full_key", None)
    if key and isinstance(cause, (ConfigKeyError, ConfigAttributeError)):
        return unknown_key_message(key)
    if key:
        return invalid_value_message(key, getattr(cause, "value", None), first_line(cause))
    return first_line(cause) if str(cause).strip() else first_line(exc)


# What an unknown option of a group may really be, said after the list of options.
GROUP_HINTS = {
    "base_model": "; any keras.applications model by name: base_model.name={option}",
}


def override_syntax_message(override: str, problem: str) -> str:
    """Hydra's override grammar rejects characters a shell passes through, `~` first among them."""
    key, _, value = override.partition("=")
    if value.startswith("~"):
        return (
            f"cannot parse the override '{override}': Hydra needs a value starting with ~ quoted; write "
            f"{key}=$HOME{value[1:]} (the shell expands it) or '{key}=\"{value}\"'"
        )
    return (
        f"cannot parse the override '{override}' ({problem.split(': ')[-1]}); quote a value with special "
        f"characters: '{key}=\"{value}\"'"
    )


def _in_multirun() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
