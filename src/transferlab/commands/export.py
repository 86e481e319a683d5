"""`transferlab export <run dir> [format=saved_model|onnx|litert ...]`: the run's model as verified serving artifacts.

A Hydra command over conf/export.yaml, so `format=[onnx,litert]` exports both and `-m format=onnx,litert`
runs one job each. The run directory comes first, as for `predict`; it is passed on as `run_dir=`.
Each format lands in <run dir>/export/<format>/ with export.json, only after a fresh process loaded it
back and matched the Keras model on the test split (transferlab.export.writer).
"""

from __future__ import annotations

import sys
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from transferlab.commands import run_hydra_command
from transferlab.errors import fail


def task(cfg: DictConfig) -> None:
    """The Hydra job: every format asked for, in order; the first failure ends it with one line."""
    from transferlab.cli import one_line_errors
    from transferlab.export.config import ExportConfig, check_export_config, formats
    from transferlab.export.writer import export_run

    with one_line_errors():
        config = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(ExportConfig), cfg))
        check_export_config(config)
        for fmt in formats(config.format):
            export_run(config, fmt)
            print(f"{fmt.value}: {Path(config.run_dir) / 'export' / fmt.value}")


def with_run_dir(args: list[str]) -> list[str]:
    """The first argument that is neither a flag nor key=value is the run directory: `run_dir=<absolute path>`."""
    for i, arg in enumerate(args):
        if not arg.startswith("-") and "=" not in arg:
            run_dir = Path(arg).resolve()
            if not run_dir.is_dir():
                fail(f"run directory '{arg}' does not exist; pass the folder a training run wrote (it holds model.keras)")
            if "'" in str(run_dir):
                fail(f"run directory '{run_dir}' has a quote (') in its path; rename or link it")
            # Last: Hydra's parser takes the overrides as one run of arguments after any flag (-m).
            return [*args[:i], *args[i + 1 :], f"run_dir='{run_dir}'"]
    if not any(a.startswith("run_dir=") for a in args) and not {"-h", "--help", "--hydra-help", "--cfg", "-c"} & set(args):
        fail("no run directory given; usage: transferlab export <run dir> format=saved_model|onnx|litert")
    return args


def main(config_path: Path | None = None) -> None:
    """Export from the command line; `config_path` is the configs folder (default: see `config_dir`)."""
    import transferlab.export.config  # noqa: F401  registers transferlab_export_schema

    sys.argv = [sys.argv[0], *with_run_dir(sys.argv[1:])]
    run_hydra_command(task, config_path, config_name="export")
