"""The job directory's own files: written safely, checked before a run resumes, and locked against a
second trainer.

A job directory outlives the processes that write into it: a trainer may be killed at any moment
(preemption, out of memory, a full disk), rerun with the same command, or started twice by mistake.
Three rules keep its files usable:

- Every file tf_crnn writes there goes through :func:`write_atomically`: a reader, or the next
  start, sees the old file or the new one, never half of one.
- Before the Estimator restores, :func:`newest_valid_checkpoint` checks the checkpoints newest first
  and makes the ``checkpoint`` state file name the newest one that can be read, saying which files
  are damaged. (TensorFlow alone would start over from step 0 when the state file is unreadable or
  names a checkpoint whose ``.index`` is gone, and stop with a raw traceback on a cut ``.data``.)
- :class:`JobDirLock` (``.tf_crnn.lock``) refuses a second trainer while one is alive.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import socket
import threading
import time
import uuid
from dataclasses import dataclass

import tensorflow as tf

logger = logging.getLogger("tf_crnn")

CHECKPOINT_STATE_FILE = "checkpoint"  # TensorFlow's record of the checkpoints a Saver finished
# The Estimator names its checkpoints model.ckpt-<step>.{index,data-00000-of-00001,meta}.
CHECKPOINT_FILE = re.compile(r"^(?P<name>model\.ckpt-(?P<step>\d+))\.(index|data-\d+-of-\d+|meta)$")
DATA_SHARD = re.compile(r"\.data-(?P<shard>\d+)-of-(?P<count>\d+)$")
LOCK_FILE = ".tf_crnn.lock"
LOCK_REFRESH_SECONDS = 30  # how often a live trainer rewrites its lock
# A lock not rewritten for this long belongs to a trainer that is gone (killed, machine lost).
LOCK_ABANDONED_SECONDS = 120
LOCK_POLL_SECONDS = 5  # how often a lock of another host is looked at while waiting to know
# On object stores (no exclusive create) a new lock is read back after this pause: if two trainers
# wrote it at the same moment, the later write is what both read, and only its writer goes on.
REMOTE_LOCK_SETTLE_SECONDS = 1.0


class JobDirError(RuntimeError):
    """The job directory cannot be used as it is; the message says why and what to do."""


# --- writing ------------------------------------------------------------------------------------
def write_atomically(path: str, content: str | bytes) -> None:
    """Writes ``content`` to a temporary file beside ``path``, then renames it to ``path``.

    A process killed during the write leaves ``path`` as it was (the temporary file at worst), so a
    reader never sees half a file. The temporary name is unique, so that several processes writing
    the same file (the tasks of a cluster) do not write into one temporary file.

    Local files: the rename is atomic, but nothing is synced to disk, so this protects against a
    killed process, not against a power cut. gs://: the rename is a copy and a delete; GCS writes
    each object whole, so a reader sees the old object or the new one.
    """
    temporary = f"{path}.tmp-{uuid.uuid4().hex}"
    try:
        with tf.io.gfile.GFile(temporary, "wb" if isinstance(content, bytes) else "w") as f:
            f.write(content)
        tf.io.gfile.rename(temporary, path, overwrite=True)
    except BaseException:
        if tf.io.gfile.exists(temporary):
            tf.io.gfile.remove(temporary)
        raise


# --- checkpoints --------------------------------------------------------------------------------
def checkpoint_problem(prefix: str) -> str | None:
    """Why the checkpoint ``prefix`` (e.g. ``JOB_DIR/model.ckpt-500``) cannot be restored, or None.

    First the cheap checks, for a clear message: the ``.index`` opens, every ``.data`` shard it
    needs is there, and they hold at least the bytes its tensors take (the index records each
    tensor's shape and type, and the shards hold the tensors back to back, so a file cut short is
    smaller). Then every tensor is read, which TensorFlow checks against the CRC32C the index
    stores: this also catches damage inside a file of the right length. The restore that follows
    reads the same bytes, so this costs one more read of the checkpoint at start-up.
    """
    index = f"{prefix}.index"
    if not tf.io.gfile.exists(index):
        return f"{index} is missing"
    try:
        reader = tf.compat.v1.train.NewCheckpointReader(prefix)
    except Exception as error:  # whatever the reader raises, the index cannot be used
        return f"{index} cannot be read ({_first_line(error)})"
    shards = tf.io.gfile.glob(f"{prefix}.data-*-of-*")
    # Each shard's name says how many there are: data-00000-of-00002, data-00001-of-00002.
    expected = {int(DATA_SHARD.search(path)["count"]) for path in shards}
    if not shards or expected != {len(shards)}:
        return f"{prefix}.data-* files are missing ({len(shards)} found)"
    shapes, dtypes = reader.get_variable_to_shape_map(), reader.get_variable_to_dtype_map()
    # Strings are stored with their lengths, so they count as 0 bytes: a lower bound.
    needed = sum(
        math.prod(shapes[name]) * dtypes[name].size for name in shapes if dtypes[name] != tf.string
    )
    held = sum(tf.io.gfile.stat(path).length for path in shards)
    if held < needed:
        files = shards[0] if len(shards) == 1 else f"{prefix}.data-*"
        return f"{files} is cut short: {held} bytes, its index needs {needed}"
    for name in shapes:
        try:
            reader.get_tensor(name)
        except Exception as error:  # a checksum mismatch, a short read, a storage error
            return f"{prefix}.data-* cannot be read at {name} ({_first_line(error)})"
    return None


def newest_valid_checkpoint(job_dir: str) -> str | None:
    """The newest checkpoint of ``job_dir`` that can be restored, named by the ``checkpoint`` state
    file when this returns; None when the job directory has no checkpoint yet.

    Looks at the checkpoints the state file lists, newest first (the Saver lists a checkpoint only
    once it is complete, so the files of an interrupted save are not taken for damage); when the
    state file is missing or unreadable, at every ``model.ckpt-*`` file. Damaged checkpoints are
    named in a warning and left in place (the Saver overwrites them when training reaches their step
    again); the state file is rewritten (atomically, by TensorFlow) only when it must change.

    Raises:
        JobDirError: there are checkpoints and none can be restored; the message lists the files
            to delete to start over.
    """
    candidates, state_problem = _checkpoint_candidates(job_dir)
    damaged: dict[str, str] = {}
    newest = None
    for prefix in candidates:
        problem = checkpoint_problem(prefix)
        if problem is None:
            newest = prefix
            break
        damaged[prefix] = problem
    if not damaged and state_problem is None:
        return newest
    for problem in damaged.values():
        logger.warning("damaged checkpoint: %s", problem)
    if newest is None:
        state_file = os.path.join(job_dir, CHECKPOINT_STATE_FILE)
        files = sorted(f for prefix in damaged for f in tf.io.gfile.glob(f"{prefix}.*"))
        files += [state_file] if tf.io.gfile.exists(state_file) else []
        raise JobDirError(
            f"No checkpoint of {job_dir} can be restored:\n"
            + "".join(f"  {problem}\n" for problem in damaged.values())
            + "To train again from step 0 in this job directory, delete these files (or restore "
            "them from a backup):\n" + "\n".join(f"  {f}" for f in files)
        )
    if state_problem:
        logger.warning("%s: rewritten from the checkpoint files", state_problem)
    logger.warning("resuming from %s, the newest checkpoint that can be restored", newest)
    kept = [prefix for prefix in reversed(candidates) if prefix not in damaged]
    tf.compat.v1.train.update_checkpoint_state(
        job_dir,
        os.path.basename(newest),
        all_model_checkpoint_paths=[os.path.basename(prefix) for prefix in kept],
    )
    return newest


def _checkpoint_candidates(job_dir: str) -> tuple[list[str], str | None]:
    """The checkpoints to try, newest first, and what is wrong with the state file, if anything:
    those it lists, or, when it is missing or unreadable, those whose files are in ``job_dir``."""
    state_file = os.path.join(job_dir, CHECKPOINT_STATE_FILE)
    if tf.io.gfile.exists(state_file):
        try:
            # None when TensorFlow cannot parse it (it says so in its log).
            state = tf.train.get_checkpoint_state(job_dir)
        except ValueError:  # it parsed, but names no checkpoint (an empty file, say)
            state = None
        if state is not None:
            listed = set(state.all_model_checkpoint_paths) | {state.model_checkpoint_path}
            return sorted(listed, key=_step, reverse=True), None
        problem = f"{state_file} cannot be read"
    else:
        problem = f"{state_file} is missing"
    files = tf.io.gfile.glob(os.path.join(job_dir, "model.ckpt-*"))
    names = [CHECKPOINT_FILE.match(os.path.basename(path)) for path in files]
    on_disk = {os.path.join(job_dir, match["name"]) for match in names if match}
    return sorted(on_disk, key=_step, reverse=True), problem if on_disk else None


def _step(prefix: str) -> int:
    match = re.search(r"-(\d+)$", prefix)
    return int(match.group(1)) if match else -1


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


# --- the lock -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class LockOwner:
    """Who holds a job directory's lock, as its lock file says."""

    host: str
    pid: int
    started: str  # when that trainer took the lock (local time, for people)
    refreshed: float  # time.time() when it last rewrote the lock
    token: str  # tells two holders with the same host and pid apart

    def describe(self) -> str:
        age = max(0.0, time.time() - self.refreshed)
        return (
            f"process {self.pid} on host {self.host}, started {self.started}, "
            f"lock refreshed {age:.0f} s ago"
        )


