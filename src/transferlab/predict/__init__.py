"""Prediction with a trained run's model, or with a stock ImageNet classifier."""
