"""Benchmark: loading GloVe-format word vectors for a vocabulary, three ways, side by side in one run.

    python benchmarks/vectors.py                     # 400,000 words x 100-d, a 10,000-word vocabulary: the record
    python benchmarks/vectors.py --words 50000       # a quicker look (printed, not recorded)
    python benchmarks/vectors.py --render            # only rewrite the docs from benchmarks/results/vectors.json

Builds a file the size of glove.6B.100d.txt (each line a word and 100 numbers with 5 decimals), a
vocabulary of which 90% is in the file (spread evenly over it, so no loader can stop early), and
times: the tutorial's loop (every line split into a dictionary of arrays, then the matrix filled),
this project's first load, and its cached load. All three matrices are checked to be equal.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from records import add_render_option, documented, measured_by, render_docs, save, stamp
from timing import timed


def write_glove_file(path: Path, words: int, dim: int, seed: int = 0) -> list[str]:
    """A GloVe-format file; 1,000 distinct rows of numbers cycled, so writing it takes seconds."""
    rng = np.random.default_rng(seed)
    rows = [" ".join(f"{v:.5f}" for v in rng.normal(0, 0.5, dim)) for _ in range(1000)]
    names = [f"w{i}" for i in range(words)]
    with open(path, "w", encoding="utf-8") as out:
        for i, name in enumerate(names):
            out.write(f"{name} {rows[i % len(rows)]}\n")
    return names


def tutorial_loop(path: Path, vocabulary: list[str], dim: int) -> np.ndarray:
    """The widely copied recipe: a dictionary of every word's vector, then the matrix from it."""
    embeddings_index = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            values = line.split()
            embeddings_index[values[0]] = np.asarray(values[1:], dtype="float32")
    matrix = np.zeros((len(vocabulary), dim), dtype="float32")
    for i, word in enumerate(vocabulary):
        vector = embeddings_index.get(word)
        if vector is not None:
            matrix[i] = vector
    return matrix


def measure(args: argparse.Namespace) -> dict:
    """The three loaders' seconds on one generated file and vocabulary, their matrices checked equal."""
    from transferlab.models.vectors import VectorsFile, load_embeddings

    
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"glove.bench.{args.dim}d.txt"
        names = write_glove_file(path, args.words, args.dim)
        covered = names[:: max(1, args.words // int(args.vocabulary * 0.9))][: int(args.vocabulary * 0.9)]
        vocabulary = ["", "[UNK]", *covered, *(f"missing{i}" for i in range(args.vocabulary - 2 - len(covered)))]
        loop, loop_s = timed(tutorial_loop, path, vocabulary, args.dim)
        first, first_s = timed(load_embeddings, VectorsFile(path), args.dim, vocabulary, Path(tmp) / "cache")
        cached, cached_s = timed(load_embeddings, VectorsFile(path), args.dim, vocabulary, Path(tmp) / "cache")
        assert np.array_equal(loop, first.matrix) and np.array_equal(first.matrix, cached.matrix)
        return {"words": args.words, "dim": args.dim, "file_mb": round(path.stat().st_size / 1e6), "vocabulary": len(vocabulary),
                "in_file": len(covered), "coverage": first.coverage,
                "seconds": {"loop": loop_s, "first_load": first_s, "cached_load": cached_s}}


def render(record: dict) -> dict[str, str]:
    """docs/benchmarks.md's vector-loading section."""
    seconds = record["seconds"]
    loop, first, cached = seconds["loop"], seconds["first_load"], seconds["cached_load"]
    rows = [f"| {label} | {seconds[key]:.3g} | {loop / seconds[key]:,.0f}x |" for label, key in (
        ("the tutorial's loop (every line into a dictionary of arrays, then the matrix filled)", "loop"),
        ("this project, first load", "first_load"), ("this project, cached load", "cached_load"))]
    return {"vectors": "\n".join([
        f"A generated file of {record['words']:,} words x {record['dim']}-d ({record['file_mb']:,} MB); a "
        f"{record['vocabulary']:,}-word vocabulary, {record['in_file']:,} of its words in the file, spread over the whole file.",
        "",
        "| loader | seconds | vs the loop |",
        "|---|---|---|",
        *rows,
        "",
        f"Targets: the first load at least 10x faster than the loop ({'met' if loop / first >= 10 else 'missed'}: "
        f"{loop / first:.0f}x), the cached load under 0.5 s ({'met' if cached < 0.5 else 'missed'}). "
        + measured_by("vectors", record),
    ])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--words", type=int, default=400_000)
    parser.add_argument("--dim", type=int, default=100)
    parser.add_argument("--vocabulary", type=int, default=10_000)
    add_render_option(parser, "vectors")
    args = parser.parse_args()
    if args.render:
        render_docs("vectors", render)
        return
    started = time.perf_counter()
    record = stamp(measure(args), started)
    print(render(record)["vectors"])
    if documented(parser, args):
        save("vectors", record, render)


if __name__ == "__main__":
    main()
