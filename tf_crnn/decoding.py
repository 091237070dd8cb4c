"""CTC decoding: network outputs -> class codes (``Alphabet.tf_decode`` and ``Alphabet.decode`` make
them text).

Codes come out as dense [batch, ..., time] int32 tensors padded with -1, never 0: 0 is a real
character, and a zero-padded tensor could not tell "0" from padding.
"""

from __future__ import annotations

import tensorflow as tf

from tf_crnn.constants import PADDING_CODE


def _dense(sparse: tf.SparseTensor, time_steps: tf.Tensor) -> tf.Tensor:
    """Sparse decoder output -> [batch, time_steps] int32, padded with -1 to a fixed width."""
    batch = tf.cast(sparse.dense_shape[0], tf.int64)
    sparse = tf.SparseTensor(
        sparse.indices, sparse.values, tf.stack([batch, tf.cast(time_steps, tf.int64)])
    )
    return tf.cast(tf.sparse.to_dense(sparse, default_value=PADDING_CODE), tf.int32)


def greedy_decode(logits: tf.Tensor, sequence_lengths: tf.Tensor) -> tf.Tensor:
    """Best path decoding of time-major ``logits`` [time, batch, classes] -> codes [batch, time]."""
    return _best_path(logits, sequence_lengths)[0]


def best_path_decode(logits: tf.Tensor, sequence_lengths: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Greedy decoding with the outputs of ``beam_search_decode`` for one path.

    Returns codes [batch, 1, time] and the best path's log-probability [batch, 1]. The path is
    the same as for raw logits (log-softmax keeps each frame's maximum); the decoder's score,
    minus the sum of each frame's largest input, is then a log-probability.
    """
    codes, negative_sums = _best_path(tf.nn.log_softmax(logits), sequence_lengths)
    return codes[:, tf.newaxis], -negative_sums


def _best_path(logits: tf.Tensor, sequence_lengths: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Codes [batch, time] of the best path, and minus the sum of each frame's largest logit."""
    (decoded,), negative_sums = tf.nn.ctc_greedy_decoder(
        logits, sequence_lengths, merge_repeated=True
    )
    return _dense(decoded, tf.shape(logits)[0]), negative_sums


def beam_search_decode(
    logits: tf.Tensor, sequence_lengths: tf.Tensor, beam_width: int, top_paths: int
) -> tuple[tf.Tensor, tf.Tensor]:
    """Beam search over time-major ``logits``.

    Returns codes [batch, top_paths, time] (best path first) and their log-probabilities
    [batch, top_paths].
    """
    decoded, log_probabilities = tf.nn.ctc_beam_search_decoder(
        logits, sequence_lengths, beam_width=beam_width, top_paths=top_paths
    )
    time_steps = tf.shape(logits)[0]
    codes = tf.stack([_dense(path, time_steps) for path in decoded], axis=1)
    return codes, log_probabilities
