"""The exported text model: the training-time TextVectorization put in front, so it predicts from raw strings."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import keras


def with_vectorizer(model: "keras.Model", vectorizer: "keras.layers.TextVectorization") -> "keras.Model":
    """The trained model behind its vectorizer: raw strings in, logits out (what `model.keras` holds)."""
    import keras

    texts = keras.Input(shape=(), dtype="string", name="text")
    return keras.Model(texts, model(vectorizer(texts)), name=f"{model.name}_text")
