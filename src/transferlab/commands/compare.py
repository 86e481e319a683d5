"""Compare runs under a folder: `transferlab compare [outputs] [--sort test/accuracy] [--tag t] [--name n] [--sweep s]`.

Prints the table and writes comparison.csv and comparison.html (table and plots); no tracking service needed.
A run folder whose files cannot be read is listed as unreadable, with the reason, and the others are compared.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from transferlab.commands import OneLineArgumentParser
from transferlab.errors import TransferlabError, fail


def parse_args(argv: list[str] | None, description: str) -> argparse.Namespace:
    parser = OneLineArgumentParser(description=description)
    parser.add_argument("root", nargs="?", default="outputs", type=Path, help="folder holding the runs (default: outputs)")
    parser.add_argument("--sort", help="metric to sort by (default: test/accuracy, else best/val_accuracy, else best/val_loss)")
    order = parser.add_mutually_exclusive_group()
    order.add_argument("--ascending", dest="ascending", action="store_true", default=None, help="smallest first")
    order.add_argument("--descending", dest="ascending", action="store_false", help="largest first")
    parser.add_argument("--tag", action="append", default=[], help="keep runs with this tag (repeatable)")
    parser.add_argument("--name", help="keep runs of this experiment name")
    parser.add_argument("--sweep", help="keep runs of this multirun sweep (its folder name)")
    parser.add_argument("--out", type=Path, help="folder for comparison.csv and .html (default: <root>/comparison)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None, description: str = __doc__.splitlines()[0]) -> int:
    """Print the comparison and write its reports; a fixable error is one line and exit code 2."""
    args = parse_args(argv, description)
    logging.basicConfig(level=logging.WARNING, format="warning: %(message)s")
    # pandas and the report code load once the options are known: --help and bad options stay instant.
    from transferlab.reporting.compare import (
        Filters,
        comparison_table,
        default_sort_metric,
        format_table,
        format_unreadable,
        scan_runs,
        write_reports,
    )

    try:
        found = scan_runs(args.root, Filters(tuple(args.tag), args.name, args.sweep))
        runs = found.runs
        sort_by = args.sort or (default_sort_metric(runs) if not runs.empty else "run")
        table = comparison_table(runs, sort_by, args.ascending)
        print(format_table(table))
        if found.unreadable:
            print("\n" + format_unreadable(found.unreadable))
        if not table.empty:
            out = args.out or args.root / "comparison"
            csv_path, html_path = write_reports(table, args.root, out, sort_by, found.unreadable)
            print(f"\nwrote {csv_path} and {html_path}")
    except TransferlabError as exc:
        fail(str(exc))
    return 0
