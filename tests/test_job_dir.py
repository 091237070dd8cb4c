"""The job directory's faults (tf_crnn/job_files.py, resume.py): files written atomically, damaged
checkpoints and params.json, warm starts into a new job directory, and a second trainer refused.

Checkpoint repairs run on small checkpoints made by a Saver; three runs of ``tf_crnn.task`` show
the whole path: a resume past a cut checkpoint, and a warm start with another optimizer and
alphabet (from the session's trained ``job``).
"""

import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import tensorflow as tf
from helpers import DIGIT_READER, job_args, tiny_flags

from tf_crnn import job_files, resume, task
from tf_crnn.config import Params, ParamsError
from tf_crnn.job_files import JobDirError, JobDirLock, newest_valid_checkpoint
from tf_crnn.predict import find_saved_model


@pytest.fixture
def tf_crnn_log():
    """The messages tf_crnn logs during the test."""
    messages = []
    handler = logging.Handler()
    handler.emit = lambda record: messages.append(record.getMessage())
    logger = logging.getLogger("tf_crnn")
    level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    yield messages
    logger.removeHandler(handler)
    logger.setLevel(level)


# --- writing ------------------------------------------------------------------------------------
def test_write_atomically_replaces_the_file_whole(tmp_path, ram_root):
    tf.io.gfile.makedirs(ram_root)
    for folder in (str(tmp_path), ram_root):
        path = f"{folder}/notes.txt"
        job_files.write_atomically(path, "old")
        job_files.write_atomically(path, "new, and longer")
        job_files.write_atomically(f"{folder}/image.png", b"\x89PNG")
        with tf.io.gfile.GFile(path) as f:
            assert f.read() == "new, and longer"
        assert sorted(tf.io.gfile.listdir(folder)) == ["image.png", "notes.txt"]


