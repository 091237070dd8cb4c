"""The Estimator's input functions: ``input_fn`` for training and evaluation, ``serving_inputs``
for an exported SavedModel. Both feed images through the one preprocessing path (``images.py``).

What the model receives from :func:`input_fn`:

- ``features["images"]``: float32 [batch, H, W, C], pixels in [0, 1], each image resized to height H
  keeping its aspect ratio (squeezed to W if wider), right-padded with 0 to width W.
- ``features["images_widths"]``: int32 [batch], the width of each image before padding.
- ``features["filenames"]``: string [batch], the resolved image paths.
- ``labels``: int32 ``SparseTensor`` [batch, units] of alphabet codes.

The CSV files are read as a stream inside ``tf.data`` (``csv_dataset.py``): the graph is the same
size for ten rows or ten million. The start-up check (``checks.py``) has stopped on or counted bad
rows; a row found bad only while training (an image deleted since, or not in a sampled check) stops
the run naming file and row, or with ``skip_bad_samples`` is skipped and counted
(``skipped_rows.py``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass

import tensorflow as tf

from tf_crnn import network, skipped_rows
from tf_crnn.alphabet import Alphabet
from tf_crnn.checks import TOO_LONG, CheckedRows, check_csv_files
from tf_crnn.config import Params
from tf_crnn.constants import (
    DECODED_CACHE_DIR,
    FILENAMES,
    IMAGE_BYTES,
    IMAGES,
    IMAGES_WIDTHS,
    PADDING_CODE,
)
from tf_crnn.csv_dataset import CSV_FILE, IMAGE_PATH, LABEL, LINE_NUMBER, Shard, csv_row_dataset
from tf_crnn.image_loading import LOADED, PREPARED, describe_image_problem, load_images
from tf_crnn.images import augment_fitted, decode_image, max_serving_batch, preprocess_image

TRAIN = tf.estimator.ModeKeys.TRAIN
EVAL = tf.estimator.ModeKeys.EVAL
CODES = "codes"  # a row's label as alphabet codes
KEEP = "keep"  # whether the row goes into a batch


def input_fn(
    csv_files: Sequence[str],
    params: Params,
    mode: str,
    batch_size: int | None = None,
    num_epochs: int | None = None,
    input_context: tf.distribute.InputContext | None = None,
    shard: Shard | None = None,
    job_dir: str | None = None,
    checked: CheckedRows | None = None,
) -> tf.data.Dataset:
    """A dataset of (features, labels) batches, as the module docstring describes.

    Args:
        csv_files: CSV files of ``image_path<csv_delimiter>label`` rows, read as a stream; they
            are checked first (``checks.check_csv_files``, cached) unless already checked.
        params: the run's settings (alphabet resolved).
        mode: ``TRAIN`` shuffles (afresh every epoch), augments and repeats; ``EVAL`` reads each
            sample once, in order.
        batch_size: global batch size; by default the mode's Params batch size.
        num_epochs: TRAIN only: passes over the data (None: forever).
        input_context: given by the Estimator under a distribution strategy: each input pipeline
            then reads its own shard and batches ``batch_size / replicas`` images, because the
            Estimator expects per-replica batches.
        shard: this worker's share when workers train without a strategy that says so
            (``cluster.data_shard``); its index also varies the shuffle seed.
        job_dir: where rows skipped on the way are listed (``skipped_rows.py``).
        checked: the start-up check's result when the caller has it (``task.py``: the chief's
            saved check); else the check runs here.

    Returns:
        A ``tf.data.Dataset`` of (features dict, SparseTensor labels), prefetched.
    """
    if isinstance(csv_files, str):
        csv_files = [csv_files]
    checked = checked or check_csv_files(csv_files, params)
    alphabet = Alphabet.from_params(params)
    training = mode == TRAIN
    if batch_size is None:
        batch_size = params.train_batch_size if training else params.eval_batch_size
    if input_context is not None:
        batch_size = input_context.get_per_replica_batch_size(batch_size)
        if input_context.num_input_pipelines > 1:
            shard = Shard(input_context.num_input_pipelines, input_context.input_pipeline_id)

    rows = csv_row_dataset(csv_files, params.csv_delimiter, shard, interleave_files=training)
    seed = params.random_seed + (shard.index if shard else 0)
    height, width = params.input_shape
    no_image = (tf.zeros([height, width, params.input_channels]), tf.constant(0, tf.int32))
    if params.cache_decoded_images:
        # Fitted once, in file order, into the cache; shuffled and augmented at every read.
        samples = load_images(
            rows,
            params.input_channels,
            prepare=lambda image: preprocess_image(image, params),
            failed_value=no_image,
        )
        samples = samples.cache(_decoded_cache_prefix(csv_files, params, mode, shard, job_dir))
        if training:
            samples = samples.shuffle(
                params.shuffle_buffer_size, seed, reshuffle_each_iteration=True
            ).repeat(num_epochs)
            if params.data_augmentation:
                samples = samples.map(
                    lambda sample: _augmented(sample, params),
                    num_parallel_calls=tf.data.AUTOTUNE,
                    deterministic=False,
                )
    else:
        if training:
            rows = rows.shuffle(params.shuffle_buffer_size, seed, reshuffle_each_iteration=True)
            rows = rows.repeat(num_epochs)
        samples = load_images(
            rows,
            params.input_channels,
            prepare=lambda image: preprocess_image(image, params, training),
            failed_value=no_image,
            deterministic=not training,
        )
    account = skipped_rows.for_job_dir(job_dir)

    def encode_and_judge(sample):
        """The label's codes, and whether to keep the row. A row to drop that nobody has counted
        yet goes through the account, which raises to stop the run on it."""
        codes = alphabet.tf_encode(sample[LABEL][tf.newaxis])[0]
        known_units = tf.reduce_all(codes >= 0)
        fits = network.required_time_steps(codes) <= network.time_steps(sample[PREPARED][1])
        keep = sample[LOADED] & known_units & fits
        # The start-up check has refused or counted rows with unknown units, and, when it
        # decoded every image, labels too long for them.
        counted = tf.logical_not(known_units) | (sample[LOADED] & checked.all_images_checked)

        def drop():
            row = [sample[CSV_FILE], sample[LINE_NUMBER], sample[IMAGE_PATH], sample[LOADED]]
            with tf.control_dependencies([tf.py_function(handle_dropped_row, row, tf.int32)]):
                return tf.constant(False)

        keep = tf.cond(keep | counted, lambda: keep, drop)
        return {**sample, CODES: codes, KEEP: keep}

    def handle_dropped_row(csv_file, line_number, image_path, loaded):
        path = image_path.numpy().decode("utf-8")
        if loaded:
            problem, skip = TOO_LONG, True
        else:
            problem = describe_image_problem(path, params.input_channels)
            skip = params.skip_bad_samples
        account.handle(csv_file.numpy().decode("utf-8"), int(line_number), problem, skip, path)
        return 0

    def features_and_codes(sample):
        image, fitted_width = sample[PREPARED]
        features = {IMAGES: image, IMAGES_WIDTHS: fitted_width, FILENAMES: sample[IMAGE_PATH]}
        return features, sample[CODES]

    samples = samples.map(
        encode_and_judge, num_parallel_calls=tf.data.AUTOTUNE, deterministic=not training
    )
    dataset = samples.filter(lambda sample: sample[KEEP]).map(features_and_codes)
    padding = ({IMAGES: 0.0, IMAGES_WIDTHS: 0, FILENAMES: ""}, PADDING_CODE)
    dataset = dataset.padded_batch(batch_size, padding_values=padding, drop_remainder=training)
    dataset = dataset.map(lambda features, codes: (features, dense_codes_to_sparse(codes)))
    return dataset.prefetch(tf.data.AUTOTUNE)


def _augmented(sample: dict, params: Params) -> dict:
    """A cached sample with its fitted image augmented (a failed one has no content to augment)."""
    image, fitted_width = sample[PREPARED]
    image = tf.cond(
        sample[LOADED], lambda: augment_fitted(image, fitted_width, params), lambda: image
    )
    return {**sample, PREPARED: (image, fitted_width)}


def _decoded_cache_prefix(csv_files, params: Params, mode: str, shard, job_dir) -> str:
    """Where ``cache_decoded_images`` keeps this pipeline's images ("": in memory, without a job
    directory), named after what its content depends on, so that an edited CSV or another input
    shape gets a cache of its own.

    A cache whose writer was killed leaves a lock file and a partial file behind, which would stop
    the next writer; one trainer owns a job directory (its lock), so they are removed here.
    """
    if job_dir is None:
        return ""
    versions = [(tf.io.gfile.stat(f).mtime_nsec, tf.io.gfile.stat(f).length) for f in csv_files]
    content = [list(csv_files), versions, params.csv_delimiter, params.input_shape]
    content += [params.input_channels, shard.count if shard else 1, shard.index if shard else 0]
    digest = hashlib.sha1(json.dumps(content).encode("utf-8")).hexdigest()[:16]
    folder = f"{job_dir.rstrip('/')}/{DECODED_CACHE_DIR}"
    tf.io.gfile.makedirs(folder)
    prefix = f"{folder}/{mode}-{digest}"
    for unfinished in tf.io.gfile.glob(f"{prefix}_*"):
        tf.io.gfile.remove(unfinished)
    return prefix


def dense_codes_to_sparse(codes: tf.Tensor) -> tf.SparseTensor:
    """[batch, units] codes padded with -1 -> SparseTensor (0 is a real code, so not from_dense)."""
    indices = tf.where(tf.not_equal(codes, PADDING_CODE))
    dense_shape = tf.shape(codes, out_type=tf.int64)
    return tf.SparseTensor(indices, tf.gather_nd(codes, indices), dense_shape)


@dataclass
class ServingInputs:
    """The graph a SavedModel serves from: its ways in, and the checked features the model gets.

    ``image_bytes`` are decoded and preprocessed into ``images`` and ``images_widths``; each is a
    placeholder with a default, so feeding one skips what comes before it. Every way in goes
    through :func:`preprocess_image`, like training, and into the same checks (see
    :func:`serving_inputs`). ``filenames``, read into ``image_bytes``, exist only with
    ``Params.export_filenames_signature``.
    """

    image_bytes: tf.Tensor
    images: tf.Tensor
    images_widths: tf.Tensor
    features: dict[str, tf.Tensor]
    filenames: tf.Tensor | None = None


def serving_inputs(params: Params) -> ServingInputs:
    """Builds :class:`ServingInputs` in the default graph.

    A served model gets whatever its clients send, so every input is checked in the graph before
    it costs memory, and a bad one fails the call with an InvalidArgumentError that names it:

    - every way in: a batch of 1 to :func:`max_serving_batch` images, checked before anything is
      read or decoded (a few MB of tiny images would otherwise cost gigabytes);
    - ``image_bytes[i]``: not empty, and within ``images.MAX_IMAGE_PIXELS`` by its header; bytes
      that do not decode fail with the decoder's message (which cannot name the image);
    - ``images``: float32 [batch, H, W, C] with pixels in [0, 1]; ``images_widths``: one per image,
      each in [1, W]. A wrong height or channel count would otherwise fail deep in the network, a
      wrong rank crashes the server process, and a wrong width or pixel scale gives wrong words.

    One bad image fails its whole batch: a served call is all or nothing, as TF Serving expects.

    Without ``params.export_filenames_signature`` there are no ``filenames``, and the graph has no
    op that reads a file.
    """
    height, width = params.input_shape
    channels = params.input_channels
    limit = max_serving_batch(params)
    filenames = None
    contents = tf.constant([], tf.string)
    if params.export_filenames_signature:
        filenames = tf.compat.v1.placeholder_with_default(contents, [None], name=FILENAMES)
        paths = _checked_batch(filenames, FILENAMES, limit)
        contents = tf.map_fn(tf.io.read_file, paths, fn_output_signature=tf.string)
    image_bytes = tf.compat.v1.placeholder_with_default(contents, [None], name=IMAGE_BYTES)

    def load(indexed):
        index, encoded = indexed
        source = tf.strings.format(IMAGE_BYTES + "[{}]", index)
        not_empty = tf.debugging.Assert(
            tf.strings.length(encoded) > 0, [tf.strings.join([source, ": empty (0 bytes)"])]
        )
        with tf.control_dependencies([not_empty]):
            return preprocess_image(decode_image(encoded, channels, source), params)

    encoded = _checked_batch(image_bytes, IMAGE_BYTES, limit)
    indexed = (tf.range(tf.size(encoded)), encoded)
    images, widths = tf.map_fn(load, indexed, fn_output_signature=(tf.float32, tf.int32))
    images_shape = [None, height, width, channels]
    images = tf.compat.v1.placeholder_with_default(images, images_shape, name=IMAGES)
    widths = tf.compat.v1.placeholder_with_default(widths, [None], name=IMAGES_WIDTHS)
    features = _checked_features(images, widths, params, limit)
    return ServingInputs(image_bytes, images, widths, features, filenames)


def _checked_batch(batch: tf.Tensor, name: str, limit: int) -> tf.Tensor:
    """``batch``, once it is known to hold 1 to ``limit`` items."""
    size = tf.size(batch)
    within = tf.logical_and(size >= 1, size <= limit)
    message = f"{name}: a batch of {{}} images; the model takes 1 to {limit}"
    with tf.control_dependencies([_check(within, message, size)]):
        return tf.identity(batch)


def _checked_features(images, widths, params: Params, limit: int) -> dict[str, tf.Tensor]:
    """The model's features from the ``images`` and ``images_widths`` placeholders, once they pass
    the checks :func:`serving_inputs` lists.

    The shapes are checked with ``ensure_shape`` at run time: a placeholder's declared shape binds
    only Python callers, and TF Serving feeds whatever tensor a request holds.
    """
    height, width = params.input_shape
    images = tf.ensure_shape(images, [None, height, width, params.input_channels])
    widths = tf.ensure_shape(widths, [None])
    count, widths_count = tf.shape(images)[0], tf.size(widths)
    checks = [
        _check(
            tf.logical_and(count >= 1, count <= limit),
            f"{IMAGES}: a batch of {{}} images; the model takes 1 to {limit}",
            count,
        ),
        _check(
            tf.equal(widths_count, count),
            f"{IMAGES_WIDTHS}: {{}} widths for {{}} images",
            widths_count,
            count,
        ),
        _check(
            tf.reduce_all(tf.logical_and(widths >= 1, widths <= width)),
            f"{IMAGES_WIDTHS}: each must be in [1, {width}], the content width of an image "
            f"before padding; got {{}}",
            widths,
        ),
        # Every pixel, not the minimum and maximum, which would let a NaN through.
        _check(
            tf.reduce_all(tf.logical_and(images >= 0, images <= 1)),
            f"{IMAGES}: pixels must be in [0, 1], as preprocess_image gives them; got {{}} to {{}}",
            tf.reduce_min(images),
            tf.reduce_max(images),
        ),
    ]
    with tf.control_dependencies(checks):
        images, widths = tf.identity(images), tf.identity(widths)
    no_names = tf.fill(tf.shape(widths), "")
    return {IMAGES: images, IMAGES_WIDTHS: widths, FILENAMES: no_names}


def _check(condition: tf.Tensor, message: str, *values: tf.Tensor) -> tf.Operation:
    """An assertion of ``condition`` whose message is ``message`` with ``values`` in its ``{}``."""
    return tf.debugging.Assert(condition, [tf.strings.format(message, list(values))])
