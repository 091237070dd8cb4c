"""tf_crnn.metrics: CER, WER and word accuracy in Python and as streaming Estimator metrics."""

import pytest
import tensorflow as tf

from tf_crnn import metrics


def test_metrics_against_hand_computed_values():
    assert metrics.edit_distance("kitten", "sitting") == 3
    assert metrics.edit_distance("", "abc") == 3
    counts = metrics.ErrorCounts.of(
        ["abc", "", "héllo wörld", "中文字"], ["abd", "xy", "héllo world", "中文字"]
    )
    assert counts.char_errors == 1 + 2 + 1 + 0
    assert counts.chars == 3 + 2 + 11 + 3
    assert counts.cer == pytest.approx(4 / 19)
    assert counts.word_accuracy == pytest.approx(1 / 4)
    assert counts.words == 1 + 1 + 2 + 1 and counts.word_errors == 1 + 1 + 1 + 0
    assert counts.wer == pytest.approx(3 / 5)
    assert metrics.character_error_rate([""], [""]) == 0.0
    assert metrics.word_error_rate(["the cat sat"], ["the cat sat on"]) == pytest.approx(1 / 4)
    assert metrics.word_accuracy([[1, 2]], [[1, 2]]) == 1.0


def test_cer_is_total_errors_over_total_length_not_a_mean_of_lines():
    # One long line read right and one short line read wrong: 1 error in 11 units, not (0 + 1) / 2.
    assert metrics.character_error_rate(["abcdefghij", "x"], ["abcdefghij", "y"]) == 1 / 11
    assert (
        metrics.ErrorCounts.of(["ab"], ["ab"]) + metrics.ErrorCounts.of(["x"], ["y"])
    ).cer == 1 / 3
    assert metrics.split_words("  the  cat ") == [tuple("the"), tuple("cat")]
    assert metrics.split_words([7, 9, 9, 8], space=9) == [(7,), (8,)]
    # Nothing to read: a CER of 0 when nothing was predicted either, else 1.
    assert metrics.character_error_rate(["abc"], [""]) == 1.0
    with pytest.raises(ValueError, match="2 predictions for 1 labels"):
        metrics.ErrorCounts.of(["a", "b"], ["a"])


def test_eval_metric_ops_accumulate_over_batches():
    with tf.Graph().as_default(), tf.compat.v1.Session() as session:
        predicted = tf.compat.v1.placeholder(tf.int32, [None, None])
        truth = tf.compat.v1.placeholder(tf.int32, [None, None])
        ops = metrics.eval_metric_ops(predicted, truth, space_code=9)
        session.run(tf.compat.v1.local_variables_initializer())
        update = {name: op[1] for name, op in ops.items()}
        session.run(update, {predicted: [[1, 2, -1], [0, 0, 0]], truth: [[1, 2, 3], [0, -1, -1]]})
        session.run(update, {predicted: [[0, 9, 1]], truth: [[0, 9, 1]]})
        values = session.run({name: op[0] for name, op in ops.items()})
    # Errors: 1 (missing 3) + 2 (two extra zeros) + 0, over 3 + 1 + 3 true units.
    assert values["cer"] == pytest.approx(3 / 7)
    assert values["word_accuracy"] == pytest.approx(1 / 3)
    assert values["wer"] == pytest.approx(2 / 4)
