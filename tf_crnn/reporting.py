"""What a person watching a training run sees: a progress bar, loss lines, evaluation tables,
``samples.png`` and the closing summary."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence

import tensorflow as tf
from tqdm import tqdm

from tf_crnn import cloud, constants, visualize
from tf_crnn.alphabet import Alphabet
from tf_crnn.config import Params
from tf_crnn.csv_rows import read_csv_rows
from tf_crnn.data_handler import EVAL, input_fn

# Evaluation results shown in the table, in this order, with their display names.
EVAL_COLUMNS = (
    ("global_step", "step"),
    ("loss", "loss"),
    ("cer", "CER"),
    ("wer", "WER"),
    ("word_accuracy", "word acc."),
)
# Evaluation images shown in samples.png.
SAMPLES_SHOWN = 16
# The export folders a training run fills, with what each holds.
EXPORT_KINDS = ((constants.EXPORT_LATEST, "newest"), (constants.EXPORT_BEST, "lowest CER"))


def format_eval_table(results: dict[str, float]) -> str:
    """A two-line table of evaluation results, e.g. for the log after each evaluation."""
    cells = [
        (title, f"{int(results[key])}" if key == "global_step" else f"{results[key]:.4f}")
        for key, title in EVAL_COLUMNS
        if key in results
    ]
    widths = [max(len(t), len(v)) for t, v in cells]
    header = " | ".join(t.rjust(w) for (t, _), w in zip(cells, widths))
    row = " | ".join(v.rjust(w) for (_, v), w in zip(cells, widths))
    return f"{header}\n{row}"


class ProgressHook(tf.estimator.SessionRunHook):
    """A tqdm bar over training steps, and a line with loss and steps/s every ``every_steps``."""

    def __init__(self, max_steps: int, every_steps: int, batch_size: int, stream=None):
        self._max_steps = max_steps
        self._every_steps = every_steps
        self._batch_size = batch_size
        self._stream = stream or sys.stderr
        self._bar: tqdm | None = None
        self.last_step = 0
        self.local_steps = 0  # training steps this process ran (others may run more in a cluster)
        self.train_seconds = 0.0

    def begin(self):
        self._global_step = tf.compat.v1.train.get_global_step()
        graph = tf.compat.v1.get_default_graph()
        self._loss = graph.get_tensor_by_name(constants.LOSS_TENSOR_NAME)

    def after_create_session(self, session, coord):
        step = int(session.run(self._global_step))
        self.last_step = step
        self._bar = tqdm(
            total=self._max_steps,
            initial=step,
            desc="training",
            unit="step",
            file=self._stream,
            dynamic_ncols=True,
            leave=False,
            mininterval=1.0,
        )
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
            loss = run_values.results["loss"]
            self._bar.write(
                f"step {step}: loss {loss:.3f}, {rate:.2f} steps/s, "
                f"{rate * self._batch_size:.0f} images/s",
                file=self._stream,
            )
            self._window_start, self._window_step = now, step

    def end(self, session):
        self.train_seconds += time.time() - self._session_start
        if self._bar is not None:
            self._bar.close()

    def images_per_second(self) -> str:
        if not self.local_steps:
            return "nothing left to train"
        return f"{self.local_steps * self._batch_size / self.train_seconds:.0f} training images/s"


class EvalResultsListener(tf.estimator.Exporter):
    """Hears every evaluation of ``train_and_evaluate``: prints its results as a short table, keeps
    the latest ones, and reports the CER to a hyperparameter-tuning service when one runs the job.

    It takes the place of an Exporter, the only object ``train_and_evaluate`` hands every
    evaluation's results to; it exports nothing.
    """

    def __init__(self, stream=None):
        self._stream = stream or sys.stderr
        self.latest: dict[str, float] = {}

    @property
    def name(self) -> str:
        return "eval_results_listener"

    def export(self, estimator, export_path, checkpoint_path, eval_result, is_the_final_export):
        self.latest = {
            key: (int(value) if key == "global_step" else float(value))
            for key, value in eval_result.items()
        }
        print("evaluation:\n" + format_eval_table(self.latest), file=self._stream, flush=True)
        cloud.report_hyperparameter_metric("cer", self.latest["cer"], self.latest["global_step"])
        return None


def write_samples_png(
    estimator: tf.estimator.Estimator, eval_csv: Sequence[str], params: Params, path: str
) -> None:
    """``samples.png``: the first evaluation images captioned with prediction and truth.

    Each truth is shown as the model would read it (case folded, units joined), so that a right
    prediction is drawn as right.
    """
    alphabet = Alphabet.from_params(params)
    paths, predictions = [], []
    for prediction in estimator.predict(
        lambda: input_fn(eval_csv, params, EVAL, batch_size=SAMPLES_SHOWN)
    ):
        paths.append(prediction[constants.FILENAMES].decode("utf-8"))
        predictions.append(prediction[constants.WORDS].decode("utf-8"))
        if len(paths) == SAMPLES_SHOWN:
            break
    truths = {}
    for csv_file in eval_csv:
        for row in read_csv_rows(csv_file, params.csv_delimiter).rows:
            if row.image_path in paths:
                truths.setdefault(row.image_path, alphabet.decode(alphabet.encode(row.label)))
    visualize.save_samples_png(path, paths, predictions, [truths[p] for p in paths])


def closing_summary(
    global_step: int,
    progress: ProgressHook,
    wall_seconds: float,
    results: dict[str, float],
    job_dir: str,
    samples_path: str,
) -> str:
    """The lines the chief prints when training is over: steps, speed, results, what was written."""
    export_root = os.path.join(job_dir, constants.EXPORT_DIR)
    exports = [
        f"{os.path.join(export_root, kind)} ({meaning})"
        for kind, meaning in EXPORT_KINDS
        if tf.io.gfile.glob(os.path.join(export_root, kind, "*", "saved_model.pb"))
    ]
    no_exports = "none (exports are made after evaluations, by the evaluator)"
    return (
        f"\nfinished: global step {global_step}, {progress.local_steps} steps trained in "
        f"{wall_seconds:.0f} s wall time ({progress.images_per_second()})\n"
        f"{format_eval_table(results)}\n"
        f"SavedModels: {', '.join(exports) or no_exports}\n"
        f"samples: {samples_path}"
    )
