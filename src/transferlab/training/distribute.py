"""Where and how precisely the model trains: the tf.distribute strategy, its devices, the dtype policy.

`dataset.batch_size` is the global batch: each step takes that many images and the strategy splits
them across its replicas (8 images on 2 replicas: 4 each), and Keras scales the loss so the gradient
is the global batch's mean, as on one device. The learning rates therefore need no change when the
number of replicas does.

In a multi-worker cluster every worker runs the same command and takes the same steps; only the
chief keeps results (`is_chief`). TensorFlow is imported inside functions: `worker_role` is read
before TensorFlow starts, and the devices must be configured before TensorFlow runs anything.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterator, Mapping

from transferlab.config.schema import TrainerConfig
from transferlab.errors import ConfigError, first_line

if TYPE_CHECKING:
    import keras
    import tensorflow as tf

log = logging.getLogger(__name__)

TF_CONFIG = "TF_CONFIG"


@dataclass(frozen=True)
class WorkerRole:
    """This process's place in the cluster; a single process is its own chief."""

    chief: bool = True
    task: str = ""  # "worker:1", "chief:0"; empty outside a cluster
    workers: int = 1


@dataclass(frozen=True)
class Distribution:
    strategy: "tf.distribute.Strategy"
    name: str
    precision: str
    jit_compile: bool
    role: WorkerRole
    shim: bool = False  # the keras-team/keras#20585 compatibility shim is installed

    @property
    def replicas(self) -> int:
        return int(self.strategy.num_replicas_in_sync)

    def info(self) -> dict[str, object]:
        """What summary.json and the trackers record about how the run was spread and computed."""
        return {
            "strategy": self.name,
            "replicas": self.replicas,
            "workers": self.role.workers,
            "task": self.role.task,
            "precision": self.precision,
            "jit_compile": self.jit_compile,
            "multi_worker_shim": self.shim,
        }

    @contextmanager
    def scope(self) -> Iterator[None]:
        """Variables created inside are mirrored and layers compute in the configured precision."""
        import keras

        previous = keras.config.dtype_policy()
        keras.config.set_dtype_policy(self.precision)
        try:
            with self.strategy.scope():
                yield
        finally:
            keras.config.set_dtype_policy(previous)


def worker_role(trainer: TrainerConfig, environ: Mapping[str, str] = os.environ) -> WorkerRole:
    """Chief or not, from TF_CONFIG: the `chief` task, or worker 0 when the cluster names no chief."""
    if trainer.strategy != "multi_worker":
        return WorkerRole()
    example = '{"cluster": {"worker": ["host1:12345", "host2:12345"]}, "task": {"type": "worker", "index": 0}}'
    if TF_CONFIG not in environ:
        raise ConfigError(
            f"trainer.strategy=multi_worker needs the {TF_CONFIG} environment variable naming the cluster and "
            f"this worker's task, e.g. {TF_CONFIG}='{example}'"
        )
    try:
        tf_config = json.loads(environ[TF_CONFIG])
        cluster, task = tf_config["cluster"], tf_config["task"]
        kind, index = task["type"], int(task.get("index", 0))
    except KeyError as exc:
        raise ConfigError(f"{TF_CONFIG} has no {exc} entry; it needs 'cluster' and 'task', e.g. '{example}'") from None
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{TF_CONFIG} is not valid JSON ({exc}); see the README's multi-worker example") from None
    chief = kind == "chief" or (kind == "worker" and index == 0 and "chief" not in cluster)
    workers = len(cluster.get("chief", [])) + len(cluster.get("worker", []))
    return WorkerRole(chief=chief, task=f"{kind}:{index}", workers=workers)


def start_distribution(trainer: TrainerConfig) -> Distribution:
    """Devices, strategy and precision; call before TensorFlow runs anything, which fixes the devices."""
    split_cpu(trainer.logical_cpus)
    strategy = _STRATEGY_FACTORIES[trainer.strategy]()
    shim = False
    if trainer.strategy == "multi_worker":
        from transferlab.compat.keras import install_multi_worker_shim

        shim = install_multi_worker_shim()
    distribution = Distribution(strategy, str(trainer.strategy), str(trainer.precision), trainer.jit_compile, worker_role(trainer), shim)
    log.info("distribution: %s", distribution.info())
    return distribution


def check_global_batch(batch_size: int, distribution: Distribution) -> None:
    """Every replica needs at least one image of each step."""
    if batch_size < distribution.replicas:
        raise ConfigError(
            f"dataset.batch_size={batch_size} is the global batch, split across {distribution.replicas} replicas "
            f"of trainer.strategy={distribution.name}; use at least {distribution.replicas}"
        )


def split_cpu(logical_cpus: int | None) -> None:
    """Present the CPU as `logical_cpus` devices, so a mirrored strategy has replicas without GPUs."""
    if logical_cpus is None:
        return
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    current = tf.config.get_logical_device_configuration(cpu)
    if current is not None and len(current) == logical_cpus:
        return
    try:
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * logical_cpus)
    except RuntimeError:
        raise ConfigError(
            f"trainer.logical_cpus={logical_cpus} cannot be applied: TensorFlow has already started in this "
            "process; set it on the command line of a new process"
        ) from None


def weights_fingerprint(model: "keras.Model") -> str:
    """Hash of every weight's bytes: equal on every worker after synchronous training."""
    import numpy as np

    digest = hashlib.sha256()
    for weight in model.weights:
        digest.update(np.ascontiguousarray(np.asarray(weight)).tobytes())
    return digest.hexdigest()[:16]


def _default() -> "tf.distribute.Strategy":
    import tensorflow as tf

    return tf.distribute.get_strategy()


def _mirrored() -> "tf.distribute.Strategy":
    import tensorflow as tf

    devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
    return tf.distribute.MirroredStrategy([device.name for device in devices])


def _multi_worker() -> "tf.distribute.Strategy":
    import tensorflow as tf

    return tf.distribute.MultiWorkerMirroredStrategy()


def _tpu() -> "tf.distribute.Strategy":
    import tensorflow as tf

    name = os.environ.get("TPU_NAME", "local")
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=name)
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
    except Exception as exc:  # the resolver and the TPU runtime raise several unrelated types
        raise ConfigError(
            f"trainer.strategy=tpu found no TPU at '{name}' ({first_line(exc)[:200]}); run on a TPU VM or set TPU_NAME "
            "to the TPU's name or grpc:// address"
        ) from None
    return tf.distribute.TPUStrategy(resolver)


_STRATEGY_FACTORIES: dict[str, Callable[[], "tf.distribute.Strategy"]] = {
    "default": _default,
    "mirrored": _mirrored,
    "multi_worker": _multi_worker,
    "tpu": _tpu,
}
