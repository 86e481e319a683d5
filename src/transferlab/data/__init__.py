"""Datasets: finding, checking and splitting images and text tables, downloads, and the tf.data pipelines."""
