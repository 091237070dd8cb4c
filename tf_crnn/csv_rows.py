"""CSV files of ``image_path<delimiter>label`` rows: their rows, and the rows that are malformed.

Reading never raises for a bad row: it returns the good rows and the bad ones with their problems,
and each caller decides what a bad row means (training stops or skips it, a checker lists it).
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Iterator
from dataclasses import dataclass

import tensorflow as tf

UTF8_BOM = b"\xef\xbb\xbf"  # skipped at the start of a file; refused at the start of a later row
READ_CHUNK_BYTES = 1 << 20  # a CSV file is read this much at a time


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


def image_folder(csv_file: str) -> str:
    """The folder that relative image paths in ``csv_file`` start from, with a trailing ``/`` (any
    gfile scheme)."""
    if "://" in csv_file:
        return posixpath.dirname(csv_file) + "/"
    return os.path.join(os.path.dirname(os.path.abspath(csv_file)), "")


def resolve_image_path(csv_file: str, image_path: str) -> str:
    """``image_path`` as written in ``csv_file``, made absolute against the CSV's folder."""
    if "://" in image_path or os.path.isabs(image_path):
        return image_path
    return image_folder(csv_file) + image_path


def read_csv_rows(csv_file: str, delimiter: str, labels_optional: bool = False) -> CsvRows:
    """The rows of one CSV file, good and malformed (see :func:`iter_csv_rows`)."""
    rows, bad_rows = [], []
    for row in iter_csv_rows(csv_file, delimiter, labels_optional):
        (rows if isinstance(row, Row) else bad_rows).append(row)
    return CsvRows(rows, bad_rows)


def iter_csv_rows(
    csv_file: str, delimiter: str, labels_optional: bool = False
) -> Iterator[Row | BadRow]:
    """The rows of one CSV file in file order, read line by line (a CSV of millions of rows never
    sits in memory whole).

    Args:
        csv_file: a local or gfile path. Lines end with LF or CRLF; a UTF-8 byte order mark is
            skipped; blank lines are not rows. A row holding a NUL byte, a carriage return other
            than its line ending's, or (after the first line) a byte order mark is malformed.
        delimiter: the one character between image path and label.
        labels_optional: for prediction, a row may be just an image path; its label is then "".

    Yields:
        :class:`Row` (image path resolved with :func:`resolve_image_path`) or :class:`BadRow`.

    Raises:
        DataError: the file does not exist.
    """
    if not tf.io.gfile.exists(csv_file):
        raise DataError(f"{csv_file}: CSV file not found")
    with tf.io.gfile.GFile(csv_file, "rb") as f:
        for number, raw in enumerate(_lines(f), start=1):
            raw = raw.rstrip(b"\r")
            if number == 1:
                raw = raw.removeprefix(UTF8_BOM)
            if not raw.strip():
                continue
            fields, problem = _split_row(raw, delimiter, labels_optional)
            if problem:
                yield BadRow(csv_file, number, problem)
            else:
                image_path = resolve_image_path(csv_file, fields[0].strip())
                yield Row(csv_file, number, image_path, fields[1])


def _lines(f) -> Iterator[bytes]:
    """The lines of an open binary GFile, split at each LF (which is dropped), in chunks of
    :data:`READ_CHUNK_BYTES`.

    Not GFile's own line iteration: it deletes every CR, even inside a line, so that a label's
    stray CR would vanish and a file of lone-CR line endings would read as one long row.
    """
    pending: list[bytes] = []
    while chunk := f.read(READ_CHUNK_BYTES):
        pieces = chunk.split(b"\n")
        if len(pieces) > 1:
            yield b"".join([*pending, pieces[0]])
            yield from pieces[1:-1]
            pending = []
        pending.append(pieces[-1])
    if any(pending):
        yield b"".join(pending)


def _split_row(raw: bytes, delimiter: str, labels_optional: bool):
    """(image path and label, None) for a good row; (None, its problem) for a malformed one.

    ``raw`` is the row's line without its line ending (and, on the first line, the byte order mark).
    Bytes that no path or label holds are refused before anything else, each with its likely cause:
    a NUL (TensorFlow's file system cuts a path at it, and reads another file), a carriage return
    left inside (lines ended with a lone CR, or a stray one that would become a unit of the
    alphabet), and a byte order mark after the first line (files joined with ``cat``).
    """
    nul, carriage_return = raw.find(b"\0"), raw.find(b"\r")
    if nul >= 0:
        return None, f"NUL byte in the row (byte {nul}; a UTF-16 file? tf_crnn reads UTF-8)"
    if carriage_return >= 0:
        return None, (
            f"carriage return inside the row (byte {carriage_return}; lines must end with LF or "
            "CRLF, not CR alone)"
        )
    if raw.startswith(UTF8_BOM):
        return None, "byte order mark at the start of the row (were CSV files joined into one?)"
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        return None, f"not valid UTF-8 (byte {error.start})"
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
