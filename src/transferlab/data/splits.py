"""The batches every modality hands to training: train/validation/test `tf.data` pipelines with one seeded shuffle per epoch."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Optional, Protocol

if TYPE_CHECKING:
    import keras
    import tensorflow as tf


class DataSplit(Protocol):
    """One split of a plan: its examples (`items`: image paths, texts) and their class indices."""

    labels: list[int]

    @property
    def items(self) -> list[str]: ...

    def __len__(self) -> int: ...


class DataPlan(Protocol):
    """Which example goes to which split with which label, decided before TensorFlow starts."""

    class_names: list[str]
    train: DataSplit
    validation: DataSplit
    test: DataSplit
    skipped: list[str]

    def counts(self) -> dict[str, int]: ...

    def fingerprint(self) -> str: ...

    def example_keys(self, split: str) -> list[str]:
        """What identifies each example of a split and its label, for the feature cache: a changed
        example gets new features."""
        ...


@dataclass
class SplitData:
    """The tf.data splits ready for `fit`, plus what the model and the report need to know.

    Every modality alike: for text the batches hold token ids, and `vectorizer` is the adapted
    TextVectorization layer the exported model puts in front.
    """

    plan: DataPlan
    train_epoch: Callable[[int], "tf.data.Dataset"]  # epoch number -> that epoch's batches
    steps_per_epoch: int
    train_in_order: "tf.data.Dataset"  # every training image once, unshuffled, unaugmented
    validation: Optional["tf.data.Dataset"]
    test: Optional["tf.data.Dataset"]
    batch_size: int
    seed: int
    vectorizer: Optional["keras.layers.TextVectorization"] = None

    @property
    def class_names(self) -> list[str]:
        return self.plan.class_names

    def train_from(self, epoch: int, epochs: int = 1) -> "tf.data.Dataset":
        """Training batches of `epochs` epochs from `epoch` on, for `fit(steps_per_epoch=...)`.

        Each epoch is shuffled with a seed made of the run's seed and the epoch number, so the
        order depends on nothing else: a resumed run sees exactly the batches the killed one would.
        """
        import tensorflow as tf

        batches = self.train_epoch(epoch)
        for later in range(epoch + 1, epoch + epochs):
            batches = batches.concatenate(self.train_epoch(later))
        return batches.prefetch(tf.data.AUTOTUNE)


def assemble_splits(
    plan: DataPlan,
    elements: Callable[[DataSplit], "tf.data.Dataset"],
    batch_size: int,
    seed: int,
    augment=None,
    vectorizer: Optional["keras.layers.TextVectorization"] = None,
) -> SplitData:
    """Epoch-seeded shuffled training batches and in-order evaluation batches, from a split -> (x, y) dataset."""
    import tensorflow as tf

    def evaluation(split) -> Optional[tf.data.Dataset]:
        return without_autotune(elements(split)).batch(batch_size).prefetch(tf.data.AUTOTUNE) if len(split) else None

    train = without_autotune(elements(plan.train))
    return SplitData(
        plan=plan,
        train_epoch=shuffled_epochs(train, len(plan.train), batch_size, seed, augment),
        steps_per_epoch=math.ceil(len(plan.train) / batch_size),
        train_in_order=train.batch(batch_size).prefetch(tf.data.AUTOTUNE),
        validation=evaluation(plan.validation),
        test=evaluation(plan.test),
        batch_size=batch_size,
        seed=seed,
        vectorizer=vectorizer,
    )


def without_autotune(ds: "tf.data.Dataset") -> "tf.data.Dataset":
    """The dataset, and all made from it, with fixed parallelism (one decoder per core) instead of
    tf.data's autotuning.

    TensorFlow 2.21's autotuning thread sleeps in periods that double from 10 ms to seconds, and
    deleting a finished iterator can wait for its next wake-up: the end of a pass over the training
    or validation images (the extraction pass, the validation run after every epoch) stalled for up
    to 8.5 s, at times since the iterator was made of 5.1 and 20.5 s. Decoding runs far ahead of
    the model either way (2,000 images/s against about 120 through MobileNetV2 on two cores).
    """
    import tensorflow as tf

    options = tf.data.Options()
    options.autotune.enabled = False
    return ds.with_options(options)


def shuffled_epochs(
    elements: "tf.data.Dataset", size: int, batch_size: int, seed: int, augment=None
) -> Callable[[int], "tf.data.Dataset"]:
    """Epoch number -> that epoch's batches, shuffled with a seed made of the run's seed and the epoch."""
    import tensorflow as tf

    def one_epoch(epoch: int) -> tf.data.Dataset:
        ds = elements.shuffle(size, seed=seed * 1_000_003 + epoch).batch(batch_size)
        if augment is not None:
            ds = ds.map(lambda x, y: (augment(x, training=True), y), num_parallel_calls=tf.data.AUTOTUNE)
        return ds

    return one_epoch