def test_a_write_killed_halfway_leaves_the_old_params_json(tmp_path, monkeypatch):
    path = str(tmp_path / "params.json")
    old = Params(learning_rate=0.01)
    old.to_json(path)
    real_write = tf.io.gfile.GFile.write

    def killed_halfway(self, content):
        real_write(self, content[: len(content) // 2])
        raise KeyboardInterrupt  # as a kill would stop the process here

    monkeypatch.setattr(tf.io.gfile.GFile, "write", killed_halfway)
    with pytest.raises(KeyboardInterrupt):
        Params(learning_rate=0.5).to_json(path)
    monkeypatch.undo()
    assert Params.from_json(path) == old
    assert os.listdir(tmp_path) == ["params.json"]


# --- damaged checkpoints ------------------------------------------------------------------------
def save_checkpoints(folder, steps=(1, 2, 3), variables=("crnn/conv1/kernel",)) -> None:
    """Checkpoints model.ckpt-<step> of ``folder`` as a Saver writes them; each variable holds the
    step."""
    with tf.Graph().as_default():
        global_step = tf.compat.v1.train.get_or_create_global_step()
        values = [
            tf.compat.v1.get_variable(name, initializer=tf.zeros([3, 4])) for name in variables
        ]
        saver = tf.compat.v1.train.Saver(max_to_keep=10)
        with tf.compat.v1.Session() as session:
            session.run(tf.compat.v1.global_variables_initializer())
            for step in steps:
                session.run(
                    [global_step.assign(step)]
                    + [v.assign(tf.fill([3, 4], 1.0 * step)) for v in values]
                )
                saver.save(session, os.path.join(folder, "model.ckpt"), global_step=step)


def kernel_of(checkpoint) -> float:
    return float(tf.train.load_checkpoint(checkpoint).get_tensor("crnn/conv1/kernel")[0, 0])


def cut(path):
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)


def flip_a_byte(path):
    with open(path, "r+b") as f:
        f.seek(20)
        byte = f.read(1)
        f.seek(20)
        f.write(bytes([byte[0] ^ 0xFF]))


DAMAGES = {
    "data cut short": (lambda p: cut(f"{p}.data-00000-of-00001"), "is cut short"),
    "index deleted": (lambda p: os.remove(f"{p}.index"), "model.ckpt-3.index is missing"),
    "data deleted": (lambda p: os.remove(f"{p}.data-00000-of-00001"), "files are missing"),
    "index garbled": (lambda p: cut(f"{p}.index"), "model.ckpt-3.index cannot be read"),
    "a byte flipped": (
        lambda p: flip_a_byte(f"{p}.data-00000-of-00001"),
        "Checksum does not match",
    ),
}


@pytest.mark.parametrize("damage", DAMAGES)
def test_a_damaged_newest_checkpoint_is_skipped_with_a_warning(tmp_path, tf_crnn_log, damage):
    save_checkpoints(str(tmp_path))
    harm, problem = DAMAGES[damage]
    harm(str(tmp_path / "model.ckpt-3"))
    newest = newest_valid_checkpoint(str(tmp_path))
    assert newest == str(tmp_path / "model.ckpt-2") and kernel_of(newest) == 2.0
    warning = next(m for m in tf_crnn_log if m.startswith("damaged checkpoint"))
    assert problem in warning and "model.ckpt-3" in warning
    assert any(m.startswith(f"resuming from {newest}") for m in tf_crnn_log)
    # What the Estimator restores from now.
    assert tf.train.latest_checkpoint(str(tmp_path)) == newest
    assert list(tf.train.get_checkpoint_state(str(tmp_path)).all_model_checkpoint_paths) == [
        str(tmp_path / "model.ckpt-1"),
        newest,
    ]


@pytest.mark.parametrize("content", [b"\x00\x17garbage\xff", b"", b'model_checkpoint_path: "mod'])
def test_a_garbled_checkpoint_state_file_is_rebuilt_from_the_files(tmp_path, tf_crnn_log, content):
    save_checkpoints(str(tmp_path))
    (tmp_path / "checkpoint").write_bytes(content)
    assert newest_valid_checkpoint(str(tmp_path)) == str(tmp_path / "model.ckpt-3")
    assert f"{tmp_path / 'checkpoint'} cannot be read: rewritten from the checkpoint files" in (
        tf_crnn_log
    )
    assert tf.train.latest_checkpoint(str(tmp_path)) == str(tmp_path / "model.ckpt-3")
    # Missing altogether: rebuilt too (TensorFlow alone would start over from step 0).
    os.remove(tmp_path / "checkpoint")
    assert newest_valid_checkpoint(str(tmp_path)) == str(tmp_path / "model.ckpt-3")
    assert tf.train.latest_checkpoint(str(tmp_path)) == str(tmp_path / "model.ckpt-3")


def test_sound_checkpoints_and_new_job_dirs_are_left_alone(tmp_path, ram_root, tf_crnn_log):
    assert newest_valid_checkpoint(str(tmp_path)) is None
    tf.io.gfile.makedirs(ram_root)
    save_checkpoints(ram_root, steps=(5, 10))
    state = tf.io.gfile.stat(f"{ram_root}/checkpoint")
    assert newest_valid_checkpoint(ram_root) == f"{ram_root}/model.ckpt-10"
    assert tf.io.gfile.stat(f"{ram_root}/checkpoint").mtime_nsec == state.mtime_nsec
    assert tf_crnn_log == []


def test_with_no_checkpoint_left_the_message_says_what_to_delete(tmp_path):
    save_checkpoints(str(tmp_path), steps=(1, 2))
    cut(tmp_path / "model.ckpt-2.data-00000-of-00001")
    os.remove(tmp_path / "model.ckpt-1.index")
    with pytest.raises(JobDirError) as error:
        newest_valid_checkpoint(str(tmp_path))
    message = str(error.value)
    assert "No checkpoint of" in message and "is cut short" in message
    assert "model.ckpt-1.index is missing" in message
    to_delete = message.split("delete these files (or restore them from a backup):\n")[1]
    assert sorted(line.strip() for line in to_delete.splitlines()) == sorted(
        str(tmp_path / name)
        for name in [
            "checkpoint",
            "model.ckpt-1.data-00000-of-00001",
            "model.ckpt-1.meta",
            "model.ckpt-2.data-00000-of-00001",
            "model.ckpt-2.index",
            "model.ckpt-2.meta",
        ]
    )


@pytest.fixture
def job_copy(job, tmp_path):
    """A copy of the session's trained job (model.ckpt-0 and its last checkpoint), to damage."""
    copy = str(tmp_path / "job")
    shutil.copytree(job.job_dir, copy)
    return copy


def test_task_resumes_past_a_cut_checkpoint_and_releases_its_lock(job, job_copy, lines, capsys):
    last = os.path.basename(job.checkpoint)  # model.ckpt-<the job's steps>
    cut(os.path.join(job_copy, f"{last}.data-00000-of-00001"))
    args = job_args(job_copy, lines.csv, lines.csv, "--train-steps", "1", "--eval-steps", "1")
    assert task.main(args) == 0
    out, err = capsys.readouterr()
    assert f"{last}.data-00000-of-00001 is cut short" in err
    assert f"resuming from {job_copy}/model.ckpt-0" in err
    assert "finished: global step 1, 1 steps trained" in out
    assert not os.path.exists(os.path.join(job_copy, job_files.LOCK_FILE))


def test_a_garbled_params_json_stops_with_what_to_do(job_copy, capsys):
    params_path = os.path.join(job_copy, "params.json")
    with open(params_path, "r+") as f:
        f.truncate(100)
    assert task.main(job_args(job_copy, "train.csv", "eval.csv")) == 2
    err = capsys.readouterr().err
    assert f"{params_path} is not valid JSON" in err
    copy = find_saved_model(job_copy) + "/assets.extra/params.json"
    assert f"To continue the run, copy {copy} to {params_path}" in err
    assert "To start over, use a new --job-dir" in err
    assert "Traceback" not in err


# --- warm start ---------------------------------------------------------------------------------
def test_warm_start_with_another_optimizer_and_alphabet_starts_from_the_old_weights(
    job, lines, tmp_path, capsys
):
    new_dir = str(tmp_path / "finetuned")
    flags = tiny_flags(
        **{**DIGIT_READER, "alphabet_string": "0123456789+-"},
        optimizer="momentum",
        train_steps=1,
        eval_steps=1,
    )
    args = job_args(new_dir, lines.csv, lines.csv, *flags, "--warm-start-from", job.job_dir)
    assert task.main(args) == 0
    assert "finished: global step 1" in capsys.readouterr().out
    # model.ckpt-0 holds the weights the run started from, before its first step.
    source, started = (
        tf.train.load_checkpoint(c) for c in (job.checkpoint, f"{new_dir}/model.ckpt-0")
    )
    for name in (
        "crnn/conv1/kernel",
        "crnn/bn5/moving_mean",
        "crnn/bilstm2/forward_lstm_1/lstm_cell/kernel",
    ):
        np.testing.assert_array_equal(started.get_tensor(name), source.get_tensor(name))
    # The output layer starts afresh: 12 units and the blank instead of 10 and the blank.
    assert started.get_tensor("crnn/logits/kernel").shape == (64, 13)
    names = started.get_variable_to_shape_map()
    assert "crnn/conv1/kernel/Momentum" in names and "crnn/conv1/kernel/Adam" not in names
    assert Params.from_json(f"{new_dir}/params.json").warm_start_from == job.job_dir


def test_warm_start_with_the_same_alphabet_keeps_the_output_layer(job, tmp_path):
    params = job.params.with_overrides({"optimizer": "rmsprop", "warm_start_from": job.job_dir})
    settings = resume.warm_start_settings(params, str(tmp_path / "new"))
    assert settings.ckpt_to_initialize_from == job.checkpoint
    patterns = settings.vars_to_warm_start
    assert "crnn/logits/kernel:0$" in patterns and r"crnn/conv1/kernel:0$" in patterns
    assert not [p for p in patterns if "Adam" in p or not p.startswith("crnn/")]
    # A SavedModel of the job works too.
    from_export = params.with_overrides({"warm_start_from": job.export})
    settings = resume.warm_start_settings(from_export, str(tmp_path / "new"))
    assert settings.ckpt_to_initialize_from == f"{job.export}/variables/variables"


def test_warm_start_refuses_another_network_and_its_own_job_dir(job, tmp_path):
    params = job.params.with_overrides({"rnn_units": 48, "warm_start_from": job.job_dir})
    with pytest.raises(ParamsError) as error:
        resume.warm_start_settings(params, str(tmp_path / "new"))
    assert "rnn_units: source 32, now 48" in str(error.value)
    same = job.params.with_overrides({"warm_start_from": job.job_dir + "/"})
    with pytest.raises(ParamsError, match="is this job directory; to continue it, leave"):
        resume.warm_start_settings(same, job.job_dir)
    nowhere = job.params.with_overrides({"warm_start_from": str(tmp_path / "nothing")})
    with pytest.raises(ParamsError, match="is neither a checkpoint"):
        resume.warm_start_settings(nowhere, str(tmp_path / "new"))


# --- two trainers -------------------------------------------------------------------------------
HOLD_THE_LOCK = """
import sys, time
from tf_crnn.job_files import JobDirLock
JobDirLock(sys.argv[1]).acquire()
print("locked", flush=True)
time.sleep(120)
"""


def test_a_second_trainer_is_refused_until_the_first_is_gone(tmp_path, capsys):
    job_dir = str(tmp_path / "job")
    os.makedirs(job_dir)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_THE_LOCK, job_dir], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline() == "locked\n"
        assert task.main(job_args(job_dir, "train.csv", "eval.csv")) == 2
        err = capsys.readouterr().err
        assert f"is in use by another trainer: process {holder.pid} on host " in err
        assert socket.gethostname() in err and "stop the other one, or use another --job-dir" in err
    finally:
        holder.kill()
        holder.wait()
    # Killed without a chance to clean up: its lock is taken over.
    assert task.main(job_args(job_dir, "train.csv", "eval.csv")) == 2
    err = capsys.readouterr().err
    assert f"taking over the lock {job_dir}/{job_files.LOCK_FILE} (process {holder.pid}" in err
    assert f"process {holder.pid} no longer runs" in err
    assert "train.csv" in err  # it went on, to the data
    assert os.listdir(job_dir) == []  # and left no lock behind


