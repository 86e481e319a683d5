"""Frozen-base features: the store phase 1 and the baseline read (cached on disk), the scikit-learn baseline, and export."""
