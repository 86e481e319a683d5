"""A raw-string model split for ONNX and LiteRT, which cannot run string ops: the model from token ids to
logits becomes the artifact, and its tokenizer's settings and vocabulary go beside it for the TF-free step
in `transferlab.export.text_inputs`.

Only tokenizers that step rebuilds faithfully are split: a TextVectorization layer with the built-in
standardize and split choices, and a KerasHub WordPiece tokenizer. Any other is refused in one line
naming why, with the way out (a SavedModel, which tokenizes inside the model).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import numpy as np

from transferlab.errors import ModelError
from transferlab.export.text_inputs import TEXT_INPUTS_FILE

if TYPE_CHECKING:
    import keras

    from transferlab.models.hub_text import TextEncoder

STANDARDIZE = (None, "lower", "strip_punctuation", "lower_and_strip_punctuation")
# split=None gives one id per batch, not per text, with output_sequence_length set: nothing to rebuild.
SPLIT = ("whitespace", "character")
WORDPIECE_INPUTS = ("token_ids", "segment_ids", "padding_mask")


@dataclass
class TextSplit:
    """The artifact's model, what `text_inputs.json` holds, and the Keras model's own ids for a batch of texts."""

    model: "keras.Model"
    settings: dict
    keras_ids: Callable[[np.ndarray], dict[str, np.ndarray]]

    def record(self, texts: np.ndarray, ids: dict[str, np.ndarray], fmt: str) -> dict:
        """How many texts the TF-free step gave the Keras model's ids; any other count refuses the export."""
        expected = self.keras_ids(texts)
        same = np.ones(len(texts), dtype=bool)
        for name, values in expected.items():
            same &= np.all(ids[name] == values, axis=1)
        if not same.all():
            first = str(texts[np.argmin(same)])
            raise ModelError(
                f"the {fmt} export's tokenizer gives other token ids than the model's own {self.settings['kind']} for "
                f"{int((~same).sum())} of {len(texts)} test texts (first: {first[:60]!r}); use format=saved_model, "
                "which tokenizes inside the model"
            )
        return {"kind": self.settings["kind"], "file": TEXT_INPUTS_FILE, "sequence_length": self.settings["sequence_length"],
                "inputs": self.settings["inputs"], "identical_ids": int(same.sum()), "texts": len(texts)}


def split_text_model(model: "keras.Model", fmt: str) -> TextSplit:
    """The token-id model and tokenizer of a model that reads raw strings."""
    import keras

    from transferlab.models.hub_text import TextEncoder

    for layer in model.layers:
        if isinstance(layer, keras.layers.TextVectorization):
            return _vectorized(model, layer, fmt)
        if isinstance(layer, TextEncoder):
            return _encoded(model, layer, fmt)
    raise ModelError(f"format={fmt} needs the model's tokenizer outside it, and this text model has neither a "
                     "TextVectorization layer nor a KerasHub encoder; use format=saved_model, which serves raw strings")


def _refuse(fmt: str, what: str, why: str) -> ModelError:
    return ModelError(f"format={fmt} cannot rebuild the model's {what} without TensorFlow ({why}); "
                      "use format=saved_model, which serves raw strings")


def vectorization_settings(vectorizer: "keras.layers.TextVectorization", fmt: str) -> dict:
    """What `text_inputs.text_vectorization` needs; a layer it cannot rebuild is refused."""
    config = vectorizer.get_config()
    vocabulary = vectorizer.get_vocabulary()
    length = config["output_sequence_length"]
    why = (
        f"standardize={config['standardize']!r} is not a built-in choice" if config["standardize"] not in STANDARDIZE
        else f"split={config['split']!r} is not one of {', '.join(SPLIT)}" if config["split"] not in SPLIT
        else f"ngrams={config['ngrams']}" if config["ngrams"] is not None
        else f"output_mode={config['output_mode']!r}" if config["output_mode"] != "int"
        else "no output_sequence_length" if not length
        else "its vocabulary does not start with the padding and one out-of-vocabulary token" if vocabulary[:2] != ["", "[UNK]"]
        else None
    )
    if why:
        raise _refuse(fmt, "TextVectorization", why)
    return {"kind": "text_vectorization", "standardize": config["standardize"], "split": config["split"],
            "sequence_length": length, "inputs": {"token_ids": "int64"}, "vocabulary": vocabulary}  # `int` output


