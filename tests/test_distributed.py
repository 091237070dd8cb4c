"""Real multi-process training on 127.0.0.1, as a cloud service launches it through TF_CONFIG.

Each test starts ``python -m tf_crnn.task`` processes with their own TF_CONFIG on free loopback
ports, waits for them with timeouts, and always ends every process it started (a parameter server
never exits by itself). Refusals that need no cluster (a distribution that cannot apply, a batch
that does not split) are tested in test_cluster.py; the one here needs two logical CPUs.
"""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import tensorflow as tf
from helpers import free_ports, job_args, tiny_flags

from tf_crnn.demo import generate_demo_dataset

pytestmark = pytest.mark.distributed

TIMEOUT_SECONDS = 240
# Starts TensorFlow with two logical CPUs, then runs the task: a stand-in for a machine with 2 GPUs.
TWO_CPUS_LAUNCHER = """
import sys, tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from tf_crnn import task
sys.exit(task.main(sys.argv[1:]))
"""


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return generate_demo_dataset(
        str(tmp_path_factory.mktemp("data")), num_train=64, num_eval=16, seed=9, progress=False
    )


def task_args(job_dir, data, steps, *extra):
    train_csv, eval_csv = data
    flags = tiny_flags(
        train_steps=steps, save_interval=10, eval_throttle_secs=1, log_step_count_steps=10
    )
    return job_args(job_dir, train_csv, eval_csv, *flags, *extra)


class Cluster:
    """Processes started with their own TF_CONFIG; ended (all of them) when the block exits."""

    def __init__(self, tmp_path):
        self.tmp_path = tmp_path
        self.processes = {}

    def start(self, name, command, tf_config=None):
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
        if tf_config is not None:
            env["TF_CONFIG"] = json.dumps(tf_config)
        log = open(self.tmp_path / f"{name}.log", "w")
        self.processes[name] = (
            subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT),
            log,
        )

    def wait(self, name):
        process, log = self.processes[name]
        try:
            code = process.wait(timeout=max(1, self.deadline - time.time()))
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGUSR1)  # tf_crnn.task then prints every thread's stack
            time.sleep(2)
            log.flush()
            pytest.fail(
                f"{name} did not finish within {TIMEOUT_SECONDS} s:\n{self.output(name)[-6000:]}"
            )
        log.flush()
        assert code == 0, f"{name} exited with {code}:\n{self.output(name)[-3000:]}"
        return self.output(name)

    def output(self, name):
        return (self.tmp_path / f"{name}.log").read_text(errors="replace")

    def __enter__(self):
        self.deadline = time.time() + TIMEOUT_SECONDS
        return self

    def __exit__(self, *exc):
        for process, log in self.processes.values():
            if process.poll() is None:
                process.kill()
            process.wait(timeout=30)
            log.close()
        assert all(process.poll() is not None for process, _ in self.processes.values())


def task_command(*args):
    return [sys.executable, "-m", "tf_crnn.task", *args]


def eval_tags(job_dir):
    return {
        value.tag
        for path in tf.io.gfile.glob(str(job_dir / "eval" / "events.out.tfevents.*"))
        for event in tf.compat.v1.train.summary_iterator(path)
        for value in event.summary.value
    }


@pytest.mark.parametrize("distribution", ["none", "parameter_server"])
def test_chief_worker_parameter_server_and_evaluator(data, tmp_path, distribution):
    """Between-graph replication (distribution none) and the compat.v1 ParameterServerStrategy."""
    job_dir = tmp_path / "job"
    chief, worker, ps = (f"127.0.0.1:{port}" for port in free_ports(3))
    cluster = {"chief": [chief], "worker": [worker], "ps": [ps]}
    args = task_args(job_dir, data, 40, "--distribution", distribution)
    with Cluster(tmp_path) as processes:
        for task_type in ("ps", "chief", "worker", "evaluator"):
            # The worker stops early (global step 5), so the chief must finish and predict without
            # it.
            task_args_ = args + ["--train_steps", "5"] if task_type == "worker" else args
            processes.start(
                task_type,
                task_command(*task_args_),
                {"cluster": cluster, "task": {"type": task_type, "index": 0}},
            )
        chief_out = processes.wait("chief")
        worker_out = processes.wait("worker")
        evaluator_out = processes.wait("evaluator")
        ps_process = processes.processes["ps"][0]
        assert ps_process.poll() is None, "the parameter server should still be serving"
    assert ps_process.poll() is not None  # ended by the test

    assert int(tf.train.latest_checkpoint(str(job_dir)).rsplit("-", 1)[1]) >= 40
    assert "finished: global step" in chief_out
    ran = int(worker_out.split("worker 0 finished after running ")[1].split()[0])
    assert ran > 0, worker_out[-2000:]
    assert "evaluator 0 finished" in evaluator_out
    assert {"cer", "word_accuracy"} <= eval_tags(job_dir)
    assert tf.io.gfile.glob(str(job_dir / "export" / "latest" / "*" / "saved_model.pb"))


def test_multi_worker_mirrored(data, tmp_path):
    job_dir = tmp_path / "job"
    chief, worker = (f"127.0.0.1:{port}" for port in free_ports(2))
    cluster = {"chief": [chief], "worker": [worker]}
    args = task_args(job_dir, data, 20, "--distribution", "multi_worker_mirrored")
    with Cluster(tmp_path) as processes:
        for task_type in ("chief", "worker"):
            processes.start(
                task_type,
                task_command(*args),
                {"cluster": cluster, "task": {"type": task_type, "index": 0}},
            )
        chief_out = processes.wait("chief")
        worker_out = processes.wait("worker")
    assert tf.train.latest_checkpoint(str(job_dir)).endswith("model.ckpt-20")
    # Synchronous training: both ran every step.
    assert "worker 0 finished after running 20 training steps" in worker_out
    assert "finished: global step 20, 20 steps trained" in chief_out


def test_mirrored_over_two_logical_cpus(data, tmp_path):
    job_dir = tmp_path / "job"
    args = task_args(
        job_dir,
        data,
        10,
        "--distribution",
        "mirrored",
        "--param",
        'mirrored_devices=["/cpu:0","/cpu:1"]',
        "--verbosity",
        "INFO",
    )
    with Cluster(tmp_path) as processes:
        processes.start("mirrored", [sys.executable, "-c", TWO_CPUS_LAUNCHER, *args])
        out = processes.wait("mirrored")
    assert (
        "Using MirroredStrategy with devices ('/job:localhost/replica:0/task:0/device:CPU:0', "
        "'/job:localhost/replica:0/task:0/device:CPU:1')" in out
    )
    assert "finished: global step 10, 10 steps trained" in out
    assert tf.io.gfile.glob(str(job_dir / "export" / "latest" / "*" / "saved_model.pb"))


def test_global_batch_that_does_not_split_over_the_replicas_is_refused(data, tmp_path):
    args = task_args(
        tmp_path / "job",
        data,
        5,
        "--distribution",
        "mirrored",
        "--param",
        'mirrored_devices=["/cpu:0","/cpu:1"]',
        "--train_batch_size",
        "7",
    )
    result = subprocess.run(
        [sys.executable, "-c", TWO_CPUS_LAUNCHER, *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_SECONDS,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    assert result.returncode == 2
    assert "train_batch_size: 7 images do not split evenly over the 2 replicas" in result.stderr
