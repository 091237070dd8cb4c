"""Stopping training at the first loss that is not finite, and never saving weights that are not.

A NaN or infinite loss poisons the weights through its gradients within one step, and every
checkpoint saved after that is useless; worse, with ``keep_checkpoint_max`` the good ones are
deleted to make room for them. So:

- :class:`FiniteLossHook` checks each step's loss and stops the run with :class:`NumericalFault`,
  naming the step and the files of the batch. The exception ends the training session without
  its closing save (``MonitoredSession`` calls no hook's ``end`` after an error).
- :class:`FiniteWeightsGuard` checks the weights before every checkpoint is written: a step whose
  loss was finite can still leave weights that are not (an infinite gradient, or a finite one
  times a huge learning rate), and the checkpoint saved after it would carry them.

Either way the newest checkpoint left in the job directory holds finite weights, and rerunning the
command (with a lower ``learning_rate``, or ``gradient_clip_norm`` set) continues from it.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from tf_crnn.config import Params
from tf_crnn.constants import LOSS_TENSOR_NAME
from tf_crnn.model import BATCH_FILENAMES_TENSOR_NAME

# File names of the faulty batch listed in the message; the rest are counted.
FILES_SHOWN = 8


class NumericalFault(Exception):
    """Training stopped because the loss or the weights stopped being finite numbers."""

    # python -m tf_crnn.task's exit status: distinct from 1 (a crash) and 2 (settings or data
    # refused before training).
    exit_status = 3


def _advice(params: Params, job_dir: str) -> str:
    checkpoint = tf.train.latest_checkpoint(job_dir)
    kept = (
        f"The newest checkpoint, {checkpoint}, holds finite weights and was kept"
        if checkpoint
        else f"No checkpoint was saved in {job_dir}"
    )
    return (
        f"{kept}. Lower learning_rate (now {params.learning_rate:g}) or set gradient_clip_norm "
        f"(now {params.gradient_clip_norm:g}), then run the same command again."
    )


class FiniteLossHook(tf.estimator.SessionRunHook):
    """Raises :class:`NumericalFault` after the first step whose loss is NaN or infinite.

    The message names the step and the batch's files: when one image or label is at fault it is
    among them; when every batch fails, the learning rate is.
    """

    def __init__(self, params: Params, job_dir: str):
        self._params, self._job_dir = params, job_dir

    def begin(self):
        graph = tf.compat.v1.get_default_graph()
        self._fetches = {
            "step": tf.compat.v1.train.get_global_step(),
            "loss": graph.get_tensor_by_name(LOSS_TENSOR_NAME),
            "filenames": graph.get_tensor_by_name(BATCH_FILENAMES_TENSOR_NAME),
        }

    def before_run(self, run_context):
        return tf.estimator.SessionRunArgs(self._fetches)

    def after_run(self, run_context, run_values):
        loss = run_values.results["loss"]
        if np.isfinite(loss):
            return
        step = int(run_values.results["step"]) + 1
        names = [name.decode("utf-8", "replace") for name in run_values.results["filenames"]]
        names = [name for name in names if name]  # padding rows of a last, short batch
        shown = ", ".join(names[:FILES_SHOWN])
        more = f" and {len(names) - FILES_SHOWN} more" if len(names) > FILES_SHOWN else ""
        raise NumericalFault(
            f"training stopped at step {step}: the loss is {loss}. The batch held {shown}{more}. "
            + _advice(self._params, self._job_dir)
        )


class FiniteWeightsGuard(tf.estimator.CheckpointSaverListener):
    """Before every checkpoint is written, raises :class:`NumericalFault` if a weight (or an
    optimizer slot) is NaN or infinite, so that checkpoint is never written."""

    def __init__(self, params: Params, job_dir: str):
        self._params, self._job_dir = params, job_dir

    def begin(self):
        # Called by the CheckpointSaverHook's begin, while the graph still takes new ops.
        floating = [
            variable
            for variable in tf.compat.v1.global_variables()
            if variable.dtype.base_dtype.is_floating
        ]
        self._all_finite = tf.reduce_all(
            [tf.reduce_all(tf.math.is_finite(variable)) for variable in floating]
        )

    def before_save(self, session, global_step_value):
        if not session.run(self._all_finite):
            raise NumericalFault(
                f"training stopped at step {global_step_value}: the weights are no longer finite "
                "numbers, so they were not saved. " + _advice(self._params, self._job_dir)
            )
