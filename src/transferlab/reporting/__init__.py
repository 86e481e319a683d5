"""What a run reports: test evaluation, summary, figures, and the comparison of runs."""
