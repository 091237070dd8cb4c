"""CTC decoding: network outputs -> class codes (``Alphabet.tf_decode`` and ``Alphabet.decode`` make
them text).

Codes come out as dense [batch, ..., time] int32 tensors padded with -1, never 0: 0 is a real
character, and a zero-padded tensor could not tell "0" from padding.
"""

from __future__ import annotations

import tensorflow as tf

from tf_crnn.constants import PADDING_CODE

# Images whose beam searches may run at once: an upper bound; the inter-op threads of the machine
# that runs the graph decide how many do.
_PARALLEL_IMAGES = 32


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
    """Beam search over time-major ``logits``, one image at a time, images in parallel.

    Returns codes [batch, top_paths, time] (best path first) and their log-probabilities
    [batch, top_paths].

    TensorFlow's beam search kernel works through a batch on one thread. Each image's search is
    independent, so a loop over the images with parallel iterations spreads them over the
    inter-op threads of the machine that serves the model: the same results, in 0.65 to 0.70x the
    time on 2 cores (batch 64, the paper network), and more so with more cores.
    """
    time_steps = tf.shape(logits)[0]

    def one_image(image):
        image_logits, length = image
        decoded, log_probabilities = tf.nn.ctc_beam_search_decoder(
            image_logits[:, tf.newaxis], length[tf.newaxis], beam_width, top_paths
        )
        codes = tf.concat([_dense(path, time_steps) for path in decoded], axis=0)
        return codes, log_probabilities[0]

    return tf.map_fn(
        one_image,
        (tf.transpose(logits, [1, 0, 2]), sequence_lengths),
        fn_output_signature=(
            tf.TensorSpec([top_paths, None], tf.int32),
            tf.TensorSpec([top_paths], tf.float32),
        ),
        parallel_iterations=_PARALLEL_IMAGES,
    )
