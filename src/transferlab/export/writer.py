"""Export one run's model to one format, verified, written whole or not at all.

The artifact and its export.json are written into `<run>/export/.<format>.writing`; a fresh Python
process loads that folder with the format's own runtime (transferlab.export.verify) and runs the
run's test split through it; only when the outputs match the Keras model's within the tolerance is the
folder renamed to `<run>/export/<format>`. Any failure, a verifier that outlasts its timeout included,
removes the partial folder (and an export/ folder it left empty), so what exists under export/ has
always been loaded back and checked.

A model that reads raw strings goes to ONNX or LiteRT split in two (transferlab.export.text): the model
from token ids, and the tokenizer in `text_inputs.json`, which the verifier runs without TensorFlow on the
raw test texts; every text must get the Keras model's own ids.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from transferlab.atomic import write_json
from transferlab.errors import ModelError, first_line
from transferlab.export.config import ExportConfig, ExportFormat
from transferlab.export.runtime import ARTIFACT_FILES, INSTALL_HINT
from transferlab.export.text_inputs import TEXT_INPUTS_FILE
from transferlab.reporting.model_card import CARD

if TYPE_CHECKING:
    import keras

    from transferlab.export.text import TextSplit

log = logging.getLogger(__name__)

# Keras' name for each format, and the packages its exporter needs.
KERAS_FORMATS = {ExportFormat.saved_model: "tf_saved_model", ExportFormat.onnx: "onnx", ExportFormat.litert: "litert"}
EXPORTER_PACKAGES = {ExportFormat.onnx: ("tf2onnx", "onnx", "onnxruntime"), ExportFormat.litert: ("ai_edge_litert",)}
# The fresh process that loads and runs an artifact (a test stands a hanging one in for it).
VERIFIER = (sys.executable, "-m", "transferlab.export.verify")


def export_run(cfg: ExportConfig, fmt: ExportFormat) -> dict:
    """Export, verify and record one format; returns what export.json holds."""
    from transferlab.compat.tensorflow import import_tensorflow
    from transferlab.predict.run import held_out_examples, load_run, run_config
    from transferlab.tracking.export_summary import log_export_summary

    run_dir = Path(cfg.run_dir)
    experiment = run_config(run_dir)
    check_exporter(fmt)
    import_tensorflow()
    run = load_run(run_dir)
    inputs, labels = held_out_examples(experiment, cfg.max_examples)
    expected = keras_outputs(run.model, inputs, cfg.batch_size)
    split = text_split(run.model, fmt)
    served = split.model if split else run.model
    root = run_dir / "export"
    created_root = not root.exists()
    tmp, final = root / f".{fmt.value}.writing", root / fmt.value
    try:
        shutil.rmtree(tmp, ignore_errors=True)  # a killed export's leftovers
        tmp.mkdir(parents=True)
        write_artifact(served, tmp, fmt, cfg.litert_builtins_only)
        if split:
            write_json(split.settings, tmp / TEXT_INPUTS_FILE)
        outputs, ids, measured = run_verifier(tmp, fmt, inputs, cfg)
        tokenizer = {"tokenizer": split.record(inputs, ids, fmt.value)} if split else {}  # ids checked first
        manifest = {**compare(outputs, expected, labels, fmt, cfg.tolerance), **measured, **tokenizer,
                    **describe(run.model, served, run.class_names, fmt, tmp)}
        write_json(manifest, tmp / "export.json")
        if (run_dir / CARD).is_file():  # the model card travels with the artifact
            shutil.copy2(run_dir / CARD, tmp / CARD)
        replace_folder(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if created_root and root.is_dir() and not any(root.iterdir()):
            root.rmdir()
        raise
    log.info("%s export verified: %s (max abs diff %.2e, accuracy %.4f, %.3f ms per example)", fmt.value, final,
             manifest["max_abs_diff"], manifest["accuracy"], manifest["latency_ms_per_example"])
    log_export_summary(run_dir, experiment.logger, manifest)
    return manifest


def text_split(model: "keras.Model", fmt: ExportFormat) -> "TextSplit | None":
    """For ONNX and LiteRT, a raw-string model's token-id model and tokenizer; None when the model goes whole."""
    from transferlab.export.text import split_text_model

    if fmt is ExportFormat.saved_model or model.inputs[0].dtype != "string":
        return None
    return split_text_model(model, fmt.value)


def check_exporter(fmt: ExportFormat) -> None:
    import importlib.util

    missing = [name for name in EXPORTER_PACKAGES.get(fmt, ()) if importlib.util.find_spec(name) is None]
    if missing:
        raise ModelError(f"format={fmt.value} needs {', '.join(missing)}, which is not installed; {INSTALL_HINT}")


def keras_outputs(model: "keras.Model", inputs: np.ndarray, batch_size: int) -> np.ndarray:
    import tensorflow as tf

    from transferlab.models.saved import inference_function

    forward = inference_function(model)
    return np.concatenate([np.asarray(forward(tf.constant(inputs[i : i + batch_size])), dtype=np.float32)
                           for i in range(0, len(inputs), batch_size)])


