"""What every benchmark here measures with: timed calls and commands, and ratios of samples taken side by side.

Two shared cores drift by tens of percent within minutes, so a benchmark reports each sample over
the one measured beside it in the same run, never against a number from another run.
"""

from __future__ import annotations

import subprocess
import sys
import time
from statistics import median
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


def samples(values: list[float], digits: int = 2) -> str:
    return " / ".join(f"{v:.{digits}f}" for v in values)


def ratios(numerators: list[float], denominators: list[float]) -> list[float]:
    """Each sample over the one measured beside it."""
    return [n / d for n, d in zip(numerators, denominators, strict=True)]


def paired(numerators: list[float], denominators: list[float]) -> str:
    """Each sample over the one measured beside it, and their median."""
    each = ratios(numerators, denominators)
    return " / ".join(f"{r:.2f}x" for r in each) + (f"  (median {median(each):.2f}x)" if len(each) > 1 else "")


def span(values: list[float], digits: int | None = None, unit: str = "") -> str:
    """The range of the samples (one number when they round alike), e.g. `5.4–5.6 s`.

    Without `digits`: two decimals from a lowest sample below 1, one below 100, none above.
    """
    if digits is None:
        digits = 2 if min(values) < 1 else 1 if min(values) < 100 else 0
    low, high = (f"{v:,.{digits}f}" for v in (min(values), max(values)))
    return (low if low == high else f"{low}–{high}") + (f" {unit}" if unit else "")
