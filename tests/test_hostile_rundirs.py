"""One folder, one run: no run or extraction writes into another run's folder, two live runs never share
one, two runs started in the same second get different folders, and an unusable folder is one line."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import CONF_DIR, ROOT, compose_config, run_train_script, tiny_overrides
from hydra import compose, initialize_config_dir
from hydra.core.utils import JobReturn
from omegaconf import DictConfig, OmegaConf

import transferlab
from transferlab.config.convert import to_experiment_config
from transferlab.errors import ConfigError
from transferlab.extraction import extract_features
from transferlab.training.run_guard import (
    LOCK_FILE,
    RunGuard,
    check_run_dir,
    check_sweep_dir,
    note_resumed,
    release,
)
from transferlab.training.runs import prepare_run_dir


def hydra_config(*overrides: str) -> DictConfig:
    """The composed config with its `hydra` section, as a Hydra callback receives it."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides), return_hydra_config=True)


def taken_message(folder: Path, found: str) -> str:
    return (
        f"'{folder}' already holds another run's results ({found}); continue an unfinished run with "
        f"resume={folder}, or start this one in a new folder, e.g. hydra.run.dir=<new folder>"
    )


@pytest.mark.parametrize("marker", ["summary.json", "config.yaml", "checkpoints", "extraction.json"])
def test_a_new_run_or_extraction_never_writes_into_another_runs_folder(image_folder, base_weights, tmp_path, marker):
    taken = tmp_path / "taken"
    taken.mkdir()
    if marker == "checkpoints":
        (taken / marker).mkdir()
    else:
        (taken / marker).write_text("theirs")
    for entry in (transferlab.train, extract_features):
        with pytest.raises(ConfigError, match=re.escape(taken_message(taken, marker))):
            entry(to_experiment_config(compose_config_for(image_folder, taken, base_weights)))
    assert [p.name for p in taken.iterdir()] == [marker]  # nothing written, and no lock file left behind
    if marker != "checkpoints":
        assert (taken / marker).read_text() == "theirs"


def compose_config_for(data: Path, out: Path, weights: Path, *extra: str) -> DictConfig:
    return compose_config(tiny_overrides(data, out, weights, *extra))


def test_the_cli_refuses_a_finished_run_folder_before_hydra_writes_into_it(tmp_path):
    finished = tmp_path / "finished"
    (finished / ".hydra").mkdir(parents=True)
    (finished / ".hydra" / "config.yaml").write_text("the finished run's config\n")
    (finished / "summary.json").write_text('{"status": "completed"}')
    result = run_train_script(["trainer.verbose=0", f"hydra.run.dir={finished}"], cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"error: {taken_message(finished, 'summary.json')}"]
    assert (finished / ".hydra" / "config.yaml").read_text() == "the finished run's config\n"
    assert sorted(p.name for p in finished.iterdir()) == [".hydra", "summary.json"]


