"""Benchmark: loading GloVe-format word vectors for a vocabulary, three ways, side by side in one run.

    python benchmarks/vectors.py                     # 400,000 words x 100-d, a 10,000-word vocabulary
    python benchmarks/vectors.py --words 50000       # a quicker look

Builds a file the size of glove.6B.100d.txt (each line a word and 100 numbers with 5 decimals), a
vocabulary of which 90% is in the file (spread evenly over it, so no loader can stop early), and
times: the tutorial's loop (every line split into a dictionary of arrays, then the matrix filled),
this project's first load, and its cached load. All three matrices are checked to be equal.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
from timing import timed

from transferlab.models.vectors import VectorsFile, load_embeddings


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--words", type=int, default=400_000)
    parser.add_argument("--dim", type=int, default=100)
    parser.add_argument("--vocabulary", type=int, default=10_000)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"glove.bench.{args.dim}d.txt"
        names, write_s = timed(write_glove_file, path, args.words, args.dim)
        covered = names[:: max(1, args.words // int(args.vocabulary * 0.9))][: int(args.vocabulary * 0.9)]
        vocabulary = ["", "[UNK]", *covered, *(f"missing{i}" for i in range(args.vocabulary - 2 - len(covered)))]
        print(f"vectors file: {args.words:,} words x {args.dim}-d, {path.stat().st_size / 1e6:.0f} MB (written in {write_s:.1f}s); "
              f"vocabulary {len(vocabulary):,} words, {len(covered):,} in the file")

        loop, loop_s = timed(tutorial_loop, path, vocabulary, args.dim)
        first, first_s = timed(load_embeddings, VectorsFile(path), args.dim, vocabulary, Path(tmp) / "cache")
        cached, cached_s = timed(load_embeddings, VectorsFile(path), args.dim, vocabulary, Path(tmp) / "cache")
        assert np.array_equal(loop, first.matrix) and np.array_equal(first.matrix, cached.matrix)

    print(f"{'loader':<28}{'seconds':>9}{'vs loop':>10}")
    for name, seconds in (("tutorial loop + matrix fill", loop_s), ("transferlab, first load", first_s),
                          ("transferlab, cached load", cached_s)):
        print(f"{name:<28}{seconds:>9.3f}{loop_s / seconds:>9.1f}x")
    print(f"coverage {first.coverage:.3f}; targets: first load >= 10x faster than the loop "
          f"({'met' if loop_s / first_s >= 10 else 'missed'}), cached load < 0.5 s ({'met' if cached_s < 0.5 else 'missed'})")


if __name__ == "__main__":
    main()
