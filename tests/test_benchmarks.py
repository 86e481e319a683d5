"""The benchmarks still run, at their smallest scale, their shared ratios are computed side by side, and
every number they put in the docs is what their record says."""

from __future__ import annotations

import argparse
import importlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import records  # noqa: E402
from timing import paired, samples, span, timed  # noqa: E402

SCRIPTS = sorted(p.stem for p in BENCHMARKS.glob("*.py") if 'if __name__ == "__main__":' in p.read_text())


def run(script: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")]))}
    return subprocess.run([sys.executable, str(BENCHMARKS / script), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def test_ratios_pair_each_sample_with_the_one_measured_beside_it():
    assert paired([2.0, 3.0, 8.0], [1.0, 2.0, 4.0]) == "2.00x / 1.50x / 2.00x  (median 2.00x)"
    assert paired([1.0], [4.0]) == "0.25x"
    assert samples([1.234, 5.0]) == "1.23 / 5.00"
    assert span([5.61, 5.44, 5.58], unit="s") == "5.4–5.6 s" and span([0.104, 0.1401], unit="ms") == "0.10–0.14 ms"
    assert span([1.12, 1.08], 1) == "1.1" and span([1712.0, 2875.4]) == "1,712–2,875"
    result, seconds = timed(sorted, [3, 1, 2])
    assert result == [1, 2, 3] and 0 <= seconds < 5


def test_the_vectors_benchmark_runs_at_a_small_scale():
    done = run("vectors.py", "--words", "3000", "--dim", "20", "--vocabulary", "500")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "3,000 words x 20-d" in done.stdout
    assert "wrote" not in done.stdout, "only a run with the documented arguments is recorded"


@pytest.mark.skipif(not (ROOT.parent / "shared" / "data" / "sentiment" / "sentiment.csv").is_file(),
                    reason="the shared sentences are not beside the checkout")
def test_the_text_bases_benchmark_runs_its_glove_and_tfidf_rows_at_a_small_scale():
    done = run("text_bases.py", "--methods", "glove_bilstm,tfidf", "--sentences", "100", "--glove-epochs", "1")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "| GloVe 6B 50-d" in done.stdout and "| TF-IDF" in done.stdout and "wrote" not in done.stdout


@pytest.mark.parametrize("script", SCRIPTS)
def test_each_benchmark_imports_its_helpers_and_describes_itself(script):
    done = run(f"{script}.py", "--help")
    assert done.returncode == 0 and "usage:" in done.stdout, done.stderr[-2000:]


def benchmark_sections() -> dict[str, list[tuple[str, str, str]]]:
    """Every marked section of README.md and docs/*.md that a benchmark renders: script -> [(page, section, text)]."""
    found: dict[str, list[tuple[str, str, str]]] = {}
    for doc in records.DOCS:
        for name, body in records.sections(doc.read_text()).items():
            if records.owner(name) in SCRIPTS:
                found.setdefault(records.owner(name), []).append((str(doc.relative_to(ROOT)), name, body))
    return found


SECTIONS = benchmark_sections()


@pytest.mark.parametrize("script", sorted(SECTIONS.keys() | {p.stem for p in records.RESULTS.glob("*.json")}))
def test_every_rendered_section_in_the_docs_is_what_its_record_renders(script):
    """A number typed into a rendered section, or a record changed without rendering, fails here."""
    assert records.path(script).is_file(), f"the docs have {script}'s sections but there is no record; run benchmarks/{script}.py"
    rendered = importlib.import_module(script).render(records.read(script))
    shown = SECTIONS.get(script, [])
    assert {name for _, name, _ in shown} == set(rendered), f"the docs' {script} sections are not those {script}.py renders"
    for page, name, body in shown:
        assert body == rendered[name], f"{page}'s {name} section differs from its record; run python benchmarks/{script}.py --render"


@pytest.mark.parametrize("page", ["README.md", "docs/benchmarks.md"])
def test_a_page_of_measurements_quotes_no_time_or_ratio_outside_a_rendered_section(page):
    """Where the measured numbers live, one typed beside the rendered sections would drift unseen."""
    text = (ROOT / page).read_text()
    for body in records.sections(text).values():
        text = text.replace(body, "")
    typed = re.findall(r"\b\d[\d,.]*\s?(?:ms|s|min|minutes?|seconds?|hours?|x)\b(?!\d)", text)
    assert not typed, f"{page} quotes {typed} outside its rendered sections: render it from a benchmark's record, or drop it"


def test_the_readme_figures_record_holds_every_arm_and_seed_the_script_runs():
    figures = importlib.import_module("readme_figures")
    runs = records.read("readme_figures")["runs"]
    assert {(r["arm"], r["seed"]) for r in runs} == {(a, s) for a in figures.ARMS for s in figures.SEEDS}


def test_render_rewrites_only_the_sections_it_renders_and_names_a_missing_one(tmp_path, monkeypatch):
    page = tmp_path / "page.md"
    page.write_text("intro 1.0\n<!-- demo:start -->\nold 2.0\n<!-- demo:end -->\n<!-- other:start -->\nkept 3.0\n<!-- other:end -->\n"
                    "<!-- demo:part:start -->\n<!-- demo:part:end -->\n")
    monkeypatch.setattr(records, "DOCS", (page,))
    assert records.render_docs("demo", lambda r: {"demo": f"new {r['x']}", "demo:part": "filled"}, {"x": 4.0}) == [page]
    assert records.sections(page.read_text()) == {"demo": "new 4.0", "other": "kept 3.0", "demo:part": "filled"}
    assert page.read_text().startswith("intro 1.0\n")
    with pytest.raises(SystemExit, match="no page has the section.*demo:absent"):
        records.render_docs("demo", lambda r: {"demo:absent": "x"}, {})


def test_only_a_run_with_every_argument_at_its_default_is_recorded():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--preset", default=None)
    assert records.documented(parser, parser.parse_args([]))
    assert not records.documented(parser, parser.parse_args(["--rounds", "1"]))
    assert records.documented(parser, parser.parse_args(["--preset", "here"]), ignore=("preset",))
