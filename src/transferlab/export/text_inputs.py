"""Raw strings to a text export's token ids without TensorFlow: the step in front of an ONNX or LiteRT artifact.

String ops do not convert to ONNX or LiteRT, so those exports hold the model from token ids to logits
and, beside it, `text_inputs.json`: which tokenizer, its settings and its vocabulary. Two are rebuilt
here, each a reimplementation of what the Keras model does inside its graph:

- `text_vectorization`: Keras' TextVectorization (ASCII lowercasing, its punctuation regex, a split on
  ASCII whitespace or into characters, vocabulary lookup with 0 for padding and 1 for unknown words,
  then cut or padded to the sequence length);
- `wordpiece`: a KerasHub WordPiece tokenizer and its classifier preprocessor (accents stripped, split on
  whitespace, control and format characters, punctuation and CJK characters as tf-text's regex split does,
  each word NFKC-casefolded, WordPiece by the `tokenizers` package, then [CLS] ... [SEP] and padding).

The export checks these ids against the Keras model's own on the test texts and records how many matched.
"""

from __future__ import annotations

import json
import re
import string
import unicodedata
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

from transferlab.errors import ConfigError, ModelError, first_line

TEXT_INPUTS_FILE = "text_inputs.json"

# TextVectorization's default `strip_punctuation` pattern, and the ASCII whitespace tf.strings.split splits on.
KERAS_PUNCTUATION = re.compile(r'[!"#$%&()\*\+,-\./:;<=>?@\[\\\]^_`{|}~\']')
ASCII_WHITESPACE = re.compile(r"[ \t\n\v\f\r]+")
ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)

# tf_text.FastWordpieceTokenizer maps words longer than this many UTF-8 bytes to the unknown token.
MAX_BYTES_PER_WORD = 100
# RE2's \s in the WordPiece split is ASCII only (no \v, which is a control character anyway).
WORDPIECE_SPACES = frozenset(" \t\n\r\f")
CJK_RANGES = ((0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F), (0x2B740, 0x2B81F),
              (0x2B820, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F))
# Unicode's default ignorable code points, which NFKC_Casefold (tf_text.case_fold_utf8) drops.
DEFAULT_IGNORABLE = ((0x00AD, 0x00AD), (0x034F, 0x034F), (0x061C, 0x061C), (0x115F, 0x1160), (0x17B4, 0x17B5),
                     (0x180B, 0x180F), (0x200B, 0x200F), (0x202A, 0x202E), (0x2060, 0x206F), (0x3164, 0x3164),
                     (0xFE00, 0xFE0F), (0xFEFF, 0xFEFF), (0xFFA0, 0xFFA0), (0xFFF0, 0xFFF8), (0x1BCA0, 0x1BCA3),
                     (0x1D173, 0x1D17A), (0xE0000, 0xE0FFF))

TextInputs = Callable[[Sequence[str]], dict[str, np.ndarray]]


def text_vectorization(settings: dict) -> TextInputs:
    """TextVectorization's `int` output: standardize, split, look up, cut or pad."""
    index = {token: i for i, token in enumerate(settings["vocabulary"])}
    standardize, split, length = settings["standardize"], settings["split"], settings["sequence_length"]
    (name, dtype), = settings["inputs"].items()

    def tokens(text: str) -> list[str]:
        if standardize in ("lower", "lower_and_strip_punctuation"):
            text = text.translate(ASCII_LOWER)  # tf.strings.lower changes ASCII letters only
        if standardize in ("strip_punctuation", "lower_and_strip_punctuation"):
            text = KERAS_PUNCTUATION.sub("", text)
        if split == "whitespace":
            return [token for token in ASCII_WHITESPACE.split(text) if token]
        return list(text)  # "character": code points, as tf.strings.unicode_split gives them

    def ids(texts: Sequence[str]) -> dict[str, np.ndarray]:
        out = np.zeros((len(texts), length), dtype=dtype)
        for row, text in enumerate(texts):
            found = [index.get(token, 1) for token in tokens(text)[:length]]  # 1: the out-of-vocabulary index
            out[row, : len(found)] = found
        return {name: out}

    return ids


