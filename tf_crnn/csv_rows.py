"""CSV files of ``image_path<delimiter>label`` rows: their rows, and the rows that are malformed.

Reading never raises for a bad row: it returns the good rows and the bad ones with their problems,
and each caller decides what a bad row means (training stops or skips it, a checker lists it).
"""

from __future__ import annotations

import os
import posixpath
from dataclasses import dataclass

import tensorflow as tf


class DataError(ValueError):
    """A CSV or image problem, with the file, row and problem in the message."""


@dataclass(frozen=True)
class Row:
    """One CSV row: where it came from and what it says."""

    csv_file: str
    line_number: int  # 1-based line in the CSV file
    image_path: str  # resolved against the CSV's folder
    label: str

    @property
    def where(self) -> str:
        return f"{self.csv_file}, row {self.line_number}"


@dataclass(frozen=True)
class BadRow:
    """A row that cannot be used, and why."""

    csv_file: str
    line_number: int
    problem: str  # e.g. "empty label"; details in parentheses, as in "not valid UTF-8 (byte 3)"

    @property
    def where(self) -> str:
        return f"{self.csv_file}, row {self.line_number}"

    @property
    def kind(self) -> str:
        """The problem without its details, to count rows by problem."""
        return self.problem.split(" (")[0]


@dataclass
class CsvRows:
    """The rows of one CSV file: the usable ones and the malformed ones, each in file order."""

    rows: list[Row]
    bad_rows: list[BadRow]

    def strict(self) -> list[Row]:
        """The rows, or a :class:`DataError` naming the first malformed one."""
        if self.bad_rows:
            bad = self.bad_rows[0]
            raise DataError(f"{bad.where}: {bad.problem}")
        return self.rows


def resolve_image_path(csv_file: str, image_path: str) -> str:
    """``image_path`` as written in ``csv_file``, made absolute against the CSV's folder (any gfile
    scheme)."""
    if "://" in image_path or os.path.isabs(image_path):
        return image_path
    if "://" in csv_file:
        return posixpath.join(posixpath.dirname(csv_file), image_path)
    return os.path.join(os.path.dirname(os.path.abspath(csv_file)), image_path)


def read_csv_rows(csv_file: str, delimiter: str, labels_optional: bool = False) -> CsvRows:
    """The rows of one CSV file, good and malformed.

    Args:
        csv_file: a local or gfile path. Lines end with LF or CRLF; a UTF-8 byte order mark is
            skipped; blank lines are not rows.
        delimiter: the one character between image path and label.
        labels_optional: for prediction, a row may be just an image path; its label is then "".

    Returns:
        :class:`CsvRows`; image paths resolved with :func:`resolve_image_path`.

    Raises:
        DataError: the file does not exist.
    """
    if not tf.io.gfile.exists(csv_file):
        raise DataError(f"{csv_file}: CSV file not found")
    with tf.io.gfile.GFile(csv_file, "rb") as f:
        content = f.read()
    rows, bad_rows = [], []
    for number, raw in enumerate(content.split(b"\n"), start=1):
        raw = raw.rstrip(b"\r")
        if not raw.strip():
            continue
        fields, problem = _split_row(raw, number, delimiter, labels_optional)
        if problem:
            bad_rows.append(BadRow(csv_file, number, problem))
        else:
            image_path = resolve_image_path(csv_file, fields[0].strip())
            rows.append(Row(csv_file, number, image_path, fields[1]))
    return CsvRows(rows, bad_rows)


def _split_row(raw: bytes, number: int, delimiter: str, labels_optional: bool):
    """(image path and label, None) for a good row; (None, its problem) for a malformed one."""
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        return None, f"not valid UTF-8 (byte {error.start})"
    if number == 1 and line.startswith("\ufeff"):
        line = line[1:]
    fields = line.split(delimiter)
    if labels_optional and len(fields) == 1:
        fields.append("")
    if len(fields) < 2:
        return None, f"no {delimiter!r} delimiter between image path and label"
    if len(fields) > 2:
        return None, f"{len(fields)} fields where 2 are expected (image path{delimiter}label)"
    if not fields[0].strip():
        return None, "empty image path"
    if not fields[1] and not labels_optional:
        return None, "empty label"
    return fields, None
