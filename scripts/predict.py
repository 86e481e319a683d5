"""Predict classes of images or texts with a trained run, or of images with a stock ImageNet classifier.

    python scripts/predict.py outputs/default/2026-11-29_10-00-00_3f9a2c photo.jpg more_photos/ --top-k 3 --csv preds.csv
    python scripts/predict.py outputs/sentiment_glove_bilstm/<run> reviews.csv --text-column review
    echo "What a great film" | python scripts/predict.py outputs/sentiment_glove_bilstm/<run> -
    python scripts/predict.py outputs/sentiment_glove_bilstm/<run>/export/onnx "What a great film"
    python scripts/predict.py --imagenet resnet50 photo.jpg

Images are read as training read them (the same suffixes, grayscale and RGBA made RGB, resized to the
model's input); an unreadable image or empty text stops with its name, or with --on-bad-file skip is
left out and counted (the default is the run's dataset.on_bad_file).
"""

import sys

from transferlab.commands import predict

if __name__ == "__main__":
    sys.exit(predict.main(description=__doc__))
