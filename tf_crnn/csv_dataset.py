"""CSV files of ``image_path<delimiter>label`` rows, read inside ``tf.data``.

Nothing grows with the number of rows: only the file names are graph constants, the lines are
streamed, and a million-row CSV makes the same graph (and checkpoint ``.meta``) as a ten-row one.
The rules are those of ``csv_rows.read_csv_rows`` (the start-up check's reader): lines end with LF
or CRLF, a UTF-8 byte order mark on the first line is skipped, blank lines are not rows, and a row
is two fields, a non-empty image path and a non-empty UTF-8 label, with no NUL byte and no byte
order mark after the first line. Malformed rows are dropped here because the start-up check has
already stopped on them or counted them (``checks.py``). One difference remains: TensorFlow's line
reader deletes a carriage return inside a line, which the check calls malformed; so with
``skip_bad_samples`` such a row, counted as skipped, is read with the carriage return removed.

Each element is a dict of scalar tensors: ``csv_file``, ``line_number`` (1-based, as the check
names rows), ``image_path`` (resolved against the CSV's folder) and ``label``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import tensorflow as tf

from tf_crnn.csv_rows import image_folder

CSV_FILE, LINE_NUMBER, IMAGE_PATH, LABEL = "csv_file", "line_number", "image_path", "label"
# A path that is used as written: absolute, or with a scheme such as gs:// or ram://.
_ABSOLUTE_PATH = "/.*|[A-Za-z][A-Za-z0-9+.-]*://.*"
# Files read at the same time when several CSV files are given.
_FILES_READ_AT_ONCE = 4
_LINES_PER_BLOCK = 256


@dataclass(frozen=True)
class Shard:
    """This input pipeline's share of the data: every ``count``-th element from ``index``."""

    count: int
    index: int

    def __post_init__(self):
        if not 0 <= self.index < self.count:
            raise ValueError(f"shard index {self.index} is not in [0, {self.count})")


def csv_row_dataset(
    csv_files: Sequence[str],
    delimiter: str,
    shard: Shard | None = None,
    interleave_files: bool = False,
) -> tf.data.Dataset:
    """The well-formed rows of ``csv_files``: file after file, or with ``interleave_files`` (for
    training) several files line by line, so that a shuffle buffer holds rows of each.

    With a ``shard``, by file when there are at least as many files as shards (each pipeline then
    reads only its own files), else by row (each pipeline reads every line and keeps its share).
    """
    files = [str(csv_file) for csv_file in csv_files]
    folders = [image_folder(csv_file) for csv_file in files]
    file_dataset = tf.data.Dataset.from_tensor_slices((files, folders))
    by_file = shard is not None and shard.count > 1 and len(files) >= shard.count
    if by_file:
        file_dataset = file_dataset.shard(shard.count, shard.index)

    def lines_of(csv_file, folder):
        # Parsed a block of lines at a time: the string ops cost far less per line on a vector.
        numbered = tf.data.TextLineDataset(csv_file).enumerate(start=1).batch(_LINES_PER_BLOCK)
        parsed = numbered.map(
            lambda numbers, lines: _parse_lines(csv_file, folder, numbers, lines, delimiter)
        )
        return parsed.unbatch()

    rows = file_dataset.interleave(
        lines_of,
        cycle_length=min(len(files), _FILES_READ_AT_ONCE) if interleave_files else 1,
        block_length=1,
    )
    rows = rows.filter(lambda row, well_formed: well_formed).map(lambda row, _: row)
    if shard is not None and shard.count > 1 and not by_file:
        rows = rows.shard(shard.count, shard.index)
    return rows


def _parse_lines(csv_file, folder, numbers, lines, delimiter):
    """(row dicts, whether each line is a well-formed row) for a block of lines of one file."""
    first_line = tf.equal(numbers, 1)
    without_bom = tf.strings.regex_replace(lines, "^\ufeff", "")
    # A byte order mark may only start the file; a NUL byte would cut the path in TensorFlow.
    stray_bom = tf.logical_and(
        tf.logical_not(first_line), tf.strings.regex_full_match(lines, "\ufeff.*")
    )
    has_nul = tf.logical_not(tf.strings.regex_full_match(lines, "[^\\x00]*"))
    lines = tf.where(first_line, without_bom, lines)
    fields = tf.strings.split(lines, delimiter)
    padded = fields.to_tensor("", shape=[None, 2])  # the first two fields of each line
    paths, labels = tf.strings.strip(padded[:, 0]), padded[:, 1]
    utf8 = tf.equal(tf.strings.unicode_transcode(lines, "UTF-8", "UTF-8", errors="replace"), lines)
    well_formed = (
        utf8
        & tf.logical_not(stray_bom)
        & tf.logical_not(has_nul)
        & tf.equal(fields.row_lengths(), 2)
        & tf.not_equal(paths, "")
        & tf.not_equal(labels, "")
    )
    resolved = tf.where(
        tf.strings.regex_full_match(paths, _ABSOLUTE_PATH),
        paths,
        tf.strings.join([tf.fill(tf.shape(paths), folder), paths]),
    )
    rows = {
        CSV_FILE: tf.fill(tf.shape(paths), csv_file),
        LINE_NUMBER: numbers,
        IMAGE_PATH: resolved,
        LABEL: labels,
    }
    return rows, well_formed
