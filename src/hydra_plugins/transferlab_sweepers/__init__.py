"""transferlab's Hydra sweepers: found by Hydra's plugin scan, selected with `hydra/sweeper=...`."""
