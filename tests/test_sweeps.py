"""Sweeps through the real entry point on tiny data: the sweep summary, failed jobs that do not end a
sweep, the journaled Optuna study and its continuation, the joblib launcher, and the cluster configs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import run_train_script, tiny_overrides

pytest.importorskip("hydra_plugins.hydra_optuna_sweeper", reason="needs the sweeps extra")


def sweep_args(data: Path, weights, sweep_dir: Path, *extra: str, without: tuple[str, ...] = ()) -> list[str]:
    """A multirun of the tiny experiment; every job writes to its own folder under `sweep_dir`."""
    dropped = ("paths.output_dir", *without)
    args = [a for a in tiny_overrides(data, Path("unused"), weights) if not a.startswith(dropped)]
    # No tracker and no baseline: less to do per job, and the summary's metrics do not need them.
    return ["-m", *args, "logger=none", "baseline.estimator=null", f"hydra.sweep.dir={sweep_dir}", *extra]


def job_values(sweep_dir: Path) -> dict[int, float]:
    """What each job returned to the sweeper, as recorded beside Hydra's files."""
    records = [json.loads(p.read_text()) for p in sweep_dir.glob("*/.hydra/job_status.json")]
    return {r["job"]: r.get("value") for r in records}


@pytest.fixture(scope="module")
def nan_weights(tmp_path_factory) -> Path:
    """Base weights that make the first training loss NaN."""
    import keras

    from transferlab.models.digits import digits_cnn

    base = digits_cnn(input_shape=(16, 16, 3))
    kernel = base.get_layer("block1_conv").kernel
    kernel.assign(np.full(kernel.shape, np.nan, dtype="float32"))
    path = tmp_path_factory.mktemp("nan") / "nan.weights.h5"
    base.save_weights(path)
    keras.backend.clear_session()
    return path


