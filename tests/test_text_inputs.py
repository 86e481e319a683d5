"""The TF-free tokenizers in front of a text model's ONNX or LiteRT export give the ids the Keras model's own
preprocessing gives, on any text: TextVectorization's standardize, split and lookup, and KerasHub's WordPiece
tokenizer and classifier preprocessor, each against the real layer; a tokenizer with no TF-free twin is
refused in one line."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from transferlab.export.text import vectorization_settings, wordpiece_settings
from transferlab.export.text_inputs import text_vectorization, wordpiece

# Letters of both cases, ASCII punctuation and whitespace, control and format characters, accents, casefold
# cases (ß, final sigma, ligatures, dotted I), Unicode punctuation and spaces, CJK, emoji.
CHARACTERS = list("aAbBeEgGoOdDtThH 0189 \t\n\r\f\v.,;:!?'\"-_()[]{}<>/\\|~`^$#@%&*+=") + list(
    "éÉüßẞçñİıΣςσﬁﬀ…—‘’“”«»¿¡·€½東京中文한日\u00a0\u2003\u3000\u200b\u200d\u00ad\x00\x1c\x85\u2028\ufffd😀"
)
WORDS = ["good", "Good", "GOOD", "great", "the", "movie", "café", "CAFÉ", "naïve", "finely", "ungood", "strasse", "STRAẞE"]
TEXTS = st.lists(
    st.lists(st.sampled_from(WORDS) | st.text(st.sampled_from(CHARACTERS), min_size=1, max_size=6), max_size=14)
    .map(" ".join), min_size=1, max_size=16,
)
CORPUS = ["the good movie was great", "Café finely; naïve!", "a good, good day", "東京 中文 ß", "ungood..."]
# Whole words, pieces (##...), and the forms lowercasing, accent stripping and casefolding produce.
WORDPIECE_VOCABULARY = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *sorted(
    {w for w in WORDS} | {w.lower() for w in WORDS} | set("abdeghot.,;:!?'-…東京中文ß") |
    {"##ly", "##ne", "##good", "##e", "##s", "fi", "un", "cafe", "naive", "ss", "stra", "##sse", "σ", "ς", "i̇"})]


@pytest.fixture(scope="module")
def vectorizers():
    import keras

    layers = []
    for standardize in ("lower_and_strip_punctuation", "lower", "strip_punctuation", None):
        for split in ("whitespace", "character"):
            layer = keras.layers.TextVectorization(max_tokens=60, output_sequence_length=7, standardize=standardize,
                                                   split=split)
            layer.adapt(CORPUS)
            layers.append(layer)
    return layers


@settings(max_examples=40, deadline=None)
@given(texts=TEXTS)
def test_text_vectorization_ids_match_the_keras_layer_on_any_text(vectorizers, texts):
    import tensorflow as tf

    for layer in vectorizers:
        ours = text_vectorization(vectorization_settings(layer, "onnx"))(texts)["token_ids"]
        np.testing.assert_array_equal(ours, layer(tf.constant(texts)).numpy(), err_msg=str(layer.get_config()))


@settings(max_examples=40, deadline=None)
@given(texts=TEXTS, lowercase=st.booleans(), strip_accents=st.booleans(), split_on_cjk=st.booleans())
def test_wordpiece_ids_match_the_kerashub_preprocessor_on_any_text(texts, lowercase, strip_accents, split_on_cjk):
    keras_hub = pytest.importorskip("keras_hub")
    import tensorflow as tf

    tokenizer = keras_hub.models.BertTokenizer(vocabulary=WORDPIECE_VOCABULARY, lowercase=lowercase,
                                               strip_accents=strip_accents, split_on_cjk=split_on_cjk)
    preprocessor = keras_hub.models.BertTextClassifierPreprocessor(tokenizer, sequence_length=9)
    names = ["token_ids", "segment_ids", "padding_mask"]
    ours = wordpiece(wordpiece_settings(preprocessor, names, "onnx"))(texts)
    theirs = preprocessor(tf.constant(texts))
    for name in names:
        np.testing.assert_array_equal(ours[name], np.asarray(theirs[name]).astype(np.int32), err_msg=name)


def test_a_tokenizer_other_than_wordpiece_is_refused_in_one_line_naming_the_way_out():
    keras_hub = pytest.importorskip("keras_hub")

    from transferlab.errors import ModelError

    vocabulary = {"<|endoftext|>": 0, "a": 1, "b": 2, "ab": 3}
    tokenizer = keras_hub.models.GPT2Tokenizer(vocabulary=vocabulary, merges=["a b"])
    preprocessor = keras_hub.models.GPT2Preprocessor(tokenizer, sequence_length=8)
    with pytest.raises(ModelError) as error:
        wordpiece_settings(preprocessor, ["token_ids", "padding_mask"], "onnx")
    assert str(error.value) == (
        "format=onnx cannot rebuild the model's GPT2Tokenizer tokenizer without TensorFlow (only WordPiece tokenizers "
        "are rebuilt, with the tokenizers package); use format=saved_model, which serves raw strings"
    )