class JobDirLock:
    """``JOB_DIR/.tf_crnn.lock``: one trainer at a time in a job directory.

    The lock file holds its owner's host, process id and start time, and is rewritten every
    ``LOCK_REFRESH_SECONDS`` by a background thread. A lock counts as abandoned, and is taken over
    with a warning, when its process no longer runs on this host, or when it has not been rewritten
    for ``LOCK_ABANDONED_SECONDS`` (its owner ran on a machine that is gone; a lock of another
    host is watched until one or the other is clear). Otherwise :meth:`acquire` refuses with a
    message naming the owner.

    Local folders: the lock file is created with a hard link, which fails when the file exists,
    so of two trainers starting together exactly one gets it. Object stores (gs://) have no such
    exclusive create through ``tf.io.gfile``: the lock is written, then read back after
    ``REMOTE_LOCK_SETTLE_SECONDS``, and only the trainer whose write stayed goes on — a best-effort
    check that catches a second trainer started later, and most started at the same moment.
    """

    def __init__(self, job_dir: str):
        self.job_dir = job_dir
        self.path = os.path.join(job_dir, LOCK_FILE)
        self._owner: LockOwner | None = None
        self._stop = threading.Event()
        self._refresher: threading.Thread | None = None

    def __enter__(self) -> JobDirLock:
        self.acquire()
        return self

    def __exit__(self, *exc_info) -> None:
        self.release()

    def acquire(self) -> None:
        """Takes the lock, taking over an abandoned one, or raises :class:`JobDirError` naming the
        trainer that holds it."""
        me = LockOwner(
            host=socket.gethostname(),
            pid=os.getpid(),
            started=time.strftime("%Y-%m-%d %H:%M:%S %z"),
            refreshed=time.time(),
            token=uuid.uuid4().hex,
        )
        for _ in range(3):  # a lock removed or taken over between our read and our write
            owner = self._read()
            if owner is not None:
                why_abandoned = self._wait_until_abandoned(owner)
                if why_abandoned is not None:  # else it was removed meanwhile
                    logger.warning(
                        "taking over the lock %s (%s): %s",
                        self.path, _describe(owner), why_abandoned,
                    )  # fmt: skip
                    _remove_if_present(self.path)
            if self._create(me):
                break
        else:
            raise self._busy(self._read())
        self._owner = me
        self._stop.clear()
        self._refresher = threading.Thread(target=self._refresh, name="tf_crnn-lock", daemon=True)
        self._refresher.start()

    def release(self) -> None:
        """Removes the lock if this object holds it (it may have been taken over meanwhile)."""
        if self._owner is None:
            return
        self._stop.set()
        if self._refresher is not None:
            self._refresher.join()
        owner = self._read()
        if isinstance(owner, LockOwner) and owner.token == self._owner.token:
            _remove_if_present(self.path)
        self._owner = None

    def _wait_until_abandoned(self, owner: LockOwner | str) -> str | None:
        """Why the lock of ``owner`` no longer protects a live trainer; None when it was removed
        meanwhile. Raises :class:`JobDirError` while that trainer lives.

        On this host the process table tells at once. A trainer on another host shows that it
        lives by refreshing its lock: the lock is watched until it is refreshed (alive: refused)
        or LOCK_ABANDONED_SECONDS old (gone: taken over). So a job restarted on a new machine
        after its old one was killed waits at most that long, and a second trainer started by
        mistake is refused within LOCK_REFRESH_SECONDS.
        """
        why_abandoned = _abandoned(owner)
        if why_abandoned is not None:
            return why_abandoned
        if owner.host == socket.gethostname():
            raise self._busy(owner)
        logger.warning(
            "%s is locked by %s; waiting until it refreshes its lock (then this trainer stops) or "
            "its lock is %d s old (then this trainer takes it over)",
            self.job_dir, owner.describe(), LOCK_ABANDONED_SECONDS,
        )  # fmt: skip
        while True:
            time.sleep(LOCK_POLL_SECONDS)
            now = self._read()
            if now is None:
                return None
            if now != owner:
                raise self._busy(now)
            why_abandoned = _abandoned(owner)
            if why_abandoned is not None:
                return why_abandoned

    def _create(self, me: LockOwner) -> bool:
        """Writes our lock file unless another trainer's is there; True when ours is."""
        content = json.dumps(me.__dict__)
        if "://" not in self.path:
            # tf.io.gfile has no exclusive create: link a complete file into place, which fails if
            # the lock exists, so nobody ever reads a lock file half written.
            temporary = f"{self.path}.{me.token}.tmp"
            with open(temporary, "w", encoding="utf-8") as f:
                f.write(content)
            try:
                os.link(temporary, self.path)
                return True
            except FileExistsError:
                return False
            finally:
                os.remove(temporary)
        if tf.io.gfile.exists(self.path):
            return False
        write_atomically(self.path, content)
        time.sleep(REMOTE_LOCK_SETTLE_SECONDS)
        owner = self._read()
        return isinstance(owner, LockOwner) and owner.token == me.token

    def _read(self) -> LockOwner | str | None:
        """The lock's owner; None when there is no lock; a string saying why when the file cannot
        be read as a lock."""
        try:
            with tf.io.gfile.GFile(self.path, "r") as f:
                text = f.read()
        except tf.errors.NotFoundError:
            return None
        try:
            return LockOwner(**json.loads(text))
        except (ValueError, TypeError) as error:
            return f"{self.path} is not a lock file tf_crnn wrote ({_first_line(error)})"

    def _refresh(self) -> None:
        """Rewrites the lock every LOCK_REFRESH_SECONDS, so that other hosts see it is alive."""
        while not self._stop.wait(LOCK_REFRESH_SECONDS):
            try:
                owner = self._read()
                if not (isinstance(owner, LockOwner) and owner.token == self._owner.token):
                    logger.warning(
                        "the lock %s was taken over (%s): another trainer may be writing this "
                        "job directory too", self.path, _describe(owner),
                    )  # fmt: skip
                    return
                self._owner = LockOwner(**{**self._owner.__dict__, "refreshed": time.time()})
                write_atomically(self.path, json.dumps(self._owner.__dict__))
            except tf.errors.OpError as error:  # a storage hiccup: try again at the next refresh
                logger.warning("could not refresh the lock %s: %s", self.path, _first_line(error))

    def _busy(self, owner: LockOwner | str | None) -> JobDirError:
        return JobDirError(
            f"{self.job_dir} is in use by another trainer: {_describe(owner)} ({self.path}). "
            "Two trainers in one job directory would overwrite each other's checkpoints: stop the "
            "other one, or use another --job-dir. If it is gone without a clean exit (its machine "
            f"was lost), its lock is taken over {LOCK_ABANDONED_SECONDS} s after its last "
            f"refresh; or delete {self.path}."
        )


def _describe(owner: LockOwner | str | None) -> str:
    if isinstance(owner, LockOwner):
        return owner.describe()
    return "the lock was removed" if owner is None else owner


def _abandoned(owner: LockOwner | str) -> str | None:
    """Why the lock of ``owner`` no longer protects a live trainer, or None while it may."""
    if isinstance(owner, str):
        return owner
    if owner.host == socket.gethostname():
        if owner.pid == os.getpid():
            # Not held by this process (it would not be acquiring): an earlier process with the same
            # id, as in a restarted container.
            return f"it was left by an earlier process {owner.pid}"
        if not _process_runs(owner.pid):
            return f"process {owner.pid} no longer runs"
    age = time.time() - owner.refreshed
    if age > LOCK_ABANDONED_SECONDS:
        return f"it was last refreshed {age:.0f} s ago"
    return None


def _process_runs(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it runs, as another user
        return True
    return True


def _remove_if_present(path: str) -> None:
    try:
        tf.io.gfile.remove(path)
    except tf.errors.NotFoundError:
        pass
