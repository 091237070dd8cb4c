"""The start-up check of the training and evaluation CSV files: every row, before any training.

CSV syntax, UTF-8, units known to the alphabet, image present and decodable, and the label short
enough for the CTC time steps of its image. A problem stops the run with file, row and problem
named, or, with ``skip_bad_samples``, the row is skipped and counted. A label too long for its
image is always skipped and counted (real data sets have such lines). Nothing is dropped silently.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import tensorflow as tf

from tf_crnn import network
from tf_crnn.alphabet import Alphabet
from tf_crnn.config import Params
from tf_crnn.csv_rows import DataError, Row, read_csv_rows
from tf_crnn.images import decode_image, fitted_width

logger = logging.getLogger("tf_crnn")

# How many example rows a message lists per problem.
EXAMPLE_ROWS = 5
TOO_LONG = "label too long for the CTC time steps of its image"


def _examples(where: list[str]) -> str:
    return "; ".join(where[:EXAMPLE_ROWS]) + (" ..." if len(where) > EXAMPLE_ROWS else "")


@dataclass
class CheckedRows:
    """The usable rows of some CSV files, and an account of every row left out."""

    rows: list[Row]
    skipped: dict[str, list[str]] = field(default_factory=dict)  # problem -> ["file, row N", ...]

    @property
    def skipped_count(self) -> int:
        return sum(len(v) for v in self.skipped.values())

    def report(self) -> str:
        lines = [f"{len(self.rows)} samples"]
        for problem, where in sorted(self.skipped.items()):
            lines.append(f"  skipped {len(where)} ({problem}): {_examples(where)}")
        return "\n".join(lines)


@dataclass(frozen=True)
class _CheckSettings:
    """The settings a check depends on, and no others: the key of the check's cache."""

    delimiter: str
    skip_bad_samples: bool
    units: tuple[str, ...]
    split_delimiter: str
    case_fold: bool
    input_shape: tuple[int, int]
    channels: int

    @classmethod
    def of(cls, params: Params) -> _CheckSettings:
        return cls(
            params.csv_delimiter,
            params.skip_bad_samples,
            tuple(params.alphabet_units),
            params.string_split_delimiter,
            params.alphabet_case_fold,
            tuple(params.input_shape),
            params.input_channels,
        )


def check_csv_files(csv_files: Sequence[str], params: Params) -> CheckedRows:
    """Every usable row of ``csv_files``, checked as the module docstring says.

    Cached (the Estimator calls input_fn again for every evaluation), keyed on the files' size and
    modification time and on the settings the check reads, so a rewritten CSV is read afresh.

    Raises:
        DataError: a problem (unless ``skip_bad_samples``), an empty file, or no usable row.
    """
    if isinstance(csv_files, str):
        csv_files = [csv_files]
    if not csv_files:
        raise DataError("No CSV file given")
    versions = tuple(_file_version(csv_file) for csv_file in csv_files)
    return _check_cached(tuple(csv_files), versions, _CheckSettings.of(params))


def required_time_steps(codes: Sequence[int]) -> int:
    """CTC needs one step per unit plus a blank between each pair of equal adjacent units."""
    repeats = sum(1 for a, b in zip(codes, codes[1:]) if a == b)
    return len(codes) + repeats


def _file_version(path: str) -> tuple[int, int]:
    if not tf.io.gfile.exists(path):
        raise DataError(f"{path}: CSV file not found")
    stat = tf.io.gfile.stat(path)
    return stat.mtime_nsec, stat.length


@functools.lru_cache(maxsize=8)
def _check_cached(csv_files, versions, settings: _CheckSettings) -> CheckedRows:
    alphabet = Alphabet(settings.units, settings.split_delimiter, settings.case_fold)
    skipped: dict[str, list[str]] = {}
    rows = _read_rows(csv_files, settings, skipped)
    rows = _rows_with_known_units(rows, alphabet, settings.skip_bad_samples, skipped)
    sizes = _image_sizes([row.image_path for row in rows], settings.channels)
    kept = []
    for index, row in enumerate(rows):
        if index not in sizes:
            problem = describe_image_problem(row.image_path, settings.channels)
            if not settings.skip_bad_samples:
                raise DataError(f"{row.where}: {row.image_path}: {problem}")
            skipped.setdefault(problem.split(" (")[0], []).append(row.where)
            continue
        height, width = sizes[index]
        steps = network.time_steps(fitted_width(height, width, settings.input_shape))
        if required_time_steps(alphabet.encode(row.label)) > steps:
            skipped.setdefault(TOO_LONG, []).append(f"{row.where} ({steps} steps)")
            continue
        kept.append(row)
    checked = CheckedRows(kept, skipped)
    if not kept:
        raise DataError(f"{', '.join(csv_files)}: no usable rows\n" + checked.report())
    logger.info("%s: %s", ", ".join(csv_files), checked.report())
    return checked


