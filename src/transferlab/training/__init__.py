"""The recipe and its two-phase schedule: setup, phases, optimizers, callbacks, checkpoints, distribution, run folders."""
