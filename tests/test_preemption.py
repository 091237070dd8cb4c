"""Training stopped on purpose: SIGTERM or SIGINT (a preemption) saves the step and exits with
128 + the signal; a loss or weights that are not finite stop the run without saving them.

A single trainer preempted with SIGTERM, then rerun, is tested in test_kill_resume.py with the kills
that follow it; here the signal handling itself, a cluster, and numerical faults.
"""

import json
import os
import re
import signal
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest
import tensorflow as tf
from helpers import TaskProcess, free_ports, job_args, tiny_flags

from tf_crnn import task
from tf_crnn.demo import generate_demo_dataset
from tf_crnn.preemption import Preempted, SignalCatcher


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return generate_demo_dataset(
        str(tmp_path_factory.mktemp("data")), num_train=32, num_eval=8, seed=4, progress=False
    )


@pytest.mark.distributed
def test_in_a_cluster_the_chief_saves_and_the_worker_exits(data, tmp_path):
    """Between-graph training with a parameter server: the signal reaches chief and worker."""
    job_dir = tmp_path / "job"
    chief, worker, ps = (f"127.0.0.1:{port}" for port in free_ports(3))
    cluster = {"chief": [chief], "worker": [worker], "ps": [ps]}
    args = job_args(job_dir, *data, *tiny_flags(train_steps=100_000))
    runs = {}
    try:
        for task_type in ("ps", "chief", "worker"):
            tf_config = {"cluster": cluster, "task": {"type": task_type, "index": 0}}
            env = {"TF_CONFIG": json.dumps(tf_config)}
            runs[task_type] = TaskProcess(
                tmp_path / f"{task_type}.log", ["-m", "tf_crnn.task", *args], env
            )
        for task_type in ("chief", "worker"):
            runs[task_type].wait_for(": loss")  # it trains
        for task_type in ("chief", "worker"):
            runs[task_type].process.send_signal(signal.SIGTERM)
        for task_type in ("chief", "worker"):
            assert runs[task_type].finish() == 143, runs[task_type].output()[-3000:]
    finally:
        for run in runs.values():
            run.end()  # the parameter server serves until it is killed

    chief_out, worker_out = runs["chief"].output(), runs["worker"].output()
    step = re.search(r"preempted by SIGTERM at step (\d+): checkpoint (\S+) saved", chief_out)
    assert step, chief_out[-3000:]
    assert step.group(2) == tf.train.latest_checkpoint(str(job_dir))
    assert re.search(
        r"worker 0 stopped by SIGTERM at step \d+; the chief saves the checkpoints\. Run the same "
        r"command again to continue\.",
        worker_out,
    ), worker_out[-3000:]


def wait_for_handler(catcher: SignalCatcher) -> None:
    """Python runs a signal handler between bytecodes of the main thread: soon, not at once."""
    deadline = time.time() + 5
    while catcher.signal_number is None and time.time() < deadline:
        time.sleep(0.01)


@pytest.fixture
def sigint_as_in_a_terminal():
    """Python's own Ctrl-C handler, whatever this test run inherited (started in the background
    of a script, it inherits SIGINT ignored)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_ctrl_c_stops_after_the_step_and_twice_stops_at_once(tmp_path, sigint_as_in_a_terminal):
    with SignalCatcher() as catcher:
        os.kill(os.getpid(), signal.SIGINT)
        wait_for_handler(catcher)
        assert catcher.signal_number == signal.SIGINT
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    with pytest.raises(Preempted) as stop:
        catcher.raise_if_caught(str(tmp_path), "worker 1", 17)
    assert stop.value.exit_status == 130
    assert str(stop.value) == (
        "worker 1 stopped by SIGINT at step 17; the chief saves the checkpoints. "
        "Run the same command again to continue."
    )


def test_an_ignored_signal_stays_ignored():
    """A job started with nohup, or in the background of a script, ignores SIGINT."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with SignalCatcher():
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
            assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    finally:
        signal.signal(signal.SIGINT, previous)


def checkpoint_weights(path: str) -> dict[str, np.ndarray]:
    reader = tf.train.load_checkpoint(path)
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()}


# learning_rate=1e39 is infinite in float32: TensorFlow warns when it casts the constant.
@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")
def test_a_loss_or_weights_that_are_not_finite_stop_training_and_are_never_saved(
    data, tmp_path, capsys
):
    job_dir = tmp_path / "job"

    def train(**settings):
        return task.main(job_args(job_dir, *data, *tiny_flags(train_steps=10, **settings)))

    # A learning rate beyond float32 (a typo away): step 1's loss is still finite, but its update
    # makes the weights NaN, and step 1 is a checkpoint step. Step 0's checkpoint (made when
    # training starts) is the last good one.
    assert train(save_interval=1, learning_rate=1e39) == 3
    err = capsys.readouterr().err
    assert (
        "training stopped at step 1: the weights are no longer finite numbers, so they were not "
        f"saved. The newest checkpoint, {job_dir / 'model.ckpt-0'}, holds finite weights and was "
        "kept. Lower learning_rate (now 1e+39)"
    ) in err
    assert tf.train.latest_checkpoint(str(job_dir)) == str(job_dir / "model.ckpt-0")
    assert not list(job_dir.glob("model.ckpt-1*"))
    good = checkpoint_weights(str(job_dir / "model.ckpt-0"))
    assert all(np.isfinite(value).all() for value in good.values() if value.dtype.kind == "f")

    # A huge but finite one: the weights stay finite for a step, then the loss is NaN.
    assert train(save_interval=100, learning_rate=1e30) == 3
    err = capsys.readouterr().err
    fault = re.search(
        r"training stopped at step (\d+): the loss is (nan|inf)\. The batch held (.*?)\. ", err
    )
    assert fault, err[-3000:]
    assert int(fault.group(1)) in (1, 2)
    batch = fault.group(3).split(", ")
    assert len(batch) == 8 and all(os.path.isfile(path) for path in batch)
    assert tf.train.latest_checkpoint(str(job_dir)) == str(job_dir / "model.ckpt-0")
    for name, value in checkpoint_weights(str(job_dir / "model.ckpt-0")).items():
        np.testing.assert_array_equal(value, good[name], err_msg=name)
