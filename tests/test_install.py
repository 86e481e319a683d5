"""The package without the checkout: the wheel ships conf/ and the commands, and runs an experiment.

One test (about 25 s) builds the wheel from a copy of the sources (so the checkout gets no build/ or
egg-info), installs it into a fresh virtual environment and trains, predicts and compares from an
empty folder, with nothing of the checkout on the path.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
from conftest import ROOT

SOURCES = ("pyproject.toml", "README.md", "conf", "src")
COMMANDS = ("train", "extract", "predict", "compare", "export")
TINY = ["schedule.head.epochs=1", "schedule.fine_tune.epochs=1", "baseline.estimator=null", "trainer.verbose=0"]


def checkout_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT / "src")}


def run(command: list, cwd: Path, env: dict[str, str], timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in command], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def test_the_packages_list_names_every_package_under_src():
    # The list is explicit (find cannot map transferlab.conf to conf/): a new subpackage must be added to it.
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    on_disk = {
        ".".join(folder.relative_to(ROOT / "src").parts)
        for folder in (ROOT / "src").rglob("*") if folder.is_dir() and any(folder.glob("*.py"))
    }
    assert on_disk <= set(setuptools["packages"]), f"add {sorted(on_disk - set(setuptools['packages']))} to packages"
    assert setuptools["package-dir"]["transferlab.conf"] == "conf"


def test_from_the_checkout_the_commands_read_its_conf(tmp_path):
    from transferlab.commands import config_dir

    assert config_dir() == ROOT / "conf"
    probe = ("import runpy, sys\nsys.argv = ['transferlab', 'train', '--cfg', 'job', 'name=probe']\n"
             "try: runpy.run_module('transferlab', run_name='__main__')\n"
             "except SystemExit as exc: print('exit', exc.code or 0)\n"
             "print('tensorflow' in sys.modules)")
    result = run([sys.executable, "-c", probe], tmp_path, checkout_env(), timeout=120)
    assert result.stdout.splitlines()[0] == "name: probe", result.stderr[-2000:]
    assert result.stdout.splitlines()[-2:] == ["exit 0", "False"]  # --cfg job stays fast: no TensorFlow


@pytest.mark.parametrize(("args", "message"), [
    (["nope"], "error: unknown command 'nope'; choose one of: train, extract, predict, compare, export (transferlab --help)"),
    (["train", "--bogus"], "error: unknown option '--bogus'; config values are given as key=value, and --help lists the options"),
    (["predict", "--top-k", "x"], "error: argument --top-k: invalid int value: 'x'; see transferlab-predict --help"),
    ([], "error: no command given; choose one of: train, extract, predict, compare, export (transferlab --help)"),
])
def test_a_bad_command_line_is_one_line_and_exit_2(tmp_path, args, message):
    result = run([sys.executable, "-m", "transferlab", *args], tmp_path, checkout_env(), timeout=120)
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.splitlines()[0] == message and "Traceback" not in result.stderr


def wheel_from_a_copy(tmp_path: Path) -> Path:
    """`pip wheel` of a copy of the sources, with the installed build backend."""
    import shutil

    copy = tmp_path / "source"
    copy.mkdir()
    for name in SOURCES:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, copy / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy(source, copy / name)
    # The test extra brings the build backend: building needs nothing from the network.
    result = run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", copy,
                  "-w", tmp_path / "dist"], tmp_path, os.environ.copy(), timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return next((tmp_path / "dist").glob("transferlab-*.whl"))


def assert_wheel_holds_the_package(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        entry_points = next(archive.read(n).decode() for n in names if n.endswith(".dist-info/entry_points.txt"))
    expected = {f"transferlab/conf/{p.relative_to(ROOT / 'conf').as_posix()}" for p in (ROOT / "conf").rglob("*.yaml")}
    expected |= {p.relative_to(ROOT / "src").as_posix() for p in (ROOT / "src").rglob("*.py") if "__pycache__" not in p.parts}
    expected |= {"transferlab/assets/digits_cnn_0-4.weights.h5", "hydra_plugins/transferlab_sweepers/keep_going.py"}
    assert expected <= names, sorted(expected - names)
    assert "transferlab = transferlab.commands:main" in entry_points
    for command in COMMANDS:
        assert f"transferlab-{command} = transferlab.commands.{command}:main" in entry_points


def see_dependencies_of_this_environment(python: Path) -> None:
    """Let a new venv import TensorFlow & co. from the environment running the tests, without the
    checkout: a plain path entry, so that environment's own .pth files (an editable install's
    pointer to src/) are not run. `--system-site-packages` would give the base interpreter's
    packages instead, which in a virtual environment are not these."""
    import sysconfig

    site = run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], python.parent, os.environ.copy())
    paths = dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
    (Path(site.stdout.strip()) / "tested_environment.pth").write_text("".join(f"{p}\n" for p in paths))


def test_the_installed_wheel_trains_predicts_and_compares_from_an_empty_folder(tmp_path):
    wheel = wheel_from_a_copy(tmp_path)
    assert_wheel_holds_the_package(wheel)
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", venv], tmp_path, os.environ.copy(), timeout=300).check_returncode()
    bin_dir = venv / "bin"
    see_dependencies_of_this_environment(bin_dir / "python")
    installed = run([bin_dir / "python", "-m", "pip", "install", "--no-deps", wheel], tmp_path, os.environ.copy(), timeout=300)
    assert installed.returncode == 0, installed.stderr[-2000:]

    work = tmp_path / "empty"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "TRANSFERLAB_DATA_DIR", "HYDRA_FULL_ERROR")}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    probe = ("import transferlab\nfrom transferlab.models.bases import DIGITS_WEIGHTS_FILE, asset_path\n"
             "print(transferlab.__file__)\nprint(asset_path(DIGITS_WEIGHTS_FILE))")
    where = run([bin_dir / "python", "-c", probe], work, env)
    package, asset = map(Path, where.stdout.split())
    assert package.is_relative_to(venv) and asset.is_relative_to(venv) and asset.is_file(), where.stdout + where.stderr

    helped = run([bin_dir / "transferlab", "train", "--help"], work, env, timeout=120)
    assert helped.returncode == 0 and "== Configuration groups ==" in helped.stdout, helped.stderr[-2000:]
    assert "dataset: cats_dogs, digits" in helped.stdout
    listed = run([bin_dir / "python", "-m", "transferlab", "--help"], work, env, timeout=120)
    assert listed.returncode == 0 and all(f"  {c} " in listed.stdout for c in COMMANDS), listed.stderr[-2000:]

    trained = run([bin_dir / "transferlab", "train", *TINY], work, env, timeout=900)
    assert trained.returncode == 0, trained.stderr[-3000:]
    (run_dir,) = (work / "outputs" / "default").iterdir()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "completed"
    assert summary["environment"]["command"] == f"transferlab-train {' '.join(TINY)}"  # a command that reruns it
    assert (run_dir / "train.log").is_file() and (run_dir / "model.keras").is_file()
    hydra_record = (run_dir / ".hydra" / "hydra.yaml").read_text()
    assert f"path: {venv}" in hydra_record and str(ROOT / "conf") not in hydra_record  # the wheel's configs
    assert "name: digits_cnn\n  weights: default" in (run_dir / "config.yaml").read_text()  # the shipped asset
    digits = work / "data" / "sklearn_digits"  # the built-in dataset, written below the current folder
    image = next((digits / summary["class_names"][0]).glob("*.png"))

    predicted = run([bin_dir / "transferlab", "predict", run_dir, image, "--top-k", "2"], work, env, timeout=300)
    assert predicted.returncode == 0, predicted.stderr[-2000:]
    assert image.name in predicted.stdout
    compared = run([bin_dir / "transferlab-compare", "outputs"], work, env, timeout=300)
    assert compared.returncode == 0 and run_dir.name in compared.stdout, compared.stderr[-2000:]
    assert (work / "outputs" / "comparison" / "comparison.csv").is_file()
