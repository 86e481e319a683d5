"""The guarded home of private Keras APIs: the global seed generator a resume restores, the private
methods `BestModelCheckpoint` and `SavedModelBase` override or call, and a compatibility shim for MultiWorkerMirroredStrategy with `Model.fit` in Keras 3.15 (keras-team/keras#20585).

Keras 3.15's TensorFlow trainer fails before the first step under MultiWorkerMirroredStrategy, in two
places of `keras/src/backend/tensorflow/trainer.py`:

1. `TensorFlowTrainer._maybe_symbolic_build` averages a per-replica *data* batch with
   `strategy.reduce("MEAN", batch, axis=None)` ("Attempt to convert a value (PerReplica...)"); the
   symbolic build only needs shapes and dtypes, so one replica's local batch serves.
2. `reduce_per_replica` reduces scalar metrics with `strategy.reduce("MEAN", v, axis=0)` under
   collective all-reduce ("Invalid reduction dimension 0 for input with 0 dimensions"); `axis=None`
   averages across replicas, as the single-worker branch of the same function does.

The replacements are installed only when `trainer.strategy=multi_worker`, only on the Keras versions
they were verified on, and only while the upstream functions are byte-for-byte the ones they replace
(source hashes below); `tests/test_distribute.py` fails as soon as upstream changes them.
"""

from __future__ import annotations

import hashlib
import inspect
import logging
from importlib import metadata

from transferlab.errors import TrainingError, UpstreamChangedError

log = logging.getLogger(__name__)

ISSUE = "keras-team/keras#20585"
# Keras major.minor versions where the bug was reproduced and the shim verified.
VERIFIED_VERSIONS = ((3, 15),)
# sha256 of `inspect.getsource` of each replaced function, in Keras 3.15.1.
UPSTREAM_SOURCE_SHA256 = {
    "TensorFlowTrainer._maybe_symbolic_build": "92a504f5eba9b29f81f1bf26180bdd5bf5186b06b7bda426534b90d2d02bc1c2",
    "reduce_per_replica": "2e7d54b1e6edc29a8c6a7e6b66cd4c8be3ba7842412c93753ac3afe169fa7fb8",
}

_installed = False
_ORIGINALS: dict[str, object] = {}  # upstream's functions, kept once replaced


def keras_version() -> tuple[int, ...]:
    return tuple(int(part) for part in metadata.version("keras").split(".")[:3] if part.isdigit())


def upstream_functions() -> dict[str, object]:
    """The functions the shim replaces, by the names in UPSTREAM_SOURCE_SHA256 (the originals once installed)."""
    from keras.src.backend.tensorflow import trainer

    return {
        "TensorFlowTrainer._maybe_symbolic_build": _ORIGINALS.get(
            "TensorFlowTrainer._maybe_symbolic_build", trainer.TensorFlowTrainer._maybe_symbolic_build
        ),
        "reduce_per_replica": _ORIGINALS.get("reduce_per_replica", trainer.reduce_per_replica),
    }


def changed_upstream_functions() -> list[str]:
    """Names of replaced functions whose installed source differs from the version the shim was written for."""
    return [
        name for name, function in upstream_functions().items()
        if hashlib.sha256(inspect.getsource(function).encode()).hexdigest() != UPSTREAM_SOURCE_SHA256[name]
    ]


def install_multi_worker_shim() -> bool:
    """Patch the two functions when this Keras is known to need it; True when the shim is active.

    A newer Keras is run unpatched with a warning (it may have fixed the bug); a verified version whose
    functions changed is refused, since patching code we have not read could train wrongly.
    """
    global _installed
    if _installed:
        return True
    version = keras_version()
    if version[:2] not in VERIFIED_VERSIONS:
        log.warning(
            "keras %s is not a version the multi-worker shim (%s) was verified on; running without it. "
            "If fit fails with 'PerReplica' or 'Invalid reduction dimension', use keras 3.15",
            ".".join(map(str, version)), ISSUE,
        )
        return False
    changed = changed_upstream_functions()
    if changed:
        raise TrainingError(
            f"trainer.strategy=multi_worker needs a compatibility shim for {ISSUE}, but this keras "
            f"({'.'.join(map(str, version))}) changed {', '.join(changed)}; use keras 3.15.1 or another strategy"
        )
    _patch()
    _installed = True
    log.info("installed the multi-worker compatibility shim for %s", ISSUE)
    return True


