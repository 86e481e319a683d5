"""Every use of a private Keras, TensorFlow or Hydra API, each checked against the installed version."""