def lock_file_of(host, pid, refreshed):
    return json.dumps(
        {"host": host, "pid": pid, "started": "then", "refreshed": refreshed, "token": "t"}
    )


def test_a_lock_of_another_host_is_watched_until_refreshed_or_old(
    tmp_path, ram_root, monkeypatch, tf_crnn_log
):
    monkeypatch.setattr(job_files, "REMOTE_LOCK_SETTLE_SECONDS", 0.0)
    monkeypatch.setattr(job_files, "LOCK_POLL_SECONDS", 0.05)
    tf.io.gfile.makedirs(ram_root)
    for job_dir in (str(tmp_path), ram_root):
        path = f"{job_dir}/{job_files.LOCK_FILE}"

        def other_host_writes_its_lock(path=path):
            job_files.write_atomically(path, lock_file_of("elsewhere", 7, time.time()))

        # Alive: the other host refreshes its lock while this one watches.
        monkeypatch.setattr(job_files, "LOCK_ABANDONED_SECONDS", 30)
        other_host_writes_its_lock()
        refresh = threading.Timer(0.2, other_host_writes_its_lock)
        refresh.start()
        with pytest.raises(JobDirError, match="process 7 on host elsewhere, started then"):
            JobDirLock(job_dir).acquire()
        refresh.join()
        assert "waiting until it refreshes its lock" in tf_crnn_log[-1]
        # Gone: not refreshed for LOCK_ABANDONED_SECONDS.
        monkeypatch.setattr(job_files, "LOCK_ABANDONED_SECONDS", 0.3)
        other_host_writes_its_lock()
        with JobDirLock(job_dir):
            assert "taking over" in tf_crnn_log[-1] and "it was last refreshed" in tf_crnn_log[-1]
            with tf.io.gfile.GFile(path) as f:
                assert json.load(f)["pid"] == os.getpid()
        assert not tf.io.gfile.exists(path)
        job_files.write_atomically(path, "{not json")
        with JobDirLock(job_dir):
            assert "is not a lock file tf_crnn wrote" in tf_crnn_log[-1]


def test_a_live_trainer_refreshes_its_lock(tmp_path, monkeypatch):
    monkeypatch.setattr(job_files, "LOCK_REFRESH_SECONDS", 0.05)
    path = tmp_path / job_files.LOCK_FILE
    with JobDirLock(str(tmp_path)):
        first = json.loads(path.read_text())["refreshed"]
        time.sleep(0.3)
        assert json.loads(path.read_text())["refreshed"] > first
    assert not path.exists()
