"""Every private upstream API the project uses, checked against what is installed: an upgrade that moves
one fails here, loudly, and the guard turns it into one clear line for users."""

from __future__ import annotations

import builtins
import importlib
import inspect

import keras
import pytest
from hydra.core.utils import JobReturn, JobStatus

from transferlab.compat.hydra import basic_sweeper, job_result, optuna_directions
from transferlab.compat.keras import PRIVATE_METHODS, global_seed_generator, require_private_method
from transferlab.errors import UpstreamChangedError


@pytest.mark.parametrize("owner, name", sorted(PRIVATE_METHODS))
def test_the_installed_keras_still_has_each_private_method_we_override_or_call(owner, name):
    module, _, name_of_class = owner.rpartition(".")
    cls = getattr(importlib.import_module(module), name_of_class)
    assert tuple(inspect.signature(getattr(cls, name)).parameters)[1:] == PRIVATE_METHODS[(owner, name)]
    require_private_method(owner, name, "a test")


def test_a_renamed_keras_method_is_one_line_naming_the_change(monkeypatch):
    from transferlab.training.callbacks import BestModelCheckpoint

    monkeypatch.delattr(keras.callbacks.ModelCheckpoint, "_should_save_model")
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    with pytest.raises(UpstreamChangedError) as error:
        BestModelCheckpoint(model, "best.keras", monitor="val_loss")
    message = str(error.value)
    assert "keras.callbacks.ModelCheckpoint._should_save_model (it is gone" in message and "use keras 3.15" in message
    assert "\n" not in message


def test_a_reshaped_keras_method_is_refused_too(monkeypatch):
    monkeypatch.setattr(keras.layers.TFSMLayer, "_track_variable", lambda self, variable, overwrite: None)
    with pytest.raises(UpstreamChangedError, match=r"TFSMLayer\._track_variable \(it takes \('variable', 'overwrite'\)"):
        require_private_method("keras.layers.TFSMLayer", "_track_variable", "fine-tuning a SavedModel base")


def test_the_global_seed_generator_is_still_where_a_resume_reads_it():
    generator = global_seed_generator()
    assert isinstance(generator, keras.random.SeedGenerator) and generator is global_seed_generator()


def test_hydra_still_has_the_basic_sweeper_keep_going_extends():
    from hydra_plugins.transferlab_sweepers.keep_going import KeepGoingSweeper

    sweeper, conf = basic_sweeper()
    assert issubclass(KeepGoingSweeper, sweeper) and "max_batch_size" in conf.__dataclass_fields__


def hide_modules(monkeypatch, prefix: str) -> None:
    """Importing any module under `prefix` fails from now on, as when an upgrade has moved it."""
    real_import = builtins.__import__

    def without(name, *args, **kwargs):
        if name.startswith(prefix):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", without)


def test_a_hydra_without_the_basic_sweeper_is_one_line(monkeypatch):
    hide_modules(monkeypatch, "hydra._internal.core_plugins.basic_sweeper")
    with pytest.raises(UpstreamChangedError, match=r"^this hydra-core \(\S+\) has no .*BasicSweeper.*use hydra-core 1\.3$"):
        basic_sweeper()


def test_a_failed_jobs_error_is_read_without_raising_it():
    failed = JobReturn(status=JobStatus.FAILED)
    failed.return_value = ValueError("bad lr")
    with pytest.raises(ValueError):
        failed.return_value  # what job_result must not do  # noqa: B018
    assert isinstance(job_result(failed), ValueError)
    done = JobReturn(status=JobStatus.COMPLETED)
    done.return_value = 0.25
    assert job_result(done) == 0.25


def test_a_job_return_without_its_private_field_is_one_line():
    class Other:
        status = JobStatus.FAILED

    with pytest.raises(UpstreamChangedError, match=r"has no JobReturn\._return_value"):
        job_result(Other())


def test_the_optuna_sweeper_still_reports_its_directions():
    from hydra_plugins.hydra_optuna_sweeper._impl import OptunaSweeperImpl

    assert callable(OptunaSweeperImpl._get_directions)

    class Impl:
        def _get_directions(self):
            return ["maximize"]

    assert optuna_directions(Impl()) == ["maximize"]
    with pytest.raises(UpstreamChangedError, match=r"OptunaSweeperImpl\._get_directions"):
        optuna_directions(object())


def test_neptune_still_lets_a_later_process_add_fields_that_sync_with_an_offline_run(tmp_path, monkeypatch):
    import json

    import neptune
    from neptune.cli.collect import collect_offline_containers

    from transferlab.compat.neptune import append_to_offline_run
    from transferlab.tracking.neptune_tracker import NO_CAPTURE

    monkeypatch.chdir(tmp_path)
    run = neptune.init_run(mode="offline", **NO_CAPTURE)
    run["results/accuracy"] = 0.5
    run_id = run.get_url().removeprefix("offline/")
    run.stop()
    append_to_offline_run(run_id, {"export/onnx/max_abs_diff": 1e-7, "export/onnx/runtime": "onnxruntime"})
    (container,) = collect_offline_containers(path=tmp_path / ".neptune")  # what `neptune sync` uploads as one run
    assert str(container.container_id) == run_id and len(container.execution_dirs) == 2
    ops = [json.loads(line)["obj"] for d in container.execution_dirs for line in (d.path / "data-1.log").read_text().splitlines()]
    values = {"/".join(op["path"]): op.get("value") for op in ops}
    assert values["results/accuracy"] == 0.5 and values["export/onnx/max_abs_diff"] == 1e-7
    assert values["export/onnx/runtime"] == "onnxruntime"


def test_a_neptune_without_the_offline_processor_is_one_line(monkeypatch):
    from transferlab.compat.neptune import append_to_offline_run

    hide_modules(monkeypatch, "neptune.internal.operation_processors")
    with pytest.raises(UpstreamChangedError, match=r"has no OfflineOperationProcessor, .*; use neptune 1\.x$"):
        append_to_offline_run("0", {"a": 1.0})
