"""TensorFlow's start-up without its C++ chatter on the terminal.

TensorFlow 2.21 logs through absl before it reads `TF_CPP_MIN_LOG_LEVEL`: oneDNN notes, CUDA probes
and, on a machine without a GPU, "failed call to cuInit". Those lines on stderr bury the one line
of a real error. They are caught while TensorFlow loads and finds its devices; any other line is
passed on, and every line goes to the debug log.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import tempfile

log = logging.getLogger(__name__)

# absl's prefix (severity, date, time, thread) on an info or warning line, its notice that it is not
# initialised, and the error a machine without a GPU always gets.
CHATTER = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|[IW]\d{4} [\d:.]+ +\d+ \S+\] .*"
    r"|E\d{4} [\d:.]+ +\d+ cuda_\w+\.cc:\d+\] failed call to cuInit: .*)$"
)


def import_tensorflow() -> None:
    """Import TensorFlow and list its devices once, keeping its start-up chatter off stderr."""
    if "tensorflow" in sys.modules:
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            import tensorflow as tf

            tf.config.list_physical_devices()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            _pass_on(sink.read().decode(errors="replace"))


def _pass_on(captured: str) -> None:
    for line in captured.splitlines():
        log.debug("tensorflow: %s", line)
        if line.strip() and not CHATTER.match(line):
            print(line, file=sys.stderr)
