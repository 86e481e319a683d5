"""The commands, defined once: `transferlab <command>`, `transferlab-<command>`, `python -m transferlab`.

The checkout's scripts/*.py call the same functions. Each command lives in its own module, because
Hydra names a job after the module of its task function: `train` and `extract` keep their
`train.log` and `extract.log`, whichever way they are started.
"""

from __future__ import annotations

import argparse
import sys
from importlib import import_module, resources
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from transferlab.errors import fail

if TYPE_CHECKING:
    from omegaconf import DictConfig

# name -> one line for `transferlab --help`; the module transferlab.commands.<name> holds its main().
COMMANDS: dict[str, str] = {
    "train": "train one experiment, or a sweep with -m (Hydra overrides: dataset=cats_dogs key=value ...)",
    "extract": "extract features with the frozen base and fit the scikit-learn baseline (Hydra overrides)",
    "predict": "predict classes of images or texts with a finished run or an export folder",
    "compare": "compare the runs under a folder (default: outputs)",
    "export": "export a finished run to saved_model, onnx or litert, verified (run dir, then format=...)",
}


def usage() -> str:
    """`transferlab --help`: the commands, without importing any of them (it stays instant)."""
    lines = [f"  {name:<8} {summary}" for name, summary in COMMANDS.items()]
    return "\n".join([
        "usage: transferlab <command> [arguments]  (also: transferlab-<command>, python -m transferlab)",
        "", "commands:", *lines, "", "`transferlab <command> --help` lists a command's options.",
    ])


def main(argv: list[str] | None = None) -> None:
    """Run `transferlab <command> args` exactly as `transferlab-<command> args`."""
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] in ("-h", "--help"):
        print(usage())
        sys.exit(0)
    name, rest = (args[0], args[1:]) if args else ("", [])
    if name not in COMMANDS:
        problem = f"unknown command '{name}'" if name else "no command given"
        fail(f"{problem}; choose one of: {', '.join(COMMANDS)} (transferlab --help)")
    # Hydra and argparse read sys.argv; the run records it as its command, which stays a command that runs.
    sys.argv = [f"transferlab-{name}", *rest]
    command: Callable[[], int | None] = import_module(f"{__name__}.{name}").main
    sys.exit(command())


def config_dir() -> Path:
    """The configs: the copy of conf/ an installed wheel ships as transferlab/conf, else the checkout's conf/.

    An editable install or PYTHONPATH=src reads the checkout's conf/ itself, so an edit there counts at once.
    A folder, not Hydra's pkg://transferlab.conf: that source needs an __init__.py in conf/, and an
    editable install cannot import a module-less transferlab.conf mapped outside src/.
    """
    package = Path(str(resources.files("transferlab")))
    for candidate in (package / "conf", package.parent.parent / "conf"):
        if (candidate / "config.yaml").is_file():
            return candidate
    fail(f"no configs found in '{package / 'conf'}' (nor a checkout's conf/); reinstall transferlab")


class OneLineArgumentParser(argparse.ArgumentParser):
    """Bad options end in the project's one `error:` line (exit 2), not argparse's usage block."""

    def error(self, message: str) -> None:
        fail(f"{message}; see {self.prog} --help")


def run_hydra_command(
    task: Callable[[DictConfig], object], config_path: Path | None = None, config_name: str = "config"
) -> None:
    """Run `task` as a `@hydra.main` app over sys.argv: overrides, -m, --help, --cfg, one-line errors."""
    import hydra

    from transferlab.cli import main_with_clear_errors

    app = hydra.main(version_base="1.3", config_path=str(config_path or config_dir()), config_name=config_name)(task)
    main_with_clear_errors(app)
