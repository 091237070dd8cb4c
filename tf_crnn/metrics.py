"""Recognition metrics: the one definition used by training, evaluation, the CLIs and the tests.

- CER: total edit distance between predicted and true unit sequences over the total true length
  (not a mean of per-line rates, which would overweight short lines).
- WER: the same over words (units split at the space unit).
- Word accuracy: the share of samples whose whole prediction equals the label (sequence accuracy).

The Estimator's EVAL graph runs these same Python functions through ``tf.py_function``.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np
import tensorflow as tf


def edit_distance(a: Sequence[Hashable], b: Sequence[Hashable]) -> int:
    """Levenshtein distance (insertions, deletions, substitutions each cost 1)."""
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, x in enumerate(a, start=1):
        current = [i]
        for j, y in enumerate(b, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x != y)))
        previous = current
    return previous[-1]


def split_words(units: Sequence[Hashable], space: Hashable = " ") -> list[tuple]:
    """Words of a unit sequence: the runs between space units (empty runs dropped)."""
    words, current = [], []
    for unit in units:
        if unit == space:
            if current:
                words.append(tuple(current))
            current = []
        else:
            current.append(unit)
    if current:
        words.append(tuple(current))
    return words


@dataclass
class ErrorCounts:
    """Sums from which CER, WER and word accuracy are computed; add them up over batches."""

    char_errors: int = 0
    chars: int = 0
    word_errors: int = 0
    words: int = 0
    correct_sequences: int = 0
    sequences: int = 0

    @classmethod
    def of(
        cls,
        predictions: Sequence[Sequence[Hashable]],
        truths: Sequence[Sequence[Hashable]],
        space: Hashable = " ",
    ) -> ErrorCounts:
        if len(predictions) != len(truths):
            raise ValueError(f"{len(predictions)} predictions for {len(truths)} labels")
        counts = cls()
        for prediction, truth in zip(predictions, truths):
            prediction, truth = list(prediction), list(truth)
            counts.char_errors += edit_distance(prediction, truth)
            counts.chars += len(truth)
            true_words = split_words(truth, space)
            counts.word_errors += edit_distance(split_words(prediction, space), true_words)
            counts.words += len(true_words)
            counts.correct_sequences += prediction == truth
            counts.sequences += 1
        return counts

    def __add__(self, other: ErrorCounts) -> ErrorCounts:
        return ErrorCounts(*(a + b for a, b in zip(self.as_tuple(), other.as_tuple())))

    def as_tuple(self) -> tuple:
        return (
            self.char_errors,
            self.chars,
            self.word_errors,
            self.words,
            self.correct_sequences,
            self.sequences,
        )

    @property
    def cer(self) -> float:
        return self.char_errors / self.chars if self.chars else float(self.char_errors > 0)

    @property
    def wer(self) -> float:
        return self.word_errors / self.words if self.words else float(self.word_errors > 0)

    @property
    def word_accuracy(self) -> float:
        return self.correct_sequences / self.sequences if self.sequences else 0.0


def character_error_rate(predictions, truths) -> float:
    return ErrorCounts.of(predictions, truths).cer


def word_error_rate(predictions, truths) -> float:
    return ErrorCounts.of(predictions, truths).wer


def word_accuracy(predictions, truths) -> float:
    return ErrorCounts.of(predictions, truths).word_accuracy


# ----------------------------------------------------------------------------------------------
# Estimator glue: the functions above as streaming eval_metric_ops
# ----------------------------------------------------------------------------------------------
def eval_metric_ops(
    predicted_codes: tf.Tensor, true_codes: tf.Tensor, space_code: int
) -> dict[str, tuple]:
    """``{"cer", "wer", "word_accuracy"}`` metric ops over [batch, time] int codes padded with
    -1."""

    def batch_counts(predicted, truth):
        def units(row):
            return [int(c) for c in row if c >= 0]

        counts = ErrorCounts.of(
            [units(r) for r in predicted.numpy()], [units(r) for r in truth.numpy()], space_code
        )
        return np.array(counts.as_tuple(), dtype=np.float64)

    counts = tf.py_function(batch_counts, [predicted_codes, true_codes], tf.float64)
    counts.set_shape([6])
    char_errors, chars, word_errors, words, correct, sequences = tf.unstack(counts)
    return {
        "cer": _ratio_metric(char_errors, chars, "cer"),
        "wer": _ratio_metric(word_errors, words, "wer"),
        "word_accuracy": _ratio_metric(correct, sequences, "word_accuracy"),
    }


def _ratio_metric(numerator: tf.Tensor, denominator: tf.Tensor, name: str) -> tuple:
    """A streaming sum(numerator) / sum(denominator) as an Estimator (value, update_op) pair."""
    with tf.compat.v1.variable_scope(f"metric_{name}"):
        # Local metric variables: reset by the Estimator at the start of every evaluation.
        total_num, total_den = (
            tf.compat.v1.get_local_variable(
                part,
                [],
                tf.float64,
                tf.zeros_initializer(),
                collections=[tf.compat.v1.GraphKeys.METRIC_VARIABLES],
            )
            for part in ("numerator", "denominator")
        )
    update = tf.group(total_num.assign_add(numerator), total_den.assign_add(denominator))
    value = tf.math.divide_no_nan(total_num.read_value(), total_den.read_value())
    return value, update
