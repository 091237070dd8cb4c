"""The life of a job on a preemptible machine: preempted with SIGTERM, then killed with SIGKILL (no
chance to clean up) at the worst moments, it continues each time the same command is run again,
loses at most one checkpoint interval, ends at exactly the requested step and leaves a servable
export of it.

Every run is a real ``python -m tf_crnn.task`` subprocess. The SIGTERM comes from outside, once
the run prints that it trained 5 steps. The SIGKILLs come at moments chosen deterministically:
the run is started through :data:`LAUNCHER`, which kills its own process when it reaches the named
moment — in the middle of writing a checkpoint (its data and index are written, the ``checkpoint``
file that names the newest one is not), of an evaluation (after its first batch), or of an export
(the SavedModel's variables are written, its graph is not). With these settings the killed export
is the last step's, which the final rerun, finding every step trained, must make.
"""

import json
import os
import re
import signal

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest
import tensorflow as tf
from helpers import TaskProcess, job_args, tiny_flags

from tf_crnn.demo import generate_demo_dataset
from tf_crnn.predict import Predictor

SAVE_INTERVAL = 10
TRAIN_STEPS = 20

# python -c LAUNCHER MOMENT TASK_ARGS...: runs python -m tf_crnn.task, and SIGKILLs itself at
# MOMENT, the first of this process: "checkpoint" (the second checkpoint write: the first re-saves
# the step it resumes from), "evaluation" or "export".
LAUNCHER = r"""
import os, signal, sys
import tensorflow as tf
from tensorflow.python.checkpoint import checkpoint_management
from tf_crnn import export_model, task

moment = sys.argv[1]

def kill(doing, checkpoint):
    print(f"KILLED while {doing} {os.path.basename(checkpoint)}", file=sys.stderr, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)

if moment == "checkpoint":
    # Saver.save calls this once the checkpoint's data and index are written.
    record, writes = checkpoint_management.update_checkpoint_state_internal, []
    def update_checkpoint_state(save_dir, model_checkpoint_path, *args, **kwargs):
        writes.append(model_checkpoint_path)
        if len(writes) == 2:
            kill("writing", model_checkpoint_path)
        return record(save_dir, model_checkpoint_path, *args, **kwargs)
    checkpoint_management.update_checkpoint_state_internal = update_checkpoint_state
elif moment == "evaluation":
    evaluate = tf.estimator.Estimator.evaluate
    def evaluate_and_die(self, *args, hooks=None, checkpoint_path=None, **kwargs):
        checkpoint = checkpoint_path or self.latest_checkpoint()
        class KillAfterFirstBatch(tf.estimator.SessionRunHook):
            def after_run(self, run_context, run_values):
                kill("evaluating", checkpoint)
        hooks = [*(hooks or []), KillAfterFirstBatch()]
        return evaluate(self, *args, hooks=hooks, checkpoint_path=checkpoint, **kwargs)
    tf.estimator.Estimator.evaluate = evaluate_and_die
elif moment == "export":
    export = export_model.export_saved_model
    def export_and_die(checkpoint_path, *args, **kwargs):
        # add_meta_graph_and_variables has written the variables; save() writes saved_model.pb.
        tf.compat.v1.saved_model.Builder.save = lambda *_, **__: kill("exporting", checkpoint_path)
        return export(checkpoint_path, *args, **kwargs)
    export_model.export_saved_model = export_and_die

sys.exit(task.main(sys.argv[2:]))
"""


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return generate_demo_dataset(
        str(tmp_path_factory.mktemp("data")), num_train=32, num_eval=8, seed=6, progress=False
    )


def newest_step(job_dir) -> int:
    """The step of the checkpoint a rerun resumes from (0 when there is none)."""
    checkpoint = tf.train.latest_checkpoint(str(job_dir))
    return int(checkpoint.rsplit("-", 1)[1]) if checkpoint else 0


def test_preempted_then_killed_while_saving_evaluating_and_exporting_then_finished(data, tmp_path):
    job_dir = tmp_path / "job"
    args = job_args(
        job_dir, *data, *tiny_flags(train_steps=TRAIN_STEPS, save_interval=SAVE_INTERVAL)
    )

    # Preempted: the step it is in is finished and saved, and nothing more is done.
    run = TaskProcess(tmp_path / "sigterm.log", ["-m", "tf_crnn.task", *args])
    run.wait_for("step 5: loss")  # 5 steps trained
    run.process.send_signal(signal.SIGTERM)
    assert run.finish() == 143, run.output()[-3000:]
    stopped = re.search(
        r"preempted by SIGTERM at step (\d+): checkpoint (\S+) saved\. "
        r"Run the same command again to continue from there\.",
        run.output(),
    )
    assert stopped, run.output()[-3000:]
    step = int(stopped.group(1))
    assert step >= 5 and stopped.group(2) == str(job_dir / f"model.ckpt-{step}")
    assert newest_step(job_dir) == step
    # No evaluation or export after the signal, where a scheduler's grace period would run out.
    assert not (job_dir / "export").exists() and "evaluation:" not in run.output()

    # Killed: each rerun continues from the newest checkpoint the last one left.
    for moment in ("checkpoint", "evaluation", "export"):
        run = TaskProcess(tmp_path / f"{moment}.log", ["-c", LAUNCHER, moment, *args])
        assert run.finish() == -signal.SIGKILL, run.output()[-3000:]
        killed = re.search(r"KILLED while \w+ model\.ckpt-(\d+)", run.output())
        assert killed, run.output()[-3000:]
        killed_at = int(killed.group(1))  # the step the run had trained to
        assert step <= newest_step(job_dir) <= killed_at <= TRAIN_STEPS, moment
        assert killed_at - newest_step(job_dir) <= SAVE_INTERVAL, moment
        step = newest_step(job_dir)

    run = TaskProcess(tmp_path / "final.log", ["-m", "tf_crnn.task", *args])
    assert run.finish() == 0, run.output()[-3000:]
    trained = TRAIN_STEPS - step
    assert f"finished: global step {TRAIN_STEPS}, {trained} steps trained" in run.output()
    assert newest_step(job_dir) == TRAIN_STEPS

    # The killed export left no half-written folder behind.
    assert not tf.io.gfile.glob(str(job_dir / "export" / "*" / "temp-*"))
    # The newest export is of the last step, and serves.
    predictor = Predictor(str(job_dir / "export" / "latest"))
    with open(os.path.join(predictor.path, "assets.extra", "eval_result.json")) as f:
        assert json.load(f)["global_step"] == TRAIN_STEPS
    with open(data[1]) as f:
        image = os.path.join(os.path.dirname(data[1]), f.readline().split(";")[0])
    (prediction,) = predictor.predict_files([image])
    assert prediction.error is None and len(prediction.scores) == predictor.params.num_beam_paths
