"""Reading and decoding the images of CSV rows inside ``tf.data``: a bad image is a value, not an
error.

``tf.data`` can only drop a failing element (``ignore_errors``), and then nobody knows which row it
was; a raised error stops training with a message that names no file. So each row is loaded in a
small dataset of its own, and a row whose image cannot be used comes out with ``loaded`` False and
its file and row still attached, for the caller to stop on or skip and count (``skipped_rows.py``).

A read is tried :data:`READ_ATTEMPTS` times, :data:`RETRY_DELAY_SECONDS` apart, so that a storage
hiccup (a bucket that times out once) is not mistaken for a bad image; decoding is tried once,
because bytes that do not decode will not decode the next time either. The start-up check
(``checks.py``) and training load images with these same ops, so they agree on what is readable.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import tensorflow as tf

from tf_crnn.csv_dataset import IMAGE_PATH
from tf_crnn.images import decode_image

READ_ATTEMPTS = 3
# Rows loaded together (see load_group).
GROUP_SIZE = 16
RETRY_DELAY_SECONDS = 0.2
# Keys each loaded row gains.
LOADED = "loaded"  # bool: False when the image could not be read or decoded
SOURCE_HEIGHT, SOURCE_WIDTH = "source_height", "source_width"  # of the decoded image; 0 if failed
PREPARED = "prepared"  # the output of ``prepare`` (with one); zeros when the image failed


def load_images(
    rows: tf.data.Dataset,
    channels: int,
    prepare: Callable[[tf.Tensor], tuple[tf.Tensor, ...]] | None = None,
    failed_value: tuple[tf.Tensor, ...] = (),
    deterministic: bool = True,
) -> tf.data.Dataset:
    """Adds the keys above to each row dict of ``rows`` (which has ``image_path``), in parallel.

    Args:
        rows: a dataset of row dicts (``csv_dataset.csv_row_dataset``).
        channels: the decoded image's channels (``params.input_channels``).
        prepare: applied to each decoded uint8 [h, w, C] image (e.g. ``preprocess_image``); its
            result is stored under ``prepared``. An error in it marks the row as not loaded too.
        failed_value: what ``prepared`` holds for a row that failed (same structure and dtypes).
        deterministic: keep the rows' order (evaluation); training lets fast rows overtake.
    """

    def read(row):
        return row, tf.io.read_file(row[IMAGE_PATH])

    def decode(row, contents):
        image = decode_image(contents, channels)
        loaded = {**row, LOADED: True, SOURCE_HEIGHT: tf.shape(image)[0]}
        loaded[SOURCE_WIDTH] = tf.shape(image)[1]
        if prepare is not None:
            loaded[PREPARED] = prepare(image)
        return loaded

    def failed(row):
        zero = tf.constant(0, tf.int32)
        failure = {**row, LOADED: False, SOURCE_HEIGHT: zero, SOURCE_WIDTH: zero}
        if prepare is not None:
            failure[PREPARED] = failed_value
        return failure

    def load_one(row):
        """Exactly one element for ``row``: loaded, or marked failed after the retries."""
        one = tf.data.Dataset.from_tensors(row)
        reads = one.map(read).ignore_errors()
        for _ in range(READ_ATTEMPTS - 1):
            # Lazily: a retry runs only when every earlier attempt yielded nothing.
            reads = reads.concatenate(one.map(_after_a_pause).map(read).ignore_errors())
        decoded = reads.take(1).map(decode).ignore_errors()
        return decoded.concatenate(one.map(failed)).take(1)

    def load_group(group):
        """The rows of ``group`` (a batch of row dicts), each loaded or marked failed.

        Nested datasets cost about 0.3 ms a row, more than decoding a small PNG; so a group is
        first loaded whole in one go, and only a group with a bad row is loaded row by row.
        """
        whole = tf.data.Dataset.from_tensors(group).map(
            lambda rows: tf.map_fn(lambda r: decode(*read(r)), rows, fn_output_signature=spec)
        )
        one_by_one = tf.data.Dataset.from_tensor_slices(group).flat_map(load_one)
        # one_by_one runs only when the whole group failed: take stops after the whole group.
        size = tf.size(group[IMAGE_PATH], out_type=tf.int64)
        return whole.ignore_errors().unbatch().concatenate(one_by_one).take(size)

    spec = tf.nest.map_structure(
        lambda t: tf.TensorSpec(t.shape, t.dtype), rows.map(failed).element_spec
    )
    return rows.batch(GROUP_SIZE).interleave(
        load_group,
        cycle_length=tf.data.AUTOTUNE,
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=deterministic,
    )


def _after_a_pause(row):
    """``row``, :data:`RETRY_DELAY_SECONDS` later (before a retry)."""
    paused = tf.py_function(lambda: time.sleep(RETRY_DELAY_SECONDS) or 0, [], tf.int32)
    with tf.control_dependencies([paused]):
        return tf.nest.map_structure(tf.identity, row)


def describe_image_problem(path: str, channels: int) -> str:
    """Why ``path`` cannot be used as an image, in words (for messages; reads the file again)."""
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
    return f"image could not be read after {READ_ATTEMPTS} attempts (it reads now)"
