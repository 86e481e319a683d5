"""Distribution strategies, worker roles, precision and XLA, on the tiny experiment.

Logical CPU devices and a multi-worker cluster must be set up before TensorFlow starts, so those runs
go through the real entry point in fresh processes; precision and XLA run in this process.
"""

from __future__ import annotations

import inspect
import json
import re
import socket
from concurrent.futures import ThreadPoolExecutor

import pytest
from conftest import compose_config, config_error_line, run_train_script, tiny_overrides

import transferlab
from transferlab.config.convert import to_experiment_config
from transferlab.config.schema import TrainerConfig
from transferlab.errors import ConfigError
from transferlab.training.distribute import worker_role

FINGERPRINT = re.compile(r"final weights fingerprint ([0-9a-f]{16}) \((.+?)\)")
RESULT_FILES = ("model.keras", "best.keras", "summary.json", "history.csv", "checkpoints", "plots", "tensorboard")


def free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def tf_config(ports: list[int], index: int) -> str:
    workers = [f"127.0.0.1:{port}" for port in ports]
    return json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}})


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("trainer.strategy=horovod", "trainer.strategy='horovod' must be one of default, mirrored, multi_worker, tpu"),
        ("trainer.precision=float16", "trainer.precision='float16' must be one of float32, mixed_float16, mixed_bfloat16"),
        ("trainer.logical_cpus=0", "trainer.logical_cpus=0 must be positive or null"),
    ],
)
def test_bad_trainer_values_are_refused_with_the_options(override, message, image_folder, base_weights, tmp_path):
    assert message in config_error_line(tiny_overrides(image_folder, tmp_path / "run", base_weights, override))


def test_bad_strategy_ends_the_command_with_one_line(tmp_path):
    result = run_train_script(["trainer.strategy=mirorred", f"paths.output_dir={tmp_path / 'run'}"], cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "error: trainer.strategy='mirorred' must be one of default, mirrored, multi_worker, tpu "
        "(did you mean 'mirrored'?); "
        "fix it in the config or on the command line"
    )


