"""Images: encoded bytes -> pixels -> the model's input. The one preprocessing path.

Training, evaluation and every serving signature go through :func:`decode_image` and
:func:`preprocess_image`, so a served model sees exactly the pixels it was trained on.
"""

from __future__ import annotations

import tensorflow as tf

from tf_crnn.augment import augment
from tf_crnn.config import Params

# The most pixels (height x width) decode_image accepts. Decoding and the conversion to gray take
# about 19 bytes per pixel, so without a bound one 20000 x 20000 upload costs a server 7 GB; at the
# bound an image costs 0.75 GB. A 600-dpi A4 page scan has 35 million pixels; a text line rarely 5.
MAX_IMAGE_PIXELS = 40_000_000


def decode_image(contents: tf.Tensor, channels: int) -> tf.Tensor:
    """Encoded PNG/JPEG/BMP/GIF bytes -> uint8 [h, w, channels] (first frame of a GIF).

    An image of more than ``MAX_IMAGE_PIXELS`` is refused with InvalidArgumentError before its
    pixels are decoded (its size is read from the file header).
    """
    height, width = encoded_image_size(contents)
    small_enough = tf.debugging.Assert(
        height * width <= MAX_IMAGE_PIXELS,
        [
            tf.strings.format(
                f"image of {{}} x {{}} pixels: more than the {MAX_IMAGE_PIXELS} pixels tf_crnn "
                f"decodes",
                [height, width],
            )
        ],
    )
    with tf.control_dependencies([small_enough]):
        image = tf.io.decode_image(contents, channels=3, expand_animations=False)
    return to_model_channels(image, channels)


def encoded_image_size(contents: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """int64 (height, width) from the header of encoded PNG/JPEG/BMP/GIF bytes, without decoding
    them.

    (0, 0) for anything else: ``tf.io.decode_image`` then names the problem. The header fields are
    the ones TensorFlow's decoders read (for a GIF, the logical screen size).
    """
    padded = tf.strings.join([tf.strings.substr(contents, 0, 26), b"\0" * 26])
    header = tf.cast(tf.io.decode_raw(tf.strings.substr(padded, 0, 26), tf.uint8), tf.int64)

    def number(start, size, little_endian=False):
        value = tf.constant(0, tf.int64)
        for i in reversed(range(size)) if little_endian else range(size):
            value = value * 256 + header[start + i]
        return value

    def starts_with(magic):
        # tf.equal, not ==: in a graph (the Estimator's, a SavedModel's) Tensor == compares
        # identity.
        return tf.reduce_all(tf.equal(header[: len(magic)], list(magic)))

    def int32(value):
        return tf.where(value >= 2**31, value - 2**32, value)

    size = tf.cond(
        starts_with(b"\xff\xd8"),
        lambda: tf.cast(tf.io.extract_jpeg_shape(contents)[:2], tf.int64),
        lambda: tf.zeros([2], tf.int64),
    )
    for magic, height, width in [
        (b"\x89PNG", number(20, 4), number(16, 4)),
        (b"GIF8", number(8, 2, little_endian=True), number(6, 2, little_endian=True)),
        # BMP sizes are signed: a negative height means rows stored top-down.
        (
            b"BM",
            tf.abs(int32(number(22, 4, little_endian=True))),
            tf.abs(int32(number(18, 4, little_endian=True))),
        ),
    ]:
        size = tf.where(starts_with(magic), tf.stack([height, width]), size)
    return size[0], size[1]


def to_model_channels(image: tf.Tensor, channels: int) -> tf.Tensor:
    """uint8 [h, w] or [h, w, 1|3|4] -> [h, w, channels]: alpha dropped, gray via the RGB
    conversion."""
    image = tf.convert_to_tensor(image, tf.uint8)
    if image.shape.rank == 2:
        image = image[..., tf.newaxis]
    if image.shape[-1] == 4:
        image = image[..., :3]
    if image.shape[-1] == 1:
        image = tf.image.grayscale_to_rgb(image)
    return tf.image.rgb_to_grayscale(image) if channels == 1 else image


def fitted_width(height, width, input_shape):
    """Width of a ``height`` x ``width`` image fitted to ``input_shape`` (before padding), at least
    1.

    The height becomes H with the aspect ratio kept, rounded to the nearest column, and a wider
    result is squeezed to W. One integer formula for Python ints (the start-up check) and int
    tensors (:func:`preprocess_image`), so both agree to the pixel.
    """
    maximum, minimum = (tf.maximum, tf.minimum) if tf.is_tensor(height) else (max, min)
    target_height, target_width = input_shape
    scaled = (width * target_height + height // 2) // maximum(height, 1)
    return minimum(maximum(scaled, 1), target_width)


def preprocess_image(image: tf.Tensor, params: Params, training: bool = False):
    """Fits one decoded image to the network input.

    Resizes to height H keeping the aspect ratio (squeezed to W if wider), scales pixels to [0, 1],
    augments when ``training`` and ``params.data_augmentation``, and right-pads with 0 to width W.
    The resize reads the uint8 pixels directly, so a huge input never exists as a float copy.

    Args:
        image: uint8 [h, w, C] with C = ``params.input_channels`` (see :func:`to_model_channels`).
        params: ``input_shape``, ``input_channels`` and the augmentation settings are read.
        training: augment (TRAIN mode only).

    Returns:
        (float32 [H, W, C] pixels, int32 width of the content before padding).
    """
    target_height, target_width = params.input_shape
    height, width = tf.shape(image)[0], tf.shape(image)[1]
    new_width = fitted_width(height, width, params.input_shape)
    # A multiply, not / 255: graph optimizers rewrite the division so, and serving must match
    # training bit for bit.
    image = tf.image.resize(image, [target_height, new_width], method="bilinear", antialias=True)
    image = image * (1 / 255)
    if training and params.data_augmentation:
        image = augment(image, params)
    image = tf.clip_by_value(image, 0.0, 1.0)
    image = tf.pad(image, [[0, 0], [0, target_width - new_width], [0, 0]])
    image.set_shape([target_height, target_width, params.input_channels])
    return image, new_width
