"""Text classifiers: embedding (random or pretrained word vectors) and a recurrent or pooled head, on token ids."""

from __future__ import annotations

from typing import Optional

import keras
import numpy as np

from transferlab.config.schema import HeadConfig, HeadKind
from transferlab.models.heads import BASE_LAYER, TaskSpec, build_head


def build_text_model(head_cfg: HeadConfig, task: TaskSpec, vocab_size: int, dim: int,
                     vectors: Optional[np.ndarray]) -> keras.Model:
    """Token ids in, logits out; the base is an embedding of the vocabulary, pretrained when `vectors` is given.

    Padding (id 0) is masked, so a BiLSTM or pooling head reads only the real tokens; a convolution
    cannot use a mask and sees padding as zero vectors.
    """
    tokens = keras.Input(shape=(task.sequence_length,), dtype="int64", name="tokens")
    base_input = keras.Input(shape=(task.sequence_length,), dtype="int64", name="base_tokens")
    masked = head_cfg.kind is not HeadKind.conv
    embedding = keras.layers.Embedding(vocab_size, dim, mask_zero=masked, name="embedding")
    base = keras.Model(base_input, embedding(base_input), name=BASE_LAYER)
    if vectors is not None:
        embedding.set_weights([vectors])
    outputs = build_head(base(tokens, training=False), head_cfg, task)
    return keras.Model(tokens, outputs, name="transferlab_text")
