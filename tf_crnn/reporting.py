"""What a person watching a training run sees: a progress bar, loss lines and evaluation tables."""
from __future__ import annotations

import sys
import time
from typing import Dict, Optional

import tensorflow as tf
from tqdm import tqdm

from tf_crnn import cloud
from tf_crnn.model import LOSS_TENSOR_NAME

# Evaluation results shown in the table, in this order, with their display names.
EVAL_COLUMNS = (("global_step", "step"), ("loss", "loss"), ("cer", "CER"), ("wer", "WER"),
                ("word_accuracy", "word acc."))


def format_eval_table(results: Dict[str, float]) -> str:
    """A two-line table of evaluation results, e.g. for the log after each evaluation."""
    cells = [(title, f"{int(results[key])}" if key == "global_step" else f"{results[key]:.4f}")
             for key, title in EVAL_COLUMNS if key in results]
    widths = [max(len(t), len(v)) for t, v in cells]
    header = " | ".join(t.rjust(w) for (t, _), w in zip(cells, widths))
    row = " | ".join(v.rjust(w) for (_, v), w in zip(cells, widths))
    return f"{header}\n{row}"


class ProgressHook(tf.estimator.SessionRunHook):
    """A tqdm bar over training steps, and a line with loss and steps/s every ``every_steps`` steps."""

    def __init__(self, max_steps: int, every_steps: int, batch_size: int, stream=None):
        self._max_steps = max_steps
        self._every_steps = every_steps
        self._batch_size = batch_size
        self._stream = stream or sys.stderr
        self._bar: Optional[tqdm] = None
        self.last_step = 0
        self.local_steps = 0  # training steps this process ran (others may run more in a cluster)
        self.train_seconds = 0.0

    def begin(self):
        self._global_step = tf.compat.v1.train.get_global_step()
        self._loss = tf.compat.v1.get_default_graph().get_tensor_by_name(LOSS_TENSOR_NAME)

    def after_create_session(self, session, coord):
        step = int(session.run(self._global_step))
        self.last_step = step
        self._bar = tqdm(total=self._max_steps, initial=step, desc="training", unit="step", file=self._stream,
                         dynamic_ncols=True, leave=False, mininterval=1.0)
        self._window_start, self._window_step = time.time(), step
        self._session_start = time.time()

    def before_run(self, run_context):
        return tf.estimator.SessionRunArgs({"step": self._global_step, "loss": self._loss})

    def after_run(self, run_context, run_values):
        step = int(run_values.results["step"]) + 1
        self.local_steps += 1
        self._bar.update(step - self.last_step)
        self.last_step = step
        if step - self._window_step >= self._every_steps:
            now = time.time()
            rate = (step - self._window_step) / (now - self._window_start)
            self._bar.write(f"step {step}: loss {run_values.results['loss']:.3f}, {rate:.2f} steps/s, "
                            f"{rate * self._batch_size:.0f} images/s", file=self._stream)
            self._window_start, self._window_step = now, step

    def end(self, session):
        self.train_seconds += time.time() - self._session_start
        if self._bar is not None:
            self._bar.close()


class EvalReporter(tf.estimator.Exporter):
    """Prints each evaluation's results as a short table, keeps the latest ones and reports the CER
    to a hyperparameter-tuning service when it runs the job.

    An Exporter, because ``train_and_evaluate`` hands every evaluation's results to its exporters.
    It exports nothing.
    """

    def __init__(self, stream=None):
        self._stream = stream or sys.stderr
        self.latest: Dict[str, float] = {}

    @property
    def name(self) -> str:
        return "eval_reporter"

    def export(self, estimator, export_path, checkpoint_path, eval_result, is_the_final_export):
        self.latest = {k: (int(v) if k == "global_step" else float(v)) for k, v in eval_result.items()}
        print("evaluation:\n" + format_eval_table(self.latest), file=self._stream, flush=True)
        cloud.report_hyperparameter_metric("cer", self.latest["cer"], self.latest["global_step"])
        return None
