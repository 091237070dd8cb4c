"""tf_crnn.decoding: greedy and beam search CTC decoding to codes padded with -1."""

import numpy as np
import tensorflow as tf

from tf_crnn import decoding


def confident_logits(paths: np.ndarray, classes: int) -> np.ndarray:
    """Batch-major logits [batch, time, classes] that put all weight on ``paths`` [batch, time]."""
    batch, time = paths.shape
    logits = np.full((batch, time, classes), -10.0, np.float32)
    for b in range(batch):
        logits[b, np.arange(time), paths[b]] = 10.0
    return logits


def test_beam_search_and_greedy_agree_on_confident_outputs():
    rng = np.random.default_rng(0)
    blank = 5
    paths = rng.integers(0, 6, size=(4, 12))
    logits = confident_logits(paths, 6)
    lengths = np.array([12, 12, 7, 3], np.int32)
    with tf.Graph().as_default(), tf.compat.v1.Session() as session:
        time_major = tf.transpose(tf.constant(logits), [1, 0, 2])
        greedy = decoding.greedy_decode(time_major, lengths)
        beam, scores = decoding.beam_search_decode(time_major, lengths, beam_width=8, top_paths=2)
        greedy_value, beam_value = session.run([greedy, beam])
    np.testing.assert_array_equal(greedy_value, beam_value[:, 0])
    for b in range(4):  # best path collapsed by hand: merge repeats, drop blanks
        expected = [
            c
            for i, c in enumerate(paths[b, : lengths[b]])
            if c != blank and (i == 0 or c != paths[b, i - 1])
        ]
        assert [c for c in greedy_value[b] if c >= 0] == expected


def test_best_path_decode_gives_the_greedy_codes_and_the_best_paths_log_probability():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(3, 9, 5)).astype(np.float32)  # batch-major, blank = 4
    lengths = np.array([9, 5, 1], np.int32)
    with tf.Graph().as_default(), tf.compat.v1.Session() as session:
        time_major = tf.transpose(tf.constant(logits), [1, 0, 2])
        greedy = decoding.greedy_decode(time_major, lengths)
        codes, scores = session.run(decoding.best_path_decode(time_major, lengths))
        greedy_value = session.run(greedy)
    assert codes.shape == (3, 1, 9) and scores.shape == (3, 1)
    np.testing.assert_array_equal(codes[:, 0], greedy_value)
    log_probs = logits - np.log(np.exp(logits).sum(axis=-1, keepdims=True))
    for b in range(3):
        best = log_probs[b, : lengths[b]].max(axis=-1).sum()
        np.testing.assert_allclose(scores[b, 0], best, rtol=1e-5)


def test_codes_are_padded_with_minus_one_to_the_time_steps_and_keep_code_zero():
    blank = 3
    # "0 0 blank 0" reads as [0, 0]; an image of 2 steps that reads nothing; "1 1 2 2" as [1, 2].
    paths = np.array([[0, 0, blank, 0], [blank, blank, blank, blank], [1, 1, 2, 2]])
    lengths = np.array([4, 2, 4], np.int32)
    time_major = tf.transpose(tf.constant(confident_logits(paths, 4)), [1, 0, 2])
    greedy = decoding.greedy_decode(time_major, lengths)
    beam, scores = decoding.beam_search_decode(time_major, lengths, beam_width=4, top_paths=2)
    assert greedy.dtype == tf.int32 and beam.dtype == tf.int32
    assert greedy.numpy().tolist() == [[0, 0, -1, -1], [-1, -1, -1, -1], [1, 2, -1, -1]]
    assert beam.shape == (3, 2, 4) and scores.shape == (3, 2)
    np.testing.assert_array_equal(beam.numpy()[:, 0], greedy.numpy())
    assert np.all(scores.numpy()[:, 0] >= scores.numpy()[:, 1])  # best path first


def test_beam_search_image_by_image_equals_tensorflows_search_of_the_whole_batch():
    rng = np.random.default_rng(2)
    logits = tf.constant(3 * rng.normal(size=(11, 6, 7)).astype(np.float32))  # time-major
    lengths = tf.constant([11, 1, 6, 11, 9, 2], tf.int32)
    codes, scores = decoding.beam_search_decode(logits, lengths, beam_width=5, top_paths=3)
    decoded, expected_scores = tf.nn.ctc_beam_search_decoder(logits, lengths, 5, 3)
    for path, expected in enumerate(decoded):
        expected_codes = tf.sparse.to_dense(expected, default_value=-1).numpy()
        width = expected_codes.shape[1]
        np.testing.assert_array_equal(codes.numpy()[:, path, :width], expected_codes)
        assert np.all(codes.numpy()[:, path, width:] == -1)
    np.testing.assert_allclose(scores.numpy(), expected_scores.numpy(), rtol=1e-6)
