"""The start-up check of the training and evaluation CSV files, before any training.

Every row's CSV syntax, UTF-8 and units (known to the alphabet) are checked; then the images:
every one when the files hold at most ``check_all_images_up_to`` usable rows, else a random
sample of ``check_sample_size`` (decoding nine million images would cost an hour per start). An
image must be present and decodable, and its label short enough for the image's CTC time steps.

A problem stops the run with file, row and problem named, or, with ``skip_bad_samples``, the row
is skipped and counted. A label too long for its image is always skipped and counted (real data
sets have such lines). Nothing is dropped silently: rows that a sampled check has not seen are
handled the same way when training meets them (``skipped_rows.py``).

The result is small (counts and example rows) and is saved in the job directory keyed by each
CSV's size and modification time and by the settings the check reads: a restart, and every other
task of a cluster, reads it instead of checking again. Only the chief checks; the others wait for
its result.
"""

from __future__ import annotations

import functools
import json
import logging
import random
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field

import tensorflow as tf

from tf_crnn import network
from tf_crnn.alphabet import Alphabet
from tf_crnn.config import Params
from tf_crnn.constants import DATA_CHECK_FILE
from tf_crnn.csv_dataset import CSV_FILE, IMAGE_PATH, LINE_NUMBER
from tf_crnn.csv_rows import BadRow, DataError, Row, iter_csv_rows
from tf_crnn.image_loading import (
    LOADED,
    SOURCE_HEIGHT,
    SOURCE_WIDTH,
    describe_image_problem,
    load_images,
)
from tf_crnn.images import fitted_width
from tf_crnn.job_files import write_atomically

logger = logging.getLogger("tf_crnn")

# How many example rows a message lists per problem, and how many the result keeps.
EXAMPLE_ROWS = 5
EXAMPLES_KEPT = 100
TOO_LONG = "label too long for the CTC time steps of its image"
UNKNOWN_UNIT = "label unit not in the alphabet"
# How long a task that is not the chief waits for the chief's check, and how often it looks.
WAIT_FOR_CHIEF_SECONDS, POLL_SECONDS = 6 * 3600, 2
# Images decoded per session run.
IMAGES_PER_RUN = 1024


def _examples(where: list[str], total: int) -> str:
    return "; ".join(where[:EXAMPLE_ROWS]) + (" ..." if total > EXAMPLE_ROWS else "")


@dataclass
class CheckedRows:
    """What the check found in some CSV files: how many rows are usable, and every row left out
    counted by problem, with the first :data:`EXAMPLES_KEPT` of each named."""

    usable_rows: int
    images_checked: int
    all_images_checked: bool
    skipped: dict[str, list[str]] = field(default_factory=dict)  # problem -> ["file, row N", ...]
    skipped_counts: dict[str, int] = field(default_factory=dict)  # problem -> rows

    @property
    def skipped_count(self) -> int:
        return sum(self.skipped_counts.values())

    def skip(self, problem: str, where: str) -> None:
        self.skipped_counts[problem] = self.skipped_counts.get(problem, 0) + 1
        examples = self.skipped.setdefault(problem, [])
        if len(examples) < EXAMPLES_KEPT:
            examples.append(where)

    def report(self) -> str:
        images = "every image checked" if self.all_images_checked else (
            f"a random sample of {self.images_checked} images checked; the others are checked "
            "when training reads them"
        )  # fmt: skip
        lines = [f"{self.usable_rows} samples ({images})"]
        for problem, where in sorted(self.skipped.items()):
            count = self.skipped_counts[problem]
            lines.append(f"  skipped {count} ({problem}): {_examples(where, count)}")
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
    all_images_up_to: int
    sample_size: int
    seed: int

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
            params.check_all_images_up_to,
            params.check_sample_size,
            params.random_seed,
        )


