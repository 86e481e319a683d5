"""Sweeps: the per-job status and summary table, and the Optuna trial journal that resumes a study."""