def write_artifact(model: "keras.Model", folder: Path, fmt: ExportFormat, builtins_only: bool = False) -> None:
    """Keras 3's own `model.export`; its failure (an op the converter lacks) is one line."""
    import tensorflow as tf

    target = folder / ARTIFACT_FILES[fmt.value] if fmt is not ExportFormat.saved_model else folder
    options = {}
    if fmt is ExportFormat.litert and builtins_only:
        # Keras' LiteRT exporter sets converter attributes from its keyword arguments.
        options["target_spec"] = {"supported_ops": [tf.lite.OpsSet.TFLITE_BUILTINS]}
    try:
        model.export(str(target), format=KERAS_FORMATS[fmt], verbose=False, **options)
    except Exception as exc:  # the converters raise anything from ValueError to ConverterError
        raise ModelError(
            f"Keras cannot export this model to {fmt.value} ({type(exc).__name__}: {first_line(exc)}); "
            "use format=saved_model, or replace the layer the converter names"
        ) from exc


def run_verifier(folder: Path, fmt: ExportFormat, inputs: np.ndarray, cfg: ExportConfig,
                 ) -> tuple[np.ndarray, dict[str, np.ndarray], dict]:
    """The artifact's logits on `inputs` from a fresh process with its own runtime, the token ids it fed a
    text export, and what it measured; ended after `verify_timeout_s`."""
    with tempfile.TemporaryDirectory(prefix="transferlab-export-") as scratch:
        inputs_path, outputs_path = Path(scratch) / "inputs.npy", Path(scratch) / "outputs.npz"
        np.save(inputs_path, inputs)
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
        command = [*VERIFIER, str(folder), fmt.value, str(inputs_path), str(outputs_path), str(cfg.batch_size)]
        try:
            result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=cfg.verify_timeout_s)
        except subprocess.TimeoutExpired:  # run() has killed the verifier
            raise ModelError(
                f"the {fmt.value} verifier did not finish within verify_timeout_s={cfg.verify_timeout_s:g} s (loading or "
                "running the artifact hung); nothing was kept: raise verify_timeout_s for a large model, or use format=saved_model"
            ) from None
        if result.returncode != 0:
            raise ModelError(verifier_error(result.stderr, fmt))
        with np.load(outputs_path) as saved:
            arrays = {name: saved[name] for name in saved.files}
    return arrays.pop("outputs"), arrays, json.loads(result.stdout.strip().splitlines()[-1])


def compare(outputs: np.ndarray, expected: np.ndarray, labels: np.ndarray, fmt: ExportFormat, tolerance: float) -> dict:
    """Refuse an artifact that strays past the tolerance; else its difference and accuracy beside the Keras model's."""
    from transferlab.reporting.evaluation import predicted_classes

    if outputs.shape != expected.shape:
        raise ModelError(f"the {fmt.value} artifact returns shape {outputs.shape}, the Keras model {expected.shape}; "
                         "the export is wrong: use format=saved_model")
    diff = float(np.max(np.abs(outputs - expected))) if len(expected) else 0.0
    if not diff <= tolerance:
        raise ModelError(
            f"the {fmt.value} artifact differs from the Keras model by up to {diff:.3g} on the test split, above "
            f"tolerance={tolerance:g}; use format=saved_model, or raise tolerance= if that difference is acceptable"
        )
    return {
        "format": fmt.value,
        "max_abs_diff": diff,
        "tolerance": tolerance,
        "accuracy": float(np.mean(predicted_classes(outputs) == labels)),
        "keras_accuracy": float(np.mean(predicted_classes(expected) == labels)),
        "examples": int(len(expected)),
    }


def verifier_error(stderr: str, fmt: ExportFormat) -> str:
    """The verifier's own `error:` line, else the last line it printed (a crash of the runtime itself)."""
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    own = [line.removeprefix("error: ") for line in lines if line.startswith("error: ")]
    if own:
        return own[-1]
    return f"the {fmt.value} runtime crashed loading the export ({lines[-1] if lines else 'no message'}); use format=saved_model"


def describe(model: "keras.Model", served: "keras.Model", class_names: list[str], fmt: ExportFormat, folder: Path) -> dict:
    """What a serving host needs to feed the export, and what made it. `input` is what the export takes (raw
    strings for a text model); `model_inputs`, for a text model split from its tokenizer, what the artifact
    itself reads."""
    split = {"model_inputs": {entry.name: _spec(entry) for entry in served.inputs}} if served is not model else {}
    return {
        "artifact": ARTIFACT_FILES[fmt.value],
        "size_bytes": sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and p.name not in ("export.json", CARD)),
        "input": _spec(model.inputs[0]),
        **split,
        "class_names": class_names,
        "versions": {name: _version(name) for name in
                     ("keras", "tensorflow", "tf2onnx", "onnxruntime", "ai-edge-litert", "tokenizers")},
    }


def _spec(entry: "keras.KerasTensor") -> dict:
    return {"shape": list(entry.shape), "dtype": str(entry.dtype)}


def _version(package: str) -> str | None:
    try:
        return version(package)
    except PackageNotFoundError:
        return None


def replace_folder(tmp: Path, final: Path) -> None:
    """Rename the verified folder into place; a previous export is moved aside first, then removed."""
    old = final.with_name(f".{final.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)
