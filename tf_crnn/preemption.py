"""Stopping a training run when it is asked to: SIGTERM, which Vertex AI, Kubernetes and most
schedulers send before they take a machine away, and SIGINT (Ctrl-C).

The signal handler only records the signal: TensorFlow cannot be interrupted safely in the middle
of a step. The training step that is running finishes; :class:`StopOnSignalHook` then asks the
training loop to stop, and the Estimator's ``CheckpointSaverHook`` saves that step's checkpoint when
the session ends. :class:`PreemptedAfterSave`, a saving listener called right after that save,
raises :class:`Preempted`: without it ``train_and_evaluate`` would go on to evaluate and export the
new checkpoint, which can outlast the grace period a scheduler gives before it kills the process
(30 seconds for a preempted Compute Engine spot VM). Running the same command again continues from
the saved step.

In a ``TF_CONFIG`` cluster the chief saves, as it always does; a worker that gets the signal stops
after its step and exits, since it has nothing to save. Evaluators and parameter servers keep the
default handlers: they have no state to save, so a signal ends them at once.

A second signal while the first is being handled acts as it would without tf_crnn: pressing Ctrl-C
twice stops at once, losing the steps since the last checkpoint.

The process exits with 128 + the signal number, as a shell reports a process ended by that signal
(143 after SIGTERM, 130 after SIGINT), so that a scheduler sees an interrupted run, not a finished
one, and restarts it.
"""

from __future__ import annotations

import logging
import signal
import threading

import tensorflow as tf

logger = logging.getLogger("tf_crnn")

# The signals that stop training after the current step.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Preempted(Exception):
    """Training stopped after a signal; its checkpoint is saved (by the chief). The message says at
    which step and how to continue."""

    def __init__(self, signal_number: int, message: str):
        super().__init__(message)
        self.signal_number = signal_number

    @property
    def exit_status(self) -> int:
        """128 + the signal number, as a shell reports a process ended by that signal."""
        return 128 + self.signal_number


class SignalCatcher:
    """While active (``with SignalCatcher(): ...``), SIGTERM and SIGINT only set
    :attr:`signal_number`.

    Handlers are installed only in the main thread (Python allows no other), and never over a
    signal that is ignored (a job started with ``nohup``, or in the background of a
    non-interactive shell, ignores SIGINT: it should keep doing so). ``enabled=False`` installs
    nothing, for the tasks that have nothing to save.
    """

    def __init__(self, enabled: bool = True):
        self._enabled = enabled
        self._previous: dict[int, object] = {}
        self.signal_number: int | None = None

    def __enter__(self) -> SignalCatcher:
        if self._enabled and threading.current_thread() is threading.main_thread():
            for number in STOP_SIGNALS:
                if signal.getsignal(number) is not signal.SIG_IGN:
                    self._previous[number] = signal.signal(number, self._catch)
        return self

    def __exit__(self, *exc_info) -> None:
        self._restore()

    def _restore(self) -> None:
        for number, previous in self._previous.items():
            # None: a handler set outside Python, which Python cannot reinstall.
            signal.signal(number, signal.SIG_DFL if previous is None else previous)
        self._previous = {}

    def _catch(self, number: int, frame) -> None:
        self.signal_number = number
        self._restore()  # a second signal acts as it would without tf_crnn
        logger.warning(
            "%s received: stopping after the current training step, once its checkpoint is saved "
            "(send it again to stop at once)",
            signal.Signals(number).name,
        )

    def raise_if_caught(self, job_dir: str, task_name: str | None = None, task_step: int = 0):
        """Raises :class:`Preempted` if a signal came.

        Args:
            job_dir: where the chief saves its checkpoints; the chief's message names the newest.
            task_name, task_step: on a task that saves no checkpoints (a worker), its name
                (``"worker 1"``) and the global step it saw last.
        """
        if self.signal_number is None:
            return
        name = signal.Signals(self.signal_number).name
        if task_name is not None:
            raise Preempted(
                self.signal_number,
                f"{task_name} stopped by {name} at step {task_step}; the chief saves the "
                "checkpoints. Run the same command again to continue.",
            )
        checkpoint = tf.train.latest_checkpoint(job_dir)
        if checkpoint is None:
            raise Preempted(
                self.signal_number,
                f"stopped by {name} before the first checkpoint of {job_dir} was saved. Run the "
                "same command again to start.",
            )
        raise Preempted(
            self.signal_number,
            f"preempted by {name} at step {checkpoint.rsplit('-', 1)[-1]}: checkpoint "
            f"{checkpoint} saved. Run the same command again to continue from there.",
        )


class StopOnSignalHook(tf.estimator.SessionRunHook):
    """Asks the training loop to stop after the step during which a signal came."""

    def __init__(self, catcher: SignalCatcher):
        self._catcher = catcher

    def after_run(self, run_context, run_values):
        if self._catcher.signal_number is not None:
            run_context.request_stop()


class PreemptedAfterSave(tf.estimator.CheckpointSaverListener):
    """Raises :class:`Preempted` as soon as a checkpoint is saved after a signal, before the
    listeners after it (``train_and_evaluate``'s evaluation) run.

    Give it to ``TrainSpec(saving_listeners=...)``: ``train_and_evaluate`` calls those before its
    own evaluating listener.
    """

    def __init__(self, catcher: SignalCatcher, job_dir: str):
        self._catcher, self._job_dir = catcher, job_dir

    def after_save(self, session, global_step_value):
        # The save at the end of a stopped session, or a periodic one right after the signal.
        self._catcher.raise_if_caught(self._job_dir)

    def end(self, session, global_step_value):
        # The stopped step had been saved already, so the session's end saved nothing new.
        self._catcher.raise_if_caught(self._job_dir)