def wordpiece_settings(preprocessor, names: list[str], fmt: str) -> dict:
    """What `text_inputs.wordpiece` needs for a KerasHub classifier preprocessor feeding a backbone's `names`;
    a tokenizer it cannot rebuild is refused."""
    from keras_hub.tokenizers import WordPieceTokenizer

    tokenizer = preprocessor.tokenizer
    what = f"{type(tokenizer).__name__} tokenizer"
    if not isinstance(tokenizer, WordPieceTokenizer):
        raise _refuse(fmt, what, "only WordPiece tokenizers are rebuilt, with the tokenizers package")
    if tokenizer.special_tokens_in_strings:
        raise _refuse(fmt, what, "it keeps special tokens written in the text whole")
    if None in (tokenizer.start_token_id, tokenizer.end_token_id, tokenizer.pad_token_id) or set(names) - set(WORDPIECE_INPUTS):
        raise _refuse(fmt, what, f"its preprocessor does not pack [start] text [end] into {', '.join(WORDPIECE_INPUTS)}")
    vocabulary = tokenizer.get_vocabulary()
    return {
        "kind": "wordpiece", "lowercase": tokenizer.lowercase, "strip_accents": tokenizer.strip_accents,
        "split": tokenizer.split, "split_on_cjk": tokenizer.split_on_cjk, "suffix_indicator": tokenizer.suffix_indicator,
        "oov_token": tokenizer.oov_token, "start_token": vocabulary[tokenizer.start_token_id],
        "end_token": vocabulary[tokenizer.end_token_id], "pad_token": vocabulary[tokenizer.pad_token_id],
        "sequence_length": preprocessor.sequence_length, "inputs": {name: "int32" for name in names},
        "vocabulary": vocabulary,
    }


def _vectorized(model: "keras.Model", vectorizer: "keras.layers.TextVectorization", fmt: str) -> TextSplit:
    """Token ids (int64, as TextVectorization gives them) in; the layers after the vectorizer."""
    import keras
    import tensorflow as tf

    settings = vectorization_settings(vectorizer, fmt)
    after = keras.Model(vectorizer.output, model.output)
    ids = keras.Input(shape=(settings["sequence_length"],), dtype=settings["inputs"]["token_ids"], name="token_ids")
    return TextSplit(_called(keras.Model(ids, after(ids), name=f"{model.name}_token_ids"), settings), settings,
                     lambda texts: {"token_ids": np.asarray(vectorizer(tf.constant(texts)))})


def _encoded(model: "keras.Model", encoder: "TextEncoder", fmt: str) -> TextSplit:
    """The backbone's int32 inputs (token_ids, and segment_ids and padding_mask as it takes them) in; the
    encoder's pooling and the head after it."""
    import keras
    import tensorflow as tf

    names = list(encoder.backbone.input)
    settings = wordpiece_settings(encoder.preprocessor, names, fmt)
    inputs = {name: keras.Input(shape=(settings["sequence_length"],), dtype="int32", name=name) for name in names}
    after = keras.Model(encoder.output, model.output)

    def keras_ids(texts: np.ndarray) -> dict[str, np.ndarray]:
        packed = encoder.preprocessor(tf.constant(texts))
        return {name: np.asarray(packed[name]).astype(np.int32) for name in names}

    token_model = keras.Model(inputs, after(encoder.encode(inputs)), name=f"{model.name}_token_ids")
    return TextSplit(_called(token_model, settings), settings, keras_ids)


def _called(model: "keras.Model", settings: dict) -> "keras.Model":
    """The model after one call on padding: Keras exports only a model that has been called."""
    padding = {name: np.zeros((1, settings["sequence_length"]), dtype) for name, dtype in settings["inputs"].items()}
    model(padding if len(padding) > 1 else padding["token_ids"])
    return model
