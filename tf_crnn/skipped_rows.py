"""Rows the input pipeline meets that cannot be used: stop naming file and row, or skip and count.

The start-up check (``checks.py``) catches bad rows before training, but an image can be deleted,
truncated or become unreadable while a run of days goes on, and a sampled check (large data sets)
has not seen every image. Such a row reaches :meth:`SkippedRows.handle` from inside ``tf.data``:

- without ``skip_bad_samples`` it raises :class:`BadRowError`, whose message starts with
  :data:`MARKER`, so that ``task.py`` can report file, row and problem in one line instead of a
  TensorFlow traceback;
- with it, the row is skipped, logged (the first ones, then every 100th), counted, and listed in
  ``skipped_rows.csv`` in the job directory, rewritten whole (atomically) at each new row.

A label too long for its image's CTC time steps is always skipped and counted, never an error.
"""

from __future__ import annotations

import logging
import threading

import tensorflow as tf

from tf_crnn.constants import SKIPPED_ROWS_FILE
from tf_crnn.job_files import write_atomically

logger = logging.getLogger("tf_crnn")

MARKER = "tf_crnn: bad row met during training: "
# How many rows are logged one by one before only every LOG_EVERY-th is.
LOGGED_ONE_BY_ONE, LOG_EVERY = 10, 100
# Rows listed in skipped_rows.csv; later ones are only counted.
LISTED_AT_MOST = 10_000


class BadRowError(RuntimeError):
    """A row that cannot be used, met while training without ``skip_bad_samples``."""


def bad_row_message(error: tf.errors.OpError) -> str | None:
    """The one-line message of a :class:`BadRowError` that stopped training, or None if
    ``error`` is another error. (TensorFlow wraps it, traceback and all, in an OpError.)"""
    start = error.message.find(MARKER)
    if start < 0:
        return None
    return error.message[start + len(MARKER) :].splitlines()[0]


class SkippedRows:
    """The account of the rows a run's input pipelines dropped, shared by its training and
    evaluation pipelines (one per job directory and process, see :func:`for_job_dir`)."""

    def __init__(self, report_path: str | None):
        self.report_path = report_path
        self.counts: dict[str, int] = {}
        self._seen: set[tuple[str, int]] = set()
        self._listed: list[str] = []
        self._lock = threading.Lock()

    def handle(
        self, csv_file: str, line_number: int, problem: str, skip: bool, image_path: str = ""
    ) -> None:
        """Raises :class:`BadRowError` unless ``skip``; otherwise records the row once."""
        where = f"{csv_file}, row {line_number}"
        if not skip:
            raise BadRowError(f"{MARKER}{where}: {image_path}: {problem}")
        with self._lock:
            if (csv_file, line_number) in self._seen:  # met again in a later epoch
                return
            self._seen.add((csv_file, line_number))
            kind = problem.split(" (")[0]
            self.counts[kind] = self.counts.get(kind, 0) + 1
            total = sum(self.counts.values())
            if total <= LOGGED_ONE_BY_ONE or total % LOG_EVERY == 0:
                logger.warning("skipped %s: %s (%d rows skipped so far)", where, problem, total)
            if len(self._listed) < LISTED_AT_MOST:
                self._listed.append(f"{where};{image_path};{problem}")
                self._write()

    def _write(self) -> None:
        if self.report_path is None:
            return
        write_atomically(self.report_path, "row;image;problem\n" + "\n".join(self._listed) + "\n")


_ACCOUNTS: dict[str | None, SkippedRows] = {}


def for_job_dir(job_dir: str | None) -> SkippedRows:
    """The one account of ``job_dir`` in this process (None: not written to a file)."""
    report_path = None if job_dir is None else f"{job_dir.rstrip('/')}/{SKIPPED_ROWS_FILE}"
    return _ACCOUNTS.setdefault(report_path, SkippedRows(report_path))