def wordpiece(settings: dict) -> TextInputs:
    """A KerasHub WordPiece tokenizer and classifier preprocessor: token_ids, and as the backbone needs them
    segment_ids and padding_mask."""
    from tokenizers import Tokenizer
    from tokenizers.models import WordPiece

    vocabulary = settings["vocabulary"]
    index = {token: i for i, token in enumerate(vocabulary)}
    model = WordPiece(index, unk_token=settings["oov_token"], continuing_subword_prefix=settings["suffix_indicator"],
                      max_input_chars_per_word=MAX_BYTES_PER_WORD)
    tokenizer = Tokenizer(model)
    start, end, pad = (index[settings[key]] for key in ("start_token", "end_token", "pad_token"))
    length, inputs = settings["sequence_length"], settings["inputs"]

    def ids(texts: Sequence[str]) -> dict[str, np.ndarray]:
        token_ids = np.full((len(texts), length), pad, dtype=np.int32)
        for row, text in enumerate(texts):
            words = [word if len(word.encode()) <= MAX_BYTES_PER_WORD else settings["oov_token"]
                     for word in pretokenize(text, settings)]
            pieces = tokenizer.encode(words, is_pretokenized=True, add_special_tokens=False).ids if words else []
            packed = [start, *pieces[: length - 2], end]  # one segment: round-robin truncation keeps its start
            token_ids[row, : len(packed)] = packed
        arrays = {"token_ids": token_ids, "segment_ids": np.zeros_like(token_ids),
                  "padding_mask": (token_ids != pad).astype(np.int32)}
        return {name: arrays[name].astype(dtype) for name, dtype in inputs.items()}

    return ids


def pretokenize(text: str, settings: dict) -> list[str]:
    """The words KerasHub's WordPiece tokenizer looks up, as its in-graph `pretokenize` finds them."""
    if settings["strip_accents"]:
        text = "".join(c for c in unicodedata.normalize("NFD", text) if unicodedata.category(c) != "Mn")
    words = split_words(text, settings["split_on_cjk"]) if settings["split"] else [text]
    if settings["lowercase"]:
        words = [casefold(word) for word in words]
    return [word for word in words if word]


def split_words(text: str, split_on_cjk: bool) -> list[str]:
    """tf_text.regex_split on whitespace, control and format characters (dropped) and on punctuation and CJK
    characters (kept, each a word of its own)."""
    words: list[str] = []
    current: list[str] = []
    for char in text:
        category = unicodedata.category(char)
        kept = _is_punctuation(char, category) or (split_on_cjk and _in(char, CJK_RANGES))
        if char in WORDPIECE_SPACES or category in ("Cc", "Cf") or kept:
            if current:
                words.append("".join(current))
                current = []
            if kept:
                words.append(char)
        else:
            current.append(char)
    if current:
        words.append("".join(current))
    return words


def casefold(word: str) -> str:
    """tf_text.case_fold_utf8: Unicode's NFKC_Casefold, which is NFKC(casefold(NFKC(x))) without ignorables."""
    folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", word).casefold())
    return "".join(c for c in folded if not _in(c, DEFAULT_IGNORABLE))


def _is_punctuation(char: str, category: str) -> bool:
    """Every ASCII symbol (BERT's rule: `$`, `^`, `` ` `` count) and Unicode's punctuation categories."""
    code = ord(char)
    return 33 <= code <= 47 or 58 <= code <= 64 or 91 <= code <= 96 or 123 <= code <= 126 or category.startswith("P")


def _in(char: str, ranges: tuple[tuple[int, int], ...]) -> bool:
    code = ord(char)
    return any(low <= code <= high for low, high in ranges)


BUILDERS: dict[str, Callable[[dict], TextInputs]] = {"text_vectorization": text_vectorization, "wordpiece": wordpiece}


def load_text_inputs(folder: Path) -> Optional[TextInputs]:
    """The folder's raw-strings-to-ids step, or None for an export whose model takes its inputs directly."""
    path = folder / TEXT_INPUTS_FILE
    if not path.is_file():
        return None
    try:
        settings = json.loads(path.read_text(encoding="utf-8"))
        return BUILDERS[settings["kind"]](settings)
    except ImportError as exc:
        raise ModelError(f"this export's tokenizer needs the 'tokenizers' package ({first_line(exc)}); "
                         "pip install 'transferlab[export]'") from exc
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"cannot read the tokenizer of '{path}' ({first_line(exc, with_type=True)}); export the run again") from exc
