"""The Estimator's input functions: ``input_fn`` for training and evaluation, ``serving_inputs``
for an exported SavedModel. Both feed images through the one preprocessing path (``images.py``).

What the model receives from :func:`input_fn`:

- ``features["images"]``: float32 [batch, H, W, C], pixels in [0, 1], each image resized to height H
  keeping its aspect ratio (squeezed to W if wider), right-padded with 0 to width W.
- ``features["images_widths"]``: int32 [batch], the width of each image before padding.
- ``features["filenames"]``: string [batch], the resolved image paths.
- ``labels``: int32 ``SparseTensor`` [batch, units] of alphabet codes.

Only rows that passed the start-up check (``checks.py``) are read.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import tensorflow as tf

from tf_crnn.alphabet import Alphabet
from tf_crnn.checks import check_csv_files
from tf_crnn.config import Params
from tf_crnn.constants import FILENAMES, IMAGE_BYTES, IMAGES, IMAGES_WIDTHS, PADDING_CODE
from tf_crnn.images import decode_image, preprocess_image

TRAIN = tf.estimator.ModeKeys.TRAIN
EVAL = tf.estimator.ModeKeys.EVAL


def input_fn(
    csv_files: Sequence[str],
    params: Params,
    mode: str,
    batch_size: int | None = None,
    num_epochs: int | None = None,
    input_context: tf.distribute.InputContext | None = None,
) -> tf.data.Dataset:
    """A dataset of (features, labels) batches, as the module docstring describes.

    Args:
        csv_files: CSV files of ``image_path<csv_delimiter>label`` rows (checked first).
        params: the run's settings (alphabet resolved).
        mode: ``TRAIN`` shuffles (afresh every epoch), augments and repeats; ``EVAL`` reads each
            sample once, in order.
        batch_size: global batch size; by default the mode's Params batch size.
        num_epochs: TRAIN only: passes over the data (None: forever).
        input_context: given by the Estimator under a distribution strategy: each input pipeline
            then reads its own shard and batches ``batch_size / replicas`` images, because the
            Estimator expects per-replica batches.

    Returns:
        A ``tf.data.Dataset`` of (features dict, SparseTensor labels), prefetched.
    """
    checked = check_csv_files(csv_files, params)
    alphabet = Alphabet.from_params(params)
    training = mode == TRAIN
    if batch_size is None:
        batch_size = params.train_batch_size if training else params.eval_batch_size
    paths = [row.image_path for row in checked.rows]
    labels = [row.label for row in checked.rows]

    dataset = tf.data.Dataset.from_tensor_slices((paths, labels))
    if input_context is not None:
        batch_size = input_context.get_per_replica_batch_size(batch_size)
        dataset = dataset.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
    if training:
        buffer_size = min(len(paths), params.shuffle_buffer_size)
        dataset = dataset.shuffle(
            buffer_size, seed=params.random_seed, reshuffle_each_iteration=True
        )
        dataset = dataset.repeat(num_epochs)

    def load(path, label):
        decoded = decode_image(tf.io.read_file(path), params.input_channels)
        image, width = preprocess_image(decoded, params, training)
        codes = alphabet.tf_encode(label[tf.newaxis])[0]
        return {IMAGES: image, IMAGES_WIDTHS: width, FILENAMES: path}, codes

    dataset = dataset.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=not training)
    if params.skip_bad_samples:
        # Images were checked at start-up; this only guards against files changed since then.
        dataset = dataset.ignore_errors(log_warning=True)
    padding = ({IMAGES: 0.0, IMAGES_WIDTHS: 0, FILENAMES: ""}, PADDING_CODE)
    dataset = dataset.padded_batch(batch_size, padding_values=padding, drop_remainder=training)
    dataset = dataset.map(lambda features, codes: (features, dense_codes_to_sparse(codes)))
    return dataset.prefetch(tf.data.AUTOTUNE)


def dense_codes_to_sparse(codes: tf.Tensor) -> tf.SparseTensor:
    """[batch, units] codes padded with -1 -> SparseTensor (0 is a real code, so not from_dense)."""
    indices = tf.where(tf.not_equal(codes, PADDING_CODE))
    dense_shape = tf.shape(codes, out_type=tf.int64)
    return tf.SparseTensor(indices, tf.gather_nd(codes, indices), dense_shape)


@dataclass
class ServingInputs:
    """The graph a SavedModel serves from: three ways in, one set of features out.

    ``filenames`` are read into ``image_bytes``, which are decoded and preprocessed into ``images``
    and ``images_widths``; each is a placeholder with a default, so feeding any of them skips what
    comes before it. Every way in goes through :func:`preprocess_image`, like training.
    """

    filenames: tf.Tensor
    image_bytes: tf.Tensor
    images: tf.Tensor
    images_widths: tf.Tensor

    @property
    def features(self) -> dict[str, tf.Tensor]:
        no_names = tf.fill(tf.shape(self.images_widths), "")
        return {IMAGES: self.images, IMAGES_WIDTHS: self.images_widths, FILENAMES: no_names}


def serving_inputs(params: Params) -> ServingInputs:
    """Builds :class:`ServingInputs` in the default graph."""
    no_files = tf.constant([], tf.string)
    filenames = tf.compat.v1.placeholder_with_default(no_files, [None], name=FILENAMES)
    contents = tf.map_fn(tf.io.read_file, filenames, fn_output_signature=tf.string)
    image_bytes = tf.compat.v1.placeholder_with_default(contents, [None], name=IMAGE_BYTES)

    def load(encoded):
        return preprocess_image(decode_image(encoded, params.input_channels), params)

    images, widths = tf.map_fn(load, image_bytes, fn_output_signature=(tf.float32, tf.int32))
    height, width = params.input_shape
    images_shape = [None, height, width, params.input_channels]
    images = tf.compat.v1.placeholder_with_default(images, images_shape, name=IMAGES)
    widths = tf.compat.v1.placeholder_with_default(widths, [None], name=IMAGES_WIDTHS)
    return ServingInputs(filenames, image_bytes, images, widths)
