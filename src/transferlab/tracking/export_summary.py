"""An export's summary sent to the trackers the run itself used, as its saved config.yaml names them.

`transferlab export` runs after training, in its own process, so no tracker is open; this reopens what
can take the summary (format, size, max abs diff, accuracy beside the Keras model's, latency, runtime,
and for a text export the tokenizer's identical ids):

- TensorBoard: scalars `<format>/<field>` and a `<format>/summary` text table, in `<run>/tensorboard/export/`;
- Neptune: the fields under `export/<format>/` of the run's Neptune run, its id read from summary.json;
  an offline run gets them in `.neptune/` of the folder `export` runs in, synced with the run by
  `neptune sync` from there (transferlab.compat.neptune); a debug run kept nothing to add to.

A tracker that cannot take the summary is named in one warning; the verified export is kept either way.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from transferlab.tracking.base import describe

if TYPE_CHECKING:
    from transferlab.config.schema import LoggerConfig, NeptuneConfig

log = logging.getLogger(__name__)

# export.json's numbers, as scalars and fields; `runtime` goes along as text.
NUMBERS = ("size_bytes", "max_abs_diff", "accuracy", "keras_accuracy", "latency_ms_per_example", "examples")


def summary_fields(manifest: dict) -> dict[str, float | str]:
    """The summary as flat fields: the numbers, the runtime, and a text export's tokenizer check."""
    fields: dict[str, float | str] = {name: float(manifest[name]) for name in NUMBERS}
    fields["runtime"] = str(manifest["runtime"])
    if "tokenizer" in manifest:
        fields["tokenizer/kind"] = manifest["tokenizer"]["kind"]
        fields["tokenizer/identical_ids"] = float(manifest["tokenizer"]["identical_ids"])
    return fields


def log_export_summary(run_dir: Path, logger: "LoggerConfig", manifest: dict) -> None:
    """Send one format's summary to the run's TensorBoard and Neptune; each failure is a warning only."""
    targets: list[tuple[str, bool, Callable[[], None]]] = [
        ("TensorBoard", logger.tensorboard, lambda: to_tensorboard(run_dir / "tensorboard" / "export", manifest)),
        ("Neptune", logger.neptune is not None, lambda: to_neptune(logger.neptune, run_dir, manifest)),
    ]
    for name, used, send in targets:
        if used:
            try:
                send()
            except Exception as exc:  # a tracker must never undo a verified export
                log.warning("%s did not get the %s export's summary (%s); the export is kept", name,
                            manifest["format"], describe(exc))


def to_tensorboard(log_dir: Path, manifest: dict) -> None:
    import tensorflow as tf

    fmt, fields = manifest["format"], summary_fields(manifest)
    writer = tf.summary.create_file_writer(str(log_dir))
    with writer.as_default():
        for name, value in fields.items():
            if not isinstance(value, str):
                tf.summary.scalar(f"{fmt}/{name}", value, step=0)
        table = "\n".join(["| field | value |", "|---|---|", *(f"| {k} | {v} |" for k, v in fields.items())])
        tf.summary.text(f"{fmt}/summary", table, step=0)
    writer.close()


def to_neptune(cfg: "NeptuneConfig", run_dir: Path, manifest: dict) -> None:
    """Into the run's own Neptune run: reopened on its server (async, sync), or appended to offline."""
    recorded = json.loads((run_dir / "summary.json").read_text()).get("tracking", {}).get("neptune")
    if not recorded:
        raise LookupError("the run's summary.json records no Neptune run to add to")
    fields = {f"export/{manifest['format']}/{name}": value for name, value in summary_fields(manifest).items()}
    if recorded["mode"] == "offline":
        from transferlab.compat.neptune import append_to_offline_run

        append_to_offline_run(recorded["id"].removeprefix("offline/"), fields)
    elif recorded["mode"] in ("async", "sync"):
        from transferlab.tracking.neptune_tracker import reopen_run

        run = reopen_run(cfg, recorded["id"], recorded["mode"])
        try:
            for path, value in fields.items():
                run[path] = value
        finally:
            run.stop()