def test_an_unusable_or_used_run_or_sweep_folder_is_one_line_and_a_resume_may_use_its_own(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")  # as a parent folder it cannot be written, even by root
    with pytest.raises(ConfigError, match=re.escape(
        f"cannot create or write the run directory '{blocker / 'run'}' (Not a directory); "
        "give a writable folder: hydra.run.dir=<writable folder>"
    )):
        check_run_dir(hydra_config(f"hydra.run.dir={blocker / 'run'}"))
    with pytest.raises(ConfigError, match=re.escape(
        f"cannot create the sweep directory '{blocker / 'sweep'}' (Not a directory); "
        "give a writable folder: hydra.sweep.dir=<writable folder>"
    )):
        check_sweep_dir(hydra_config(f"hydra.sweep.dir={blocker / 'sweep'}"))
    swept = tmp_path / "swept"
    swept.mkdir()
    (swept / "multirun.yaml").write_text("hydra: {}\n")
    with pytest.raises(ConfigError, match=re.escape(f"'{swept}' already holds another sweep (multirun.yaml); start")):
        check_sweep_dir(hydra_config(f"hydra.sweep.dir={swept}"))

    run = tmp_path / "interrupted"
    run.mkdir()
    (run / "config.yaml").write_text("name: default\n")
    with pytest.raises(ConfigError, match=re.escape(taken_message(run, "config.yaml"))):
        check_run_dir(hydra_config(f"hydra.run.dir={run}"))
    assert not (run / LOCK_FILE).exists()
    check_run_dir(hydra_config(f"hydra.run.dir={run}", f"resume={run}"))
    assert (run / LOCK_FILE).read_text() == f"{os.getpid()}\n"
    release(run)
    assert not (run / LOCK_FILE).exists()


HOLDER = "import sys; from pathlib import Path; from transferlab.training.run_guard import claim\n" \
         "[claim(Path(p)) for p in sys.argv[1:]]; print('ready', flush=True); sys.stdin.read()"


def test_a_live_run_holds_its_folder_until_it_dies(image_folder, base_weights, tmp_path):
    run, live = tmp_path / "run", tmp_path / "live"
    prepare_run_dir(to_experiment_config(compose_config_for(image_folder, run, base_weights)))  # interrupted
    release(run)
    live.mkdir()
    resume = to_experiment_config(compose_config_for(image_folder, tmp_path / "again", base_weights, f"resume={run}"))
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(run), str(live)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )
    try:
        assert holder.stdout.readline().strip() == "ready"
        for cfg, folder in ((resume, run), (to_experiment_config(compose_config_for(image_folder, live, base_weights)), live)):
            with pytest.raises(ConfigError, match=re.escape(
                f"'{folder}' is in use by another live run (pid {holder.pid}); wait for it to end, or start this run "
                "in a new folder, e.g. hydra.run.dir=<new folder>"
            )):
                prepare_run_dir(cfg)
    finally:
        holder.kill()
        holder.wait()
    assert prepare_run_dir(resume) == run  # the OS dropped the killed process's lock
    assert (run / LOCK_FILE).read_text() == f"{os.getpid()}\n"
    release(run)
    assert not (run / LOCK_FILE).exists()


def test_two_runs_started_together_get_different_default_folders(tmp_path):
    # Each stops at the data check, after Hydra made its folder; both in the same second.
    args = [sys.executable, str(ROOT / "scripts" / "train.py"), "dataset=image_folder", f"dataset.path={tmp_path / 'none'}"]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "TRANSFERLAB_DATA_DIR": str(tmp_path / "data")}
    runs = [subprocess.Popen(args, cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    assert [p.wait(timeout=120) for p in runs] == [2, 2]
    folders = sorted((tmp_path / "outputs" / "default").iterdir())
    assert len(folders) == 2 and all(re.fullmatch(r"\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d_[0-9a-f]{6}", f.name) for f in folders)
    # One folder per process: the name resolved before Hydra's mkdir is the one Hydra used.
    assert all(sorted(p.name for p in f.iterdir()) == [".hydra", "train.log"] for f in folders)


def test_a_resume_elsewhere_moves_its_log_to_the_resumed_run_and_drops_hydras_folder(tmp_path):
    resumed, session, kept = tmp_path / "killed", tmp_path / "session", tmp_path / "kept"
    resumed.mkdir()
    (resumed / "train.log").write_text("first session\n")
    for folder in (session, kept):
        (folder / ".hydra").mkdir(parents=True)
        (folder / "train.log").write_text("resumed session\n")
    (kept / "notes.txt").write_text("the user's")

    def end(folder: Path) -> None:
        note_resumed(resumed)
        config = OmegaConf.create({"hydra": {"runtime": {"output_dir": str(folder)}, "job": {"name": "train"}}})
        RunGuard().on_run_end(config=config, job_return=JobReturn())

    end(session)
    assert not session.exists() and (resumed / "train.log").read_text() == "first session\nresumed session\n"
    end(kept)
    assert sorted(p.name for p in kept.iterdir()) == [".hydra", "notes.txt", "train.log"]


def test_a_run_through_the_python_api_unlocks_its_folder_when_it_ends(image_folder, base_weights, tmp_path):
    """A notebook's kernel outlives its runs: a finished or failed run must not keep its folder locked."""
    run = tmp_path / "run"
    cfg = compose_config_for(image_folder, run, base_weights, "schedule.head.epochs=1", "schedule.fine_tune.epochs=0")
    transferlab.train(cfg)
    assert not (run / LOCK_FILE).exists()
    failing, broken = tmp_path / "failing", tmp_path / "broken.weights.h5"
    broken.write_bytes(b"not hdf5")  # found before the folder is taken, unreadable only once the base is built
    with pytest.raises(transferlab.TransferlabError, match="cannot load weights"):
        transferlab.train(compose_config_for(image_folder, failing, broken))
    assert (failing / "summary.json").is_file() and not (failing / LOCK_FILE).exists()
