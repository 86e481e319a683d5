"""Datasets: finding, checking and splitting images and text tables, downloads, the tf.data pipelines, and prediction inputs."""
