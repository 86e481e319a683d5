"""TensorBoard: scalars per epoch and phase, the HParams dashboard, the run's figures."""

from __future__ import annotations

from pathlib import Path

from transferlab.tracking.base import NoOpTracker, scalar

PHASE_INDEX = {"head": 1, "fine_tune": 2}


# Hyperparameters shown as HParams columns in TensorBoard (every key still goes to the other trackers).
HPARAM_KEYS = (
    "name", "dataset.name", "dataset.batch_size", "dataset.train_per_class", "base_model.name",
    "base_model.weights", "head.pooling", "head.hidden_units", "head.dropout", "augmentation.flip",
    "augmentation.rotation", "augmentation.zoom", "optimizer.name", "optimizer.weight_decay",
    "schedule.head.epochs", "schedule.head.lr", "schedule.fine_tune.epochs", "schedule.fine_tune.lr",
    "schedule.fine_tune.unfreeze", "trainer.seed",
)


HPARAM_METRICS = ("test/accuracy", "test/loss", "best/val_accuracy", "best/val_loss")


class TensorBoardTracker(NoOpTracker):
    """Scalars of both phases on one epoch axis, HParams for comparing runs, and the plots as images."""

    def __init__(self, log_dir: Path):
        import tensorflow as tf

        self._tf = tf
        self._root = tf.summary.create_file_writer(str(log_dir))
        self._writers = {
            split: tf.summary.create_file_writer(str(log_dir / split)) for split in ("train", "validation", "test")
        }
        self._step = 0

    def log_params(self, params: dict[str, object]) -> None:
        from tensorboard.plugins.hparams import api as hp

        text = "\n".join(f"    {key}: {value}" for key, value in sorted(params.items()))
        with self._writers["train"].as_default():
            self._tf.summary.text("config", text, step=0)
        hparams = {key: scalar(params[key]) for key in HPARAM_KEYS if key in params}
        with self._root.as_default():
            hp.hparams_config(
                hparams=[hp.HParam(key) for key in hparams],
                metrics=[hp.Metric(name) for name in HPARAM_METRICS],
            )
            hp.hparams(hparams)

    def log_epoch(self, epoch: int, phase: str, metrics: dict[str, float]) -> None:
        for name, value in metrics.items():
            split, tag = ("validation", name[4:]) if name.startswith("val_") else ("train", name)
            with self._writers[split].as_default():
                self._tf.summary.scalar(f"epoch_{tag}", value, step=epoch)
        with self._writers["train"].as_default():
            self._tf.summary.scalar("phase", PHASE_INDEX.get(phase, 0), step=epoch)
        self._step = epoch

    def log_summary(self, summary: dict[str, object]) -> None:
        metrics = summary.get("metrics", {})
        step = int(summary.get("epochs", 0))
        with self._writers["test"].as_default():
            for name, value in metrics.items():
                if name.startswith("test/"):
                    self._tf.summary.scalar(f"epoch_{name[5:]}", value, step=step)
        with self._root.as_default():  # the HParams dashboard reads final metrics from the session's folder
            for name, value in metrics.items():
                self._tf.summary.scalar(name, value, step=step)

    def log_artifact(self, path: Path) -> None:
        if path.suffix != ".png":
            return
        image = self._tf.io.decode_png(self._tf.io.read_file(str(path)), channels=3)
        with self._root.as_default():
            self._tf.summary.image(f"plots/{path.stem}", image[None], step=self._step)

    def close(self) -> None:
        for writer in (self._root, *self._writers.values()):
            writer.close()
