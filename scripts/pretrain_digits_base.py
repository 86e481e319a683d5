"""Pretrain the default experiment's base on the source task and write the shipped weights file.

The offline default transfers from digits 0-4 (source) to digits 5-9 (target). This script trains
`digits_cnn` (BatchNorm trainable, as in any pretraining) with a throwaway classifier on every
image of digits 0-4, then saves the base alone to `src/transferlab/assets/digits_cnn_0-4.weights.h5`,
the file `base_model.weights=digits_0_4` loads. Run it again to regenerate the asset:

    python scripts/pretrain_digits_base.py [--epochs 20] [--seed 0] [--output PATH]
"""

import argparse
import logging
from pathlib import Path

from transferlab.atomic import replacing
from transferlab.config.schema import AugmentationConfig, DatasetConfig
from transferlab.models.bases import DIGITS_WEIGHTS_FILE

SOURCE_CLASSES = ["0", "1", "2", "3", "4"]
DEFAULT_OUTPUT = Path(__file__).resolve().parents[1] / "src" / "transferlab" / "assets" / DIGITS_WEIGHTS_FILE


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", default="data")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    import keras

    from transferlab.data.images import build_pipelines, locate_dataset, plan_dataset
    from transferlab.models.digits import digits_cnn

    keras.utils.set_random_seed(args.seed)
    dataset = DatasetConfig(
        name="digits_source", builtin="sklearn_digits", path=f"{args.data_dir}/sklearn_digits",
        classes=SOURCE_CLASSES, image_size=[32, 32], batch_size=32, validation_split=0.1, test_split=0.0,
    )
    plan = plan_dataset(dataset, locate_dataset(dataset, args.data_dir), args.seed)
    data = build_pipelines(plan, dataset, (32, 32), AugmentationConfig(), args.seed)

    base = digits_cnn(input_shape=(32, 32, 3))
    inputs = keras.Input((32, 32, 3))
    x = base(keras.layers.Rescaling(1 / 255)(inputs))
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(len(SOURCE_CLASSES))(x)
    model = keras.Model(inputs, outputs)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    model.fit(data.train_from(0, args.epochs), steps_per_epoch=data.steps_per_epoch, epochs=args.epochs,
              validation_data=data.validation, verbose=2)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    # Keras picks the format by the name, so the temporary file keeps the `.weights.h5` ending.
    with replacing(args.output, args.output.with_name(f".{args.output.name}")) as tmp:
        base.save_weights(tmp)
    print(f"source-task validation accuracy {model.evaluate(data.validation, verbose=0)[1]:.3f}; wrote {args.output}")


if __name__ == "__main__":
    main()