def _read_rows(csv_files, settings: _CheckSettings, skipped: dict[str, list[str]]) -> list[Row]:
    """The well-formed rows of every file; malformed ones raise, or are recorded in ``skipped``."""
    rows: list[Row] = []
    for csv_file in csv_files:
        content = read_csv_rows(csv_file, settings.delimiter)
        if not settings.skip_bad_samples:
            content.strict()
        # Per file, so that an empty file is refused even after another file's rows were skipped.
        if not content.rows and not content.bad_rows:
            raise DataError(f"{csv_file}: CSV file has no rows")
        for bad in content.bad_rows:
            skipped.setdefault(bad.kind, []).append(bad.where)
        rows.extend(content.rows)
    if not rows:
        report = CheckedRows([], skipped).report()
        raise DataError(f"{', '.join(csv_files)}: no usable rows\n{report}")
    return rows


def _rows_with_known_units(rows, alphabet: Alphabet, skip: bool, skipped) -> list[Row]:
    """Rows whose units are all in the alphabet; the others raise (all named at once) or are
    skipped."""
    unknown: dict[str, list[str]] = {}
    for row in rows:
        for unit in dict.fromkeys(alphabet.unknown_units(row.label)):
            unknown.setdefault(unit, []).append(row.where)
    if not unknown:
        return rows
    if not skip:
        details = "\n".join(
            f"  {unit!r}: {_examples(where)}" for unit, where in sorted(unknown.items())
        )
        raise DataError(
            f"{len(unknown)} label unit(s) are not in the alphabet ({len(alphabet)} "
            f"units):\n{details}"
        )
    bad = {where for places in unknown.values() for where in places}
    # In file order, so that the report lists the first ones.
    skipped["label unit not in the alphabet"] = [row.where for row in rows if row.where in bad]
    return [row for row in rows if row.where not in bad]


def _image_sizes(paths: Sequence[str], channels: int) -> dict[int, tuple[int, int]]:
    """{index: (height, width)} for every path that reads and decodes; failing indices are absent.

    Decodes with the very ops training uses, in parallel, in a graph of its own so that it also
    works when called while the Estimator builds its graph.
    """

    def size_of(index, path):
        image = decode_image(tf.io.read_file(path), channels)
        return index, tf.shape(image)[0], tf.shape(image)[1]

    sizes = {}
    with tf.Graph().as_default():
        indices_and_paths = (tf.range(len(paths)), tf.constant(list(paths), tf.string))
        dataset = (
            tf.data.Dataset.from_tensor_slices(indices_and_paths)
            .map(size_of, num_parallel_calls=tf.data.AUTOTUNE, deterministic=False)
            .ignore_errors()
            .batch(1024)
        )
        next_batch = tf.compat.v1.data.make_one_shot_iterator(dataset).get_next()
        with tf.compat.v1.Session() as session:
            while True:
                try:
                    indices, heights, widths = session.run(next_batch)
                except tf.errors.OutOfRangeError:
                    break
                sizes.update(
                    {int(i): (int(h), int(w)) for i, h, w in zip(indices, heights, widths)}
                )
    return sizes


def describe_image_problem(path: str, channels: int) -> str:
    """Why ``path`` cannot be used as an image, in words."""
    if not tf.io.gfile.exists(path):
        return "image file not found"
    if tf.io.gfile.stat(path).length == 0:
        return "image file is empty (0 bytes)"
    with tf.Graph().as_default(), tf.compat.v1.Session() as session:
        try:
            session.run(decode_image(tf.io.read_file(path), channels))
        except tf.errors.OpError as error:
            first_line = error.message.splitlines()[0]
            return f"not a readable PNG, JPEG, BMP or GIF image ({first_line})"
    return "image could not be read"
