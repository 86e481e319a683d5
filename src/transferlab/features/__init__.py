"""Frozen-base features: the cache phase 1 trains on, the scikit-learn baseline, and the extract command."""
