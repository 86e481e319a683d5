"""A benchmark's record, and the docs sections rendered from it: no measured number in the docs is typed by hand.

A benchmark run with its documented arguments writes `benchmarks/results/<script>.json` (its results,
the machine, the package versions, the date and how long it took) and rewrites every section of
README.md and docs/*.md between `<!-- <script>:start -->` and `<!-- <script>:end -->` (or
`<!-- <script>:<part>:start -->` ... `<!-- <script>:<part>:end -->`) from that record alone; with
`--render` it only rewrites them from the record. tests/test_benchmarks.py checks that every such
section says what its record says, so a hand edit or a stale table fails the tests.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import time
from datetime import date
from importlib import metadata
from pathlib import Path
from typing import Callable, Iterable

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
DOCS = (ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")))
SECTION = re.compile(r"<!-- (?P<name>[\w:]+):start -->\n(?P<body>.*?)\n?<!-- (?P=name):end -->", re.DOTALL)
# How the docs name a package; any other is named as pip names it.
DISPLAY = {"tensorflow": "TensorFlow", "keras": "Keras", "keras-hub": "KerasHub"}

Render = Callable[[dict], dict[str, str]]


def machine(packages: Iterable[str] = ()) -> dict:
    """What the numbers were measured on: the CPU, its cores, the platform and the packages that did the work."""
    cpuinfo = Path("/proc/cpuinfo")
    models = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
              if line.startswith("model name")] if cpuinfo.is_file() else []
    return {
        "cpu": models[0] if models else platform.processor(), "cores": os.cpu_count(),
        "platform": platform.platform(), "python": platform.python_version(),
        "packages": {name: metadata.version(name) for name in ("tensorflow", "keras", *packages)},
    }


def stamp(results: dict, started: float, packages: Iterable[str] = ()) -> dict:
    """The results as a record: the machine, the date and the benchmark's duration (from `started`, a perf_counter) first."""
    return {"machine": machine(packages), "date": date.today().isoformat(),
            "duration_s": round(time.perf_counter() - started), **results}


def path(script: str) -> Path:
    return RESULTS / f"{script}.json"


def read(script: str) -> dict:
    return json.loads(path(script).read_text())


def sections(text: str) -> dict[str, str]:
    """Every marked section of a page: name -> what lies between its markers."""
    return {found["name"]: found["body"] for found in SECTION.finditer(text)}


def owner(section: str) -> str:
    """The benchmark that renders a section: the name's part before the first colon."""
    return section.split(":", 1)[0]


def render_docs(script: str, render: Render, record: dict | None = None) -> list[Path]:
    """Rewrite every section `script` renders, in every page that has it, from its record."""
    rendered = render(record if record is not None else read(script))
    found, changed = set(), []
    for doc in DOCS:
        text = doc.read_text()
        found |= sections(text).keys() & rendered.keys()
        new = SECTION.sub(lambda m: f"<!-- {m['name']}:start -->\n{rendered[m['name']]}\n<!-- {m['name']}:end -->"
                          if m["name"] in rendered else m.group(0), text)
        if new != text:
            doc.write_text(new)
            changed.append(doc)
    if missing := sorted(rendered.keys() - found):
        raise SystemExit(f"error: no page has the section(s) {', '.join(missing)} that {script}.py renders; "
                         f"add <!-- {missing[0]}:start --> and <!-- {missing[0]}:end --> where it belongs")
    return changed


def number(value: float | None, digits: int = 3) -> str:
    """A table cell: the value to `digits` places, or a dash where the record has none."""
    return "—" if value is None else f"{value:.{digits}f}"


def measured_by(script: str, record: dict) -> str:
    """Which command measured the record, when, how long it took, and on what."""
    m = record["machine"]
    packages = ", ".join(f"{DISPLAY.get(name, name)} {version}" for name, version in m["packages"].items())
    minutes = record["duration_s"] / 60
    took = f"{minutes:.0f} min" if minutes >= 1.5 else f"{record['duration_s']} s"
    return (f"Measured by `python benchmarks/{script}.py` on {record['date']} (the whole benchmark took {took}): "
            f"{m['cpu']}, {m['cores']} cores, {packages}.")


def add_render_option(parser: argparse.ArgumentParser, script: str) -> None:
    parser.add_argument("--render", action="store_true",
                        help=f"measure nothing: rewrite the docs from {path(script).relative_to(ROOT)}")


def documented(parser: argparse.ArgumentParser, args: argparse.Namespace, ignore: Iterable[str] = ()) -> bool:
    """Whether every argument is its default: only such a run is the one the docs describe, and recorded."""
    return all(value == parser.get_default(name) for name, value in vars(args).items() if name not in ignore)


def save(script: str, record: dict, render: Render) -> None:
    """Write the record, then the docs from it."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path(script).write_text(json.dumps(record, indent=2, default=str) + "\n")
    pages = render_docs(script, render, record)
    print(f"wrote {path(script).relative_to(ROOT)}" + "".join(f", {p.relative_to(ROOT)}" for p in pages))
