"""What every benchmark here measures with: timed calls and commands, and ratios of samples taken side by side.

Two shared cores drift by tens of percent within minutes, so a benchmark reports each sample over
the one measured beside it in the same run, never against a number from another run.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, TypeVar

T = TypeVar("T")


def timed(fn: Callable[..., T], *args) -> tuple[T, float]:
    """`fn(*args)` and the seconds it took."""
    start = time.perf_counter()
    result = fn(*args)
    return result, time.perf_counter() - start


def timed_command(command: list[str], env: dict, cwd: Path) -> float:
    """Seconds a command took; a failing command ends the benchmark with its error."""
    start = time.perf_counter()
    result = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"{' '.join(command[:3])} failed:\n{result.stderr[-3000:]}")
    return elapsed


def samples(values: list[float]) -> str:
    return " / ".join(f"{v:.2f}" for v in values)


def paired(numerators: list[float], denominators: list[float]) -> str:
    """Each sample over the one measured beside it, and their median."""
    ratios = [n / d for n, d in zip(numerators, denominators, strict=True)]
    median = sorted(ratios)[len(ratios) // 2]
    return " / ".join(f"{r:.2f}x" for r in ratios) + (f"  (median {median:.2f}x)" if len(ratios) > 1 else "")