def _patch() -> None:
    from keras.src.backend.tensorflow import trainer

    _ORIGINALS["TensorFlowTrainer._maybe_symbolic_build"] = trainer.TensorFlowTrainer._maybe_symbolic_build
    _ORIGINALS["reduce_per_replica"] = trainer.reduce_per_replica
    trainer.TensorFlowTrainer._maybe_symbolic_build = _maybe_symbolic_build
    # The train, test and predict steps look the function up in the module at call time.
    trainer.reduce_per_replica = _reduce_per_replica


def _maybe_symbolic_build(self, iterator=None, data_batch=None):
    """Upstream's method, building from the first local replica's batch instead of reducing data."""
    import tensorflow as tf
    from keras.src import tree

    if self._distribute_strategy is None:
        return
    if iterator is not None:
        for _, _, it in iterator:
            batch = next(it)
            data_batch = tree.map_structure(
                lambda x: self.distribute_strategy.experimental_local_results(x)[0]
                if isinstance(x, tf.distribute.DistributedValues) else x,
                batch,
            )
            break
    with self.distribute_strategy.scope():
        self._symbolic_build(data_batch=data_batch)


def _reduce_per_replica(values, strategy, reduction):
    """Upstream's function, averaging metrics across replicas (axis=None) under collective all-reduce."""
    from keras.src import tree
    from keras.src.backend.tensorflow import trainer

    if reduction in ("auto", "mean") and trainer._collective_all_reduce_multi_worker(strategy):
        return tree.map_structure(lambda v: strategy.reduce("MEAN", v, axis=None), values)
    return _ORIGINALS["reduce_per_replica"](values, strategy, reduction)


def global_seed_generator():
    """Keras' global SeedGenerator, whose state a resumed run restores (Keras exports no public accessor)."""
    try:
        from keras.src.random.seed_generator import global_seed_generator as upstream
    except ImportError as exc:
        raise TrainingError(
            f"this keras ({'.'.join(map(str, keras_version()))}) has no keras.src.random.seed_generator."
            "global_seed_generator, which checkpoints need for an exact resume; use keras 3.15"
        ) from exc
    return upstream()


# Private methods overridden or called, by owner, with the parameters (after self) they were written against.
PRIVATE_METHODS = {
    ("keras.callbacks.ModelCheckpoint", "_save_model"): ("epoch", "batch", "logs"),
    ("keras.callbacks.ModelCheckpoint", "_should_save_model"): ("epoch", "batch", "logs", "filepath"),
    ("keras.layers.TFSMLayer", "_add_existing_weight"): ("weight",),
    ("keras.layers.TFSMLayer", "_track_variable"): ("variable",),
    ("keras.optimizers.Optimizer", "_get_variable_index"): ("variable",),
}


def require_private_method(owner: str, name: str, needed_for: str) -> None:
    """Fail in one line when a private Keras method is gone or takes other parameters: an override of a
    renamed method would silently never run. `owner` is the public path of its class."""
    import importlib

    module, _, cls = owner.rpartition(".")
    expected = PRIVATE_METHODS[(owner, name)]
    method = getattr(getattr(importlib.import_module(module), cls), name, None)
    found = tuple(inspect.signature(method).parameters)[1:] if callable(method) else None
    if found != expected:
        shown = f"takes {found}" if found is not None else "is gone"
        raise UpstreamChangedError(
            f"this keras ({'.'.join(map(str, keras_version()))}) changed {owner}.{name} (it {shown}, expected "
            f"{expected}), which {needed_for} relies on; use keras 3.15"
        )
