"""The guarded home of Neptune's private offline writer: fields added to an offline run that has ended.

Neptune keeps an offline run in `.neptune/offline/run__<id>__<pid>__<suffix>/`, one folder per process,
and `neptune sync` uploads every folder of one id as one run (as it does for the processes of a
distributed job). The public client cannot reopen an offline run (`with_id` needs a server), so a later
process (`transferlab export`) writes its fields through the same processor a run uses, under the run's
id. Checked against neptune 1.x when used; `tests/test_compat.py` fails when an installed client moves it.
"""

from __future__ import annotations

import threading
from importlib import metadata

from transferlab.errors import UpstreamChangedError


def append_to_offline_run(run_id: str, fields: dict[str, float | str]) -> None:
    """Add `fields` ("a/b/c": value) to the offline run `run_id`, under `.neptune/` of the working directory."""
    try:
        from neptune.internal.container_type import ContainerType
        from neptune.internal.id_formats import UniqueId
        from neptune.internal.operation import AssignFloat, AssignString
        from neptune.internal.operation_processors.offline_operation_processor import OfflineOperationProcessor
    except ImportError as exc:
        raise UpstreamChangedError(
            f"this neptune ({metadata.version('neptune')}) has no OfflineOperationProcessor, which adds an export's "
            "summary to an offline run; use neptune 1.x"
        ) from exc
    processor = OfflineOperationProcessor(UniqueId(run_id), ContainerType.RUN, threading.RLock())
    try:
        for path, value in fields.items():
            kind = AssignString if isinstance(value, str) else AssignFloat
            processor.enqueue_operation(kind(path.split("/"), value), wait=False)
    finally:
        processor.stop()