def check_csv_files(
    csv_files: Sequence[str], params: Params, job_dir: str | None = None, chief: bool = True
) -> CheckedRows:
    """The check of ``csv_files`` the module docstring describes, done once.

    Cached in memory (the Estimator calls input_fn again for every evaluation) and, with a
    ``job_dir``, in its ``data_check.json``; a rewritten CSV or a changed setting is checked
    afresh. A task that is not the ``chief`` waits for the chief's result instead of checking.

    Raises:
        DataError: a problem (unless ``skip_bad_samples``), an empty file, or no usable row.
    """
    if isinstance(csv_files, str):
        csv_files = [csv_files]
    if not csv_files:
        raise DataError("No CSV file given")
    csv_files = tuple(csv_files)
    versions = tuple(_file_version(csv_file) for csv_file in csv_files)
    settings = _CheckSettings.of(params)
    if job_dir is None:
        return _check_cached(csv_files, versions, settings)
    key = json.dumps([csv_files, versions, asdict(settings)], ensure_ascii=False)
    saved_path = f"{job_dir.rstrip('/')}/{DATA_CHECK_FILE}"
    saved = _saved_check(saved_path, key)
    if saved is None and not chief:
        saved = _wait_for_chief(saved_path, key)
    if saved is not None:
        logger.info(
            "%s: %s (the check saved in %s)", ", ".join(csv_files), saved.report(), saved_path
        )
        return saved
    checked = _check_cached(csv_files, versions, settings)
    _save_check(saved_path, key, checked)
    return checked


def _file_version(path: str) -> tuple[int, int]:
    if not tf.io.gfile.exists(path):
        raise DataError(f"{path}: CSV file not found")
    stat = tf.io.gfile.stat(path)
    return stat.mtime_nsec, stat.length


def _saved_checks(path: str) -> dict[str, dict]:
    if not tf.io.gfile.exists(path):
        return {}
    try:
        with tf.io.gfile.GFile(path) as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError):
        logger.warning("%s is damaged; checking the data again", path)
        return {}


def _saved_check(path: str, key: str) -> CheckedRows | None:
    saved = _saved_checks(path).get(key)
    return CheckedRows(**saved) if saved is not None else None


def _save_check(path: str, key: str, checked: CheckedRows) -> None:
    """Adds this check to the file (the training and evaluation files are two checks)."""
    checks = _saved_checks(path)
    checks[key] = asdict(checked)
    write_atomically(path, json.dumps(checks, ensure_ascii=False))


def _wait_for_chief(path: str, key: str) -> CheckedRows:
    logger.info("waiting for the chief's check of the data (%s)", path)
    deadline = time.time() + WAIT_FOR_CHIEF_SECONDS
    while time.time() < deadline:
        time.sleep(POLL_SECONDS)
        saved = _saved_check(path, key)
        if saved is not None:
            return saved
    raise DataError(
        f"{path}: the chief has not saved its check of the data after "
        f"{WAIT_FOR_CHIEF_SECONDS} s; is the chief running with the same CSV files and settings?"
    )


@functools.lru_cache(maxsize=8)
def _check_cached(csv_files, versions, settings: _CheckSettings) -> CheckedRows:
    del versions  # only a key of the cache
    alphabet = Alphabet(settings.units, settings.split_delimiter, settings.case_fold)
    checked = CheckedRows(usable_rows=0, images_checked=0, all_images_checked=True)
    usable = _count_usable_rows(csv_files, settings, alphabet, checked)
    if usable > settings.all_images_up_to:
        rows = iter(_sample(_usable_rows(csv_files, settings, alphabet), usable, settings))
        checked.all_images_checked = False
    else:
        rows = _usable_rows(csv_files, settings, alphabet)
    kept = _check_images(rows, alphabet, settings, checked)
    # A sampled check can only estimate the usable rows from the sample.
    checked.usable_rows = kept if checked.all_images_checked else usable
    if not checked.usable_rows:
        raise DataError(f"{', '.join(csv_files)}: no usable rows\n" + checked.report())
    logger.info("%s: %s", ", ".join(csv_files), checked.report())
    return checked


def _usable_rows(csv_files, settings: _CheckSettings, alphabet: Alphabet) -> Iterator[Row]:
    """The well-formed rows whose units are all in the alphabet, one at a time."""
    for csv_file in csv_files:
        for row in iter_csv_rows(csv_file, settings.delimiter):
            if isinstance(row, Row) and not alphabet.unknown_units(row.label):
                yield row


