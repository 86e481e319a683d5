"""Every use of a private Keras, TensorFlow, Hydra or Neptune API, each checked against the installed version."""
