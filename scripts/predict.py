"""Predict classes of images or texts with a trained run, or of images with a stock ImageNet classifier.

    python scripts/predict.py outputs/default/2026-11-29_10-00-00 photo.jpg more_photos/ --top-k 3 --csv preds.csv
    python scripts/predict.py outputs/sentiment_glove_bilstm/<run> reviews.csv --text-column review
    echo "What a great film" | python scripts/predict.py outputs/sentiment_glove_bilstm/<run> -
    python scripts/predict.py --imagenet resnet50 photo.jpg
"""

import argparse
import sys
from pathlib import Path

from transferlab.errors import TransferlabError


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", nargs="?", type=Path, help="a finished run directory (holds model.keras)")
    parser.add_argument(
        "inputs", nargs="+",
        help="image files or folders; for a text run: CSV/TSV/Parquet tables, text files (one text a line), or - for stdin",
    )
    parser.add_argument("--text-column", default="text", help="the column of texts in tables (text runs)")
    parser.add_argument("--imagenet", metavar="MODEL", help="use this keras.applications model's ImageNet classifier")
    parser.add_argument("--top-k", type=int, default=3)
    parser.add_argument("--csv", type=Path, help="also write the predictions to this CSV file")
    args = parser.parse_args()
    if not args.imagenet and args.run_dir is None:
        parser.error("give a run directory, or --imagenet MODEL")

    import pandas as pd

    from transferlab.predict import predict_with_imagenet, predict_with_run

    inputs = args.inputs if args.imagenet is None else [str(p) for p in ([args.run_dir] if args.run_dir else [])] + args.inputs
    try:
        rows = predict_with_imagenet(args.imagenet, inputs, args.top_k) if args.imagenet else predict_with_run(
            args.run_dir, args.inputs, args.top_k, text_column=args.text_column
        )
    except TransferlabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    table = pd.DataFrame(rows)
    print(table.to_string(index=False, float_format=lambda p: f"{p:.4f}"))
    if args.csv:
        table.to_csv(args.csv, index=False)


if __name__ == "__main__":
    main()