def _count_usable_rows(csv_files, settings, alphabet: Alphabet, checked: CheckedRows) -> int:
    """Rows that pass the syntax and alphabet checks; the others raise (strictly: the first
    malformed row; every unknown unit at once) or are counted in ``checked``."""
    usable = 0
    unknown: dict[str, list[str]] = {}
    for csv_file in csv_files:
        rows_in_file = 0
        for row in iter_csv_rows(csv_file, settings.delimiter):
            rows_in_file += 1
            if isinstance(row, BadRow):
                if not settings.skip_bad_samples:
                    raise DataError(f"{row.where}: {row.problem}")
                checked.skip(row.kind, row.where)
                continue
            units = dict.fromkeys(alphabet.unknown_units(row.label))
            for unit in units:
                places = unknown.setdefault(unit, [])
                if len(places) < EXAMPLES_KEPT:
                    places.append(row.where)
            if units:
                checked.skip(UNKNOWN_UNIT, row.where)
            else:
                usable += 1
        # Per file, so that an empty file is refused even after another file's rows were skipped.
        if not rows_in_file:
            raise DataError(f"{csv_file}: CSV file has no rows")
    if unknown and not settings.skip_bad_samples:
        details = "\n".join(
            f"  {unit!r}: {_examples(where, len(where))}" for unit, where in sorted(unknown.items())
        )
        raise DataError(
            f"{len(unknown)} label unit(s) are not in the alphabet ({len(alphabet)} "
            f"units):\n{details}"
        )
    if not usable:
        raise DataError(f"{', '.join(csv_files)}: no usable rows\n" + checked.report())
    return usable


def _sample(rows: Iterator[Row], count: int, settings: _CheckSettings) -> list[Row]:
    """``settings.sample_size`` of the ``count`` rows, chosen at random (seeded), in file order."""
    size = min(count, settings.sample_size)
    chosen = set(random.Random(settings.seed).sample(range(count), size))
    return [row for index, row in enumerate(rows) if index in chosen]


def _check_images(rows: Iterator[Row], alphabet: Alphabet, settings, checked: CheckedRows) -> int:
    """Decodes each row's image with the ops training uses; returns how many rows are usable."""
    kept = 0
    for row, height, width in _image_sizes(rows, settings.channels):
        checked.images_checked += 1
        if height is None:
            problem = describe_image_problem(row.image_path, settings.channels)
            if not settings.skip_bad_samples:
                raise DataError(f"{row.where}: {row.image_path}: {problem}")
            checked.skip(problem.split(" (")[0], row.where)
            continue
        steps = network.time_steps(fitted_width(height, width, settings.input_shape))
        if network.required_time_steps(alphabet.encode(row.label)) > steps:
            checked.skip(TOO_LONG, f"{row.where} ({steps} steps)")
            continue
        kept += 1
    return kept


def _image_sizes(rows: Iterator[Row], channels: int):
    """(row, height, width) for each row, in order; height and width are None if it failed.

    Runs in a graph of its own, so that it also works while the Estimator builds its graph. The
    rows stream in (from a generator), so memory does not grow with their number.
    """
    pending: dict[tuple[str, int], Row] = {}

    def row_tensors():
        for row in rows:
            pending[(row.csv_file, row.line_number)] = row
            yield {CSV_FILE: row.csv_file, LINE_NUMBER: row.line_number, IMAGE_PATH: row.image_path}

    signature = {
        CSV_FILE: tf.TensorSpec([], tf.string),
        LINE_NUMBER: tf.TensorSpec([], tf.int64),
        IMAGE_PATH: tf.TensorSpec([], tf.string),
    }
    with tf.Graph().as_default():
        dataset = load_images(
            tf.data.Dataset.from_generator(row_tensors, output_signature=signature), channels
        )
        next_batch = tf.compat.v1.data.make_one_shot_iterator(
            dataset.batch(IMAGES_PER_RUN)
        ).get_next()
        with tf.compat.v1.Session() as session:
            while True:
                try:
                    batch = session.run(next_batch)
                except tf.errors.OutOfRangeError:
                    return
                for csv_file, line, loaded, height, width in zip(
                    batch[CSV_FILE],
                    batch[LINE_NUMBER],
                    batch[LOADED],
                    batch[SOURCE_HEIGHT],
                    batch[SOURCE_WIDTH],
                ):
                    row = pending.pop((csv_file.decode("utf-8"), int(line)))
                    yield (row, int(height), int(width)) if loaded else (row, None, None)