def test_multi_worker_without_tf_config_fails_before_anything_is_written(image_folder, base_weights, tmp_path, monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    cfg = compose_config(tiny_overrides(image_folder, tmp_path / "run", base_weights, "trainer.strategy=multi_worker"))
    with pytest.raises(ConfigError, match="needs the TF_CONFIG environment variable"):
        transferlab.train(cfg)
    assert not (tmp_path / "run").exists()


def test_every_configurable_strategy_has_a_factory():
    from transferlab.config.schema import Strategy
    from transferlab.training.distribute import _STRATEGY_FACTORIES

    assert set(_STRATEGY_FACTORIES) == set(Strategy)


def test_chief_is_the_chief_task_or_worker_zero_without_one():
    multi = TrainerConfig(strategy="multi_worker")
    workers_only = {"cluster": {"worker": ["a:1", "b:1"]}}
    with_chief = {"cluster": {"chief": ["c:1"], "worker": ["a:1", "b:1"]}}

    def role(spec: dict, kind: str, index: int):
        return worker_role(multi, {"TF_CONFIG": json.dumps({**spec, "task": {"type": kind, "index": index}})})

    assert role(workers_only, "worker", 0).chief and not role(workers_only, "worker", 1).chief
    assert role(with_chief, "chief", 0).chief and not role(with_chief, "worker", 0).chief
    assert role(with_chief, "worker", 1).workers == 3 and role(with_chief, "worker", 1).task == "worker:1"
    assert worker_role(TrainerConfig(strategy="mirrored"), {}).chief


def test_resume_is_refused_for_multi_worker(image_folder, base_weights, tmp_path):
    overrides = tiny_overrides(image_folder, tmp_path / "run", base_weights, "trainer.strategy=multi_worker", "resume=true")
    with pytest.raises(ConfigError, match="not supported with trainer.strategy=multi_worker"):
        to_experiment_config(compose_config(overrides))


def test_shim_targets_are_the_upstream_functions_it_was_written_for():
    """Fails when Keras changes what the multi-worker shim replaces: re-check keras-team/keras#20585 then."""
    from keras.src.backend.tensorflow import trainer

    from transferlab.compat import keras as keras_compat

    assert keras_compat.keras_version()[:2] in keras_compat.VERIFIED_VERSIONS, (
        f"keras {keras_compat.keras_version()} is new: check whether {keras_compat.ISSUE} is fixed, then drop "
        "or re-verify the shim and update VERIFIED_VERSIONS and UPSTREAM_SOURCE_SHA256"
    )
    assert keras_compat.changed_upstream_functions() == [], (
        f"keras changed the functions the multi-worker shim replaces; re-read them against {keras_compat.ISSUE}"
    )
    assert str(inspect.signature(trainer.TensorFlowTrainer._maybe_symbolic_build)) == "(self, iterator=None, data_batch=None)"
    assert str(inspect.signature(trainer.reduce_per_replica)) == "(values, strategy, reduction)"
    assert callable(trainer._collective_all_reduce_multi_worker)
    assert callable(trainer.TensorFlowTrainer._symbolic_build)


def test_shim_runs_unpatched_on_a_newer_keras_and_refuses_changed_upstream_code(monkeypatch, caplog):
    from transferlab.compat import keras as keras_compat
    from transferlab.errors import TrainingError

    patched = []
    monkeypatch.setattr(keras_compat, "_patch", lambda: patched.append(True))
    monkeypatch.setattr(keras_compat, "_installed", False)
    monkeypatch.setattr(keras_compat, "keras_version", lambda: (3, 16, 0))
    assert keras_compat.install_multi_worker_shim() is False
    assert "not a version the multi-worker shim" in caplog.text and keras_compat.ISSUE in caplog.text
    monkeypatch.setattr(keras_compat, "keras_version", lambda: (3, 15, 9))
    monkeypatch.setitem(keras_compat.UPSTREAM_SOURCE_SHA256, "reduce_per_replica", "0" * 64)
    with pytest.raises(TrainingError, match=r"changed reduce_per_replica; use keras 3\.15\.1"):
        keras_compat.install_multi_worker_shim()
    assert patched == []


def test_tpu_strategy_without_a_tpu_is_a_clear_error(monkeypatch):
    from transferlab.training.distribute import start_distribution

    monkeypatch.setenv("TPU_NAME", "local")  # a TPU VM's own TPU; connecting to it is a no-op without one
    with pytest.raises(ConfigError, match=r"^trainer.strategy=tpu found no TPU at 'local' \(.+\); run on a TPU VM"):
        start_distribution(TrainerConfig(strategy="tpu"))


def test_mirrored_over_two_logical_cpus_trains_end_to_end(image_folder, base_weights, tmp_path):
    out = tmp_path / "run"
    args = tiny_overrides(image_folder, out, base_weights, "trainer.strategy=mirrored", "trainer.logical_cpus=2",
                          "schedule.head.epochs=1", "schedule.fine_tune.epochs=1")
    result = run_train_script(args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["epochs"] == 2
    distribution = summary["environment"]["distribution"]
    assert (distribution["strategy"], distribution["replicas"], distribution["precision"]) == ("mirrored", 2, "float32")
    # The head phase trained on cached features, and each test image was predicted once, not once per replica.
    assert summary["phases"]["head"]["feature_extraction_s"] > 0
    assert sum(map(sum, summary["confusion_matrix"])) == summary["counts"]["test"] == 8
    assert "baseline/test_accuracy" in summary["metrics"] and (out / "model.keras").is_file()


def test_two_workers_end_with_identical_weights_and_only_the_chief_keeps_results(image_folder, base_weights, tmp_path):
    ports = free_ports(2)
    runs = [tmp_path / f"worker{i}" for i in range(2)]

    def launch(index: int):
        cwd, scratch = runs[index], runs[index] / "tmp"
        scratch.mkdir(parents=True)
        args = tiny_overrides(
            image_folder, cwd / "out", base_weights, "trainer.strategy=multi_worker", "schedule.head.epochs=1",
            "schedule.fine_tune.epochs=1", "baseline.estimator=null", "logger=none",
        )
        return run_train_script(args, cwd=cwd, env={"TF_CONFIG": tf_config(ports, index), "TMPDIR": str(scratch)}, timeout=300)

    with ThreadPoolExecutor(2) as pool:
        chief, other = pool.map(launch, range(2))
    assert chief.returncode == 0 and other.returncode == 0, (chief.stderr[-2000:], other.stderr[-2000:])
    logged = {task: fp for fp, task in FINGERPRINT.findall(chief.stdout + chief.stderr + other.stdout + other.stderr)}
    assert set(logged) == {"worker:0", "worker:1"}
    summary = json.loads((runs[0] / "out" / "summary.json").read_text())
    assert summary["environment"]["distribution"]["weights_fingerprint"] == logged["worker:0"] == logged["worker:1"]
    assert summary["environment"]["distribution"]["multi_worker_shim"] is True
    assert summary["environment"]["distribution"]["replicas"] == summary["environment"]["distribution"]["workers"] == 2
    assert all((runs[0] / "out" / name).exists() for name in RESULT_FILES[:5])
    # The non-chief wrote no results: only Hydra's own files and its log; its scratch folder is gone.
    assert not any((runs[1] / "out" / name).exists() for name in RESULT_FILES)
    assert list((runs[1] / "tmp").iterdir()) == []
    written = [path for path in runs[1].rglob("*") if path.is_file()]
    assert written and all(path.parent.name == ".hydra" or path.name == "train.log" for path in written), written


def test_mixed_float16_trains_and_saves_a_model_with_float32_outputs(image_folder, base_weights, tmp_path):
    import keras
    import numpy as np
    from keras.src.backend.tensorflow import trainer

    from transferlab.compat import keras as keras_compat
    from transferlab.models.saved import load_trained_model

    out = tmp_path / "run"
    cfg = compose_config(tiny_overrides(image_folder, out, base_weights, "trainer.precision=mixed_float16"))
    summary = transferlab.train(cfg)
    assert summary.status == "completed" and np.isfinite(summary.metrics["test/loss"])
    assert summary.environment["distribution"]["precision"] == "mixed_float16"
    assert keras.config.dtype_policy().name == "float32", "the run must not leave its policy behind"
    model = load_trained_model(str(out / "model.keras"))
    assert model.get_layer("base").get_layer("block1_conv").dtype_policy.name == "mixed_float16"
    assert model.get_layer("head_output").compute_dtype == "float32"
    logits = model.predict_on_batch(np.full((2, 16, 16, 3), 128.0, "float32"))
    assert logits.dtype == np.float32 and np.isfinite(logits).all()
    # Only multi_worker installs the shim.
    assert trainer.reduce_per_replica is keras_compat.upstream_functions()["reduce_per_replica"]


def test_jit_compile_reaches_keras_compile():
    from transferlab.config.schema import BaseModelConfig, HeadConfig, OptimizerConfig
    from transferlab.models.heads import TaskSpec
    from transferlab.models.image import build_model
    from transferlab.training.optimizers import compile_model

    task = TaskSpec((16, 16), 3)
    model = build_model(BaseModelConfig(name="digits_cnn", weights=None), HeadConfig(), task)
    for wanted in (True, False):
        compile_model(model, OptimizerConfig(), 1e-3, task, jit_compile=wanted)
        assert model.jit_compile is wanted


@pytest.mark.slow
def test_jit_compile_trains_with_xla(image_folder, base_weights, tmp_path):
    from transferlab.models.saved import load_trained_model

    out = tmp_path / "run"
    overrides = tiny_overrides(image_folder, out, base_weights, "trainer.jit_compile=true", "schedule.head.epochs=0",
                               "schedule.fine_tune.epochs=1", "baseline.estimator=null", "logger=none")
    summary = transferlab.train(compose_config(overrides))
    assert summary.status == "completed" and summary.environment["distribution"]["jit_compile"] is True
    assert load_trained_model(str(out / "model.keras")).jit_compile is True
