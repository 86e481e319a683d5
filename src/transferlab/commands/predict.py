"""Predict classes of images or texts with a trained run, or of images with a stock ImageNet classifier.

    transferlab predict outputs/default/2026-11-29_10-00-00_3f9a2c photo.jpg more_photos/ --top-k 3 --csv preds.csv
    transferlab predict outputs/sentiment_glove_bilstm/<run> reviews.csv --text-column review
    echo "What a great film" | transferlab predict outputs/sentiment_glove_bilstm/<run> -
    transferlab predict outputs/sentiment_glove_bilstm/<run>/export/onnx "What a great film"
    transferlab predict --imagenet resnet50 photo.jpg

Images are read as training read them (the same suffixes, grayscale and RGBA made RGB, resized to the
model's input); an unreadable image or empty text stops with its name, or with --on-bad-file skip is
left out and counted (the default is the run's dataset.on_bad_file).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from transferlab.commands import OneLineArgumentParser
from transferlab.config.schema import BadFilePolicy
from transferlab.errors import ConfigError, TransferlabError, fail


def parse_args(argv: list[str] | None, description: str) -> argparse.Namespace:
    parser = OneLineArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "run_dir", nargs="?", type=Path,
        help="a finished run directory (holds model.keras), or an export folder <run>/export/<format> (holds export.json)",
    )
    parser.add_argument(
        "inputs", nargs="+",
        help="image files or folders; for a text run: CSV/TSV/Parquet tables, text files (one text a line), - for stdin, "
             "or a quoted text of several words",
    )
    parser.add_argument("--text-column", help="the column of texts in tables (default: the run's dataset.text_column)")
    parser.add_argument("--imagenet", metavar="MODEL", help="use this keras.applications model's ImageNet classifier")
    parser.add_argument("--top-k", type=int, default=3, help="best classes listed per input (at least 1)")
    parser.add_argument(
        "--on-bad-file", choices=[policy.value for policy in BadFilePolicy],
        help="fail or skip on an unreadable image or empty text (default: the run's dataset.on_bad_file, else fail)",
    )
    parser.add_argument("--csv", type=Path, help="also write the predictions to this CSV file")
    args = parser.parse_args(argv)
    if not args.imagenet and args.run_dir is None:
        parser.error("give a run directory, or --imagenet MODEL")
    return args


def main(argv: list[str] | None = None, description: str = __doc__) -> int:
    """Print (and with --csv write) the predictions; a fixable error is one line and exit code 2."""
    args = parse_args(argv, description)
    logging.basicConfig(level=logging.WARNING, format="warning: %(message)s")
    on_bad_file = BadFilePolicy(args.on_bad_file) if args.on_bad_file else None

    import pandas as pd

    from transferlab.export.serve import is_export_folder

    try:
        if args.imagenet:
            from transferlab.predict.imagenet import predict_with_imagenet

            inputs = [str(p) for p in ([args.run_dir] if args.run_dir else [])] + args.inputs
            rows = predict_with_imagenet(args.imagenet, inputs, args.top_k, on_bad_file=on_bad_file or BadFilePolicy.fail)
        elif is_export_folder(args.run_dir):  # ONNX and LiteRT exports run without TensorFlow
            from transferlab.export.serve import predict_with_export

            rows = predict_with_export(args.run_dir, args.inputs, args.top_k, args.text_column, on_bad_file)
        else:
            from transferlab.predict.run import predict_with_run

            rows = predict_with_run(
                args.run_dir, args.inputs, args.top_k, text_column=args.text_column, on_bad_file=on_bad_file
            )
        table = pd.DataFrame(rows)
        print(table.to_string(index=False, float_format=lambda p: f"{p:.4f}"))
        if args.csv:
            write_csv(table, args.csv)
    except TransferlabError as exc:
        fail(str(exc))
    return 0


def write_csv(table, path: Path) -> None:
    try:
        table.to_csv(path, index=False)
    except OSError as exc:
        raise ConfigError(f"cannot write the predictions to '{path}' ({exc.strerror or exc}); choose a writable --csv path") from exc
