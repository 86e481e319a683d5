"""Experiment trackers behind one interface: TensorBoard, CSV, Neptune, MLflow."""
