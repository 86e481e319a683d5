"""The benchmarks still run, at their smallest scale, and their shared ratios are computed side by side."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

from timing import paired, samples, timed  # noqa: E402


def run(script: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")]))}
    return subprocess.run([sys.executable, str(BENCHMARKS / script), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def test_ratios_pair_each_sample_with_the_one_measured_beside_it():
    assert paired([2.0, 3.0, 8.0], [1.0, 2.0, 4.0]) == "2.00x / 1.50x / 2.00x  (median 2.00x)"
    assert paired([1.0], [4.0]) == "0.25x"
    assert samples([1.234, 5.0]) == "1.23 / 5.00"
    result, seconds = timed(sorted, [3, 1, 2])
    assert result == [1, 2, 3] and 0 <= seconds < 5


def test_the_vectors_benchmark_runs_at_a_small_scale():
    done = run("vectors.py", "--words", "3000", "--dim", "20", "--vocabulary", "500")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "3,000 words x 20-d" in done.stdout


@pytest.mark.skipif(not (ROOT.parent / "shared" / "data" / "sentiment" / "sentiment.csv").is_file(),
                    reason="the shared sentences are not beside the checkout")
def test_the_text_bases_benchmark_runs_its_glove_and_tfidf_rows_at_a_small_scale():
    done = run("text_bases.py", "--methods", "glove_bilstm,tfidf", "--sentences", "100", "--glove-epochs", "1")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "| GloVe 6B 50-d" in done.stdout and "| TF-IDF" in done.stdout and "wrote" not in done.stdout


@pytest.mark.parametrize("script", ["overhead.py", "phase1.py", "readme_figures.py", "text_bases.py"])
def test_each_benchmark_imports_its_helpers_and_describes_itself(script):
    done = run(script, "--help")
    assert done.returncode == 0 and "usage:" in done.stdout, done.stderr[-2000:]


def test_the_docs_text_bases_table_is_the_recorded_results():
    """docs/benchmarks.md's text-bases table is rendered from benchmarks/results/text_bases.json, never typed."""
    import importlib.util
    import json

    spec = importlib.util.spec_from_file_location("text_bases", BENCHMARKS / "text_bases.py")
    text_bases = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(text_bases)
    recorded = json.loads(text_bases.RESULTS.read_text())
    assert text_bases.docs_block(text_bases.DOCS.read_text()) == text_bases.table(recorded)