def test_failed_jobs_are_recorded_and_the_sweep_goes_on(image_folder, base_weights, nan_weights, tmp_path):
    sweep = tmp_path / "sweep"
    args = sweep_args(
        image_folder, base_weights, sweep,
        f"base_model.weights={nan_weights},{base_weights}", "schedule.head.lr=-1,0.01",
        "hydra.sweeper.max_batch_size=1",  # one job a batch: Hydra's basic sweeper would stop after job 0
        without=("base_model.weights", "schedule.head.lr"),
    )
    result = run_train_script(args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    table = pd.read_csv(sweep / "sweep_summary.csv")
    assert list(table["job"]) == [0, 1, 2, 3]
    assert list(table["status"]) == ["failed", "failed", "failed", "finished"]
    assert table["error"][0].startswith("ConfigError: schedule.head.lr=-1.0 must be a positive learning rate")
    assert "TrainingError: the training loss became nan" in table["error"][1]
    assert json.loads((sweep / "1" / "summary.json").read_text())["status"] == "failed"
    finished = json.loads((sweep / "3" / "summary.json").read_text())
    assert table["optimized_metric"][3] == "best/val_loss"
    assert table["value"][3] == pytest.approx(finished["metrics"]["best/val_loss"]) == job_values(sweep)[3]
    assert table["test/accuracy"][3] == pytest.approx(finished["metrics"]["test/accuracy"])
    assert list(table["schedule.head.lr"]) == [-1.0, 0.01, -1.0, 0.01]
    assert table["overrides"][3].endswith(f"base_model.weights={base_weights} schedule.head.lr=0.01")
    assert "4 jobs: 1 finished, 3 failed" in result.stdout and str(sweep / "sweep_summary.csv") in result.stdout


def optuna_args(data: Path, weights, sweep_dir: Path, journal: Path, n_trials: int) -> list[str]:
    return sweep_args(
        data, weights, sweep_dir, "hparams_search=digits_optuna", f"hydra.sweeper.n_trials={n_trials}",
        f"hydra.sweeper.journal={journal}", "hydra.sweeper.sampler.n_startup_trials=2",
        # Fixed values leave the search space: no augmentation keeps the head phase on cached features.
        "augmentation.rotation=0", "augmentation.zoom=0", "schedule.head.epochs=1", "schedule.fine_tune.epochs=1",
        without=("schedule.head.lr", "schedule.fine_tune.lr", "schedule.head.epochs", "schedule.fine_tune.epochs"),
    )


@pytest.mark.slow  # two launches of the entry point (about 1.5-2 minutes on two busy cores)
def test_optuna_study_finds_the_best_job_and_a_relaunch_continues_it(image_folder, base_weights, tmp_path):
    journal = tmp_path / "study" / "trials.jsonl"
    first = run_train_script(optuna_args(image_folder, base_weights, tmp_path / "s1", journal, 2), cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    assert sorted(job_values(tmp_path / "s1")) == [0, 1] and len(pd.read_csv(tmp_path / "s1" / "sweep_summary.csv")) == 2
    trials_before = journal.read_text().splitlines()

    again = run_train_script(optuna_args(image_folder, base_weights, tmp_path / "s2", journal, 3), cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-2000:]
    # n_trials counts the study's trials: only the third runs, numbered after the two of the first launch.
    assert list(job_values(tmp_path / "s2")) == [2]
    trials = [json.loads(line) for line in journal.read_text().splitlines()]
    assert [t["number"] for t in trials] == [0, 1, 2] and journal.read_text().splitlines()[:2] == trials_before
    values = {**job_values(tmp_path / "s1"), **job_values(tmp_path / "s2")}
    assert all(np.isfinite(list(values.values())))
    assert [t["values"][0] for t in trials] == pytest.approx([values[0], values[1], values[2]])
    best = yaml.safe_load((tmp_path / "s2" / "optimization_results.yaml").read_text())
    best_job = min(values, key=values.get)
    assert best["best_value"] == pytest.approx(values[best_job])
    best_summary = json.loads(next(tmp_path.glob(f"s?/{best_job}/summary.json")).read_text())
    assert best["best_value"] == pytest.approx(best_summary["metrics"]["best/val_loss"])
    assert best["best_params"] == trials[best_job]["params"]


def test_sql_storage_is_refused_with_one_line_before_any_job(image_folder, base_weights, tmp_path):
    args = optuna_args(image_folder, base_weights, tmp_path / "s", tmp_path / "t.jsonl", 2)
    result = run_train_script([*args, f"hydra.sweeper.storage=sqlite:///{tmp_path / 'optuna.db'}"], cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("error: hydra.sweeper.storage=sqlite:")
    assert "hydra.sweeper.journal=" in result.stderr and not list((tmp_path / "s").glob("*/summary.json"))


@pytest.mark.slow  # two worker processes each start TensorFlow (about 2 minutes on two busy cores)
def test_joblib_launcher_runs_a_grid_in_parallel_processes(image_folder, base_weights, tmp_path):
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher")
    sweep = tmp_path / "sweep"
    args = sweep_args(
        image_folder, base_weights, sweep, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
        "schedule.head.lr=0.01,0.02", "head.dropout=0.1,0.3", "schedule.head.epochs=1", "schedule.fine_tune.epochs=0",
        without=("schedule.head.lr", "schedule.head.epochs"),
    )
    result = run_train_script(args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert sorted(p.parent.name for p in sweep.glob("*/summary.json")) == ["0", "1", "2", "3"]
    table = pd.read_csv(sweep / "sweep_summary.csv")
    assert list(table["job"]) == [0, 1, 2, 3] and set(table["status"]) == {"finished"}
    assert sorted(zip(table["schedule.head.lr"], table["head.dropout"], strict=True)) == [(0.01, 0.1), (0.01, 0.3), (0.02, 0.1), (0.02, 0.3)]
    assert "Joblib.Parallel(n_jobs=2" in result.stdout


@pytest.mark.parametrize(
    ("launcher", "overrides", "expected"),
    [
        (
            "slurm",
            ["hydra.launcher.partition=gpu", "hydra.launcher.gpus_per_node=2", "hydra.launcher.timeout_min=30"],
            {"_target_": "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher",
             "partition": "gpu", "gpus_per_node": 2, "timeout_min": 30},
        ),
        (
            "ray",
            ["hydra.launcher.ray.init.address=ray://head:10001"],
            {"_target_": "hydra_plugins.hydra_ray_launcher.ray_launcher.RayLauncher",
             "ray": {"init": {"address": "ray://head:10001"}, "remote": {"num_cpus": 2, "num_gpus": 0}}},
        ),
    ],
)
def test_cluster_launcher_configs_compose(launcher, overrides, expected, tmp_path):
    result = run_train_script(["--cfg", "hydra", f"hydra/launcher={launcher}", *overrides], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    composed = yaml.safe_load(result.stdout)["hydra"]["launcher"]
    assert {key: composed[key] for key in expected} == expected


@pytest.mark.parametrize(("batch_size", "before", "after"), [(1, 3, 2), (1, 4, 2), (2, 4, 2)])
def test_a_continued_study_draws_what_an_uninterrupted_one_would(tmp_path, batch_size, before, after):
    """`before` trials, a relaunch with a fresh sampler of the same seed, `after` more: the same trials as one
    launch of `before + after`, through the random start-up trials (2) and TPE's own draws after them."""
    import optuna

    from transferlab.sweeps.trial_journal import open_study, replay_sampler

    optuna.logging.set_verbosity(optuna.logging.WARNING)

    def sampler():
        return optuna.samplers.TPESampler(seed=7, n_startup_trials=2)

    def run(study, n):
        for _ in range(0, n, batch_size):
            trials = [study.ask() for _ in range(batch_size)]
            for trial in trials:
                x, kind = trial.suggest_float("x", -3, 3), trial.suggest_categorical("kind", ["a", "b", "c"])
                study.tell(trial, (x - 1) ** 2 + (kind == "b"))

    uninterrupted = optuna.create_study(sampler=sampler())
    run(uninterrupted, before + after)
    journal = tmp_path / "trials.jsonl"
    first = optuna.create_study(storage=open_study(journal, "s", ["minimize"])[0], study_name="s", sampler=sampler(), load_if_exists=True)
    run(first, before)
    storage, continued = open_study(journal, "s", ["minimize"])
    fresh = sampler()
    assert replay_sampler(fresh, continued, batch_size)
    run(optuna.create_study(storage=storage, study_name=continued.study_name, sampler=fresh, load_if_exists=True), after)
    params = [t.params for t in sorted(continued.get_trials(), key=lambda t: t.number)]
    assert params == [t.params for t in uninterrupted.trials]
    assert len({tuple(p.items()) for p in params}) == before + after  # no trial repeats another's parameters
