"""Images: encoded bytes -> pixels -> the model's input. The one preprocessing path.

Training, evaluation and every serving signature go through :func:`decode_image` and
:func:`preprocess_image`, so a served model sees exactly the pixels it was trained on.
"""

from __future__ import annotations

import tensorflow as tf

from tf_crnn.augment import augment
from tf_crnn.config import Params
from tf_crnn.constants import MAX_SERVING_BATCH_PIXELS

# The most pixels (height x width) decode_image accepts. Decoding and the conversion to gray take
# about 19 bytes per pixel, so without a bound one 20000 x 20000 upload costs a server 7 GB; at the
# bound an image costs 0.75 GB. A 600-dpi A4 page scan has 35 million pixels; a text line rarely 5.
MAX_IMAGE_PIXELS = 40_000_000
# The most GIF blocks (frames, extensions and their data sub-blocks) read to find a GIF's frames
# before decoding it: 2.5 MB of GIF in the usual 255-byte sub-blocks. Each costs a loop step (about
# 30 us), so a GIF cut into millions of 1-byte sub-blocks cannot keep a server busy; a GIF of more
# is refused.
MAX_GIF_BLOCKS = 10_000


def decode_image(
    contents: tf.Tensor, channels: int, source: str | tf.Tensor | None = None
) -> tf.Tensor:
    """Encoded PNG/JPEG/BMP/GIF bytes -> uint8 [h, w, channels] (first frame of a GIF).

    An image of more than ``MAX_IMAGE_PIXELS`` is refused with InvalidArgumentError before its
    pixels are decoded (its size is read from the file header). For a GIF that is every frame's
    pixels added up, because TensorFlow's GIF decoder decodes all frames even when only the first
    is used, and sizes them by the largest frame, whatever the GIF's screen size says: without
    this, a 300 KB GIF declaring a 1 x 1 screen decodes to 2 GB.

    ``source`` (e.g. ``image_bytes[3]``), when given, starts that refusal's message, so that the
    caller of a batch knows which image it was.
    """
    problem = size_problem(contents)
    message = problem if source is None else tf.strings.join([source, ": ", problem])
    small_enough = tf.debugging.Assert(tf.equal(problem, ""), [message])
    with tf.control_dependencies([small_enough]):
        image = tf.io.decode_image(contents, channels=3, expand_animations=False)
    return to_model_channels(image, channels)


def size_problem(contents: tf.Tensor) -> tf.Tensor:
    """Why :func:`decode_image` refuses encoded bytes before decoding them, or "" (string tensor).

    Only the file header (and a GIF's block structure) is read: nothing is decoded.
    """
    height, width, frames, pixels = _layout(contents)
    too_many = f"more than the {MAX_IMAGE_PIXELS} pixels tf_crnn decodes"
    return tf.case(
        [
            (
                height * width > MAX_IMAGE_PIXELS,
                lambda: tf.strings.format(
                    f"image of {{}} x {{}} pixels: {too_many}", [height, width]
                ),
            ),
            (
                frames < 0,
                lambda: tf.constant(
                    f"GIF of more than {MAX_GIF_BLOCKS} blocks: more than tf_crnn reads"
                ),
            ),
            (
                pixels > MAX_IMAGE_PIXELS,
                lambda: tf.strings.format(
                    f"GIF of {{}} frames, {{}} pixels in all: {too_many}", [frames, pixels]
                ),
            ),
        ],
        default=lambda: tf.constant(""),
    )


def encoded_image_size(contents: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """int64 (height, width) from the header of encoded PNG/JPEG/BMP/GIF bytes, without decoding
    them.

    (0, 0) for anything else: ``tf.io.decode_image`` then names the problem. The header fields are
    the ones TensorFlow's decoders read; for a GIF, the largest frame height and width (which size
    the decoded image), not the screen size.
    """
    height, width, _, _ = _layout(contents)
    return height, width


def _layout(contents: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]:
    """int64 (height, width, frames, pixels decoded) of encoded bytes: one frame of height x width,
    except for a GIF (see :func:`_gif_frames`)."""
    header = _header(contents)

    def number(start, size, little_endian=False):
        value = tf.constant(0, tf.int64)
        for i in reversed(range(size)) if little_endian else range(size):
            value = value * 256 + header[start + i]
        return value

    def int32(value):
        return tf.where(value >= 2**31, value - 2**32, value)

    size = tf.cond(
        _starts_with(header, b"\xff\xd8"),
        lambda: tf.cast(tf.io.extract_jpeg_shape(contents)[:2], tf.int64),
        lambda: tf.zeros([2], tf.int64),
    )
    for magic, height, width in [
        (b"\x89PNG", number(20, 4), number(16, 4)),
        # BMP sizes are signed: a negative height means rows stored top-down.
        (
            b"BM",
            tf.abs(int32(number(22, 4, little_endian=True))),
            tf.abs(int32(number(18, 4, little_endian=True))),
        ),
    ]:
        size = tf.where(_starts_with(header, magic), tf.stack([height, width]), size)
    one_frame = (size[0], size[1], tf.constant(1, tf.int64), size[0] * size[1])
    return tf.cond(_starts_with(header, b"GIF8"), lambda: _gif_frames(contents), lambda: one_frame)


def _header(contents: tf.Tensor) -> tf.Tensor:
    """The first 26 bytes of ``contents`` as int64 [26], zero-padded."""
    padded = tf.strings.join([tf.strings.substr(contents, 0, 26), b"\0" * 26])
    return tf.cast(tf.io.decode_raw(tf.strings.substr(padded, 0, 26), tf.uint8), tf.int64)


def _starts_with(header: tf.Tensor, magic: bytes) -> tf.Tensor:
    # tf.equal, not ==: in a graph (the Estimator's, a SavedModel's) Tensor == compares identity.
    return tf.reduce_all(tf.equal(header[: len(magic)], list(magic)))


def _gif_frames(contents: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]:
    """int64 (height, width, frames, pixels) that TensorFlow's GIF decoder allocates for GIF bytes.

    It sizes the image by the largest frame height and width, and decodes every frame, so the
    frames' descriptors are found by walking the GIF's blocks: after the screen descriptor and its
    colour table, a frame (0x2C, its descriptor and colour table, then data sub-blocks) or an
    extension (0x21, a label, then sub-blocks) follows another until the trailer; a sub-block is a
    length byte and that many bytes, and a zero length ends a chain. ``frames`` is -1 when more
    than :data:`MAX_GIF_BLOCKS` blocks were read before the end.
    """
    data = tf.io.decode_raw(contents, tf.uint8)
    end = tf.size(data, tf.int64)
    # Zeros past the end, so that a block read at any position up to the end is 10 bytes.
    padded = tf.concat([data, tf.zeros([10], tf.uint8)], 0)
    offsets = tf.range(10, dtype=tf.int64)

    def bytes_at(position):
        return tf.cast(tf.gather(padded, tf.minimum(position, end) + offsets), tf.int64)

    def colour_table_size(flags):
        return tf.where(
            flags >= 128, 3 * tf.bitwise.left_shift(tf.constant(2, tf.int64), flags % 8), 0
        )

    def step(position, in_sub_blocks, height, width, frames, pixels, ended):
        block = bytes_at(position)
        first = block[0]
        # At a block: a frame, an extension, or the end (the trailer 0x3B, or anything else).
        is_frame, is_extension = tf.equal(first, 0x2C), tf.equal(first, 0x21)
        new_frame = tf.logical_and(tf.logical_not(in_sub_blocks), is_frame)
        frame_width, frame_height = block[5] + 256 * block[6], block[7] + 256 * block[8]
        frame_data = position + 11 + colour_table_size(block[9])
        # Inside a chain of sub-blocks, the first byte is the length of the one to skip.
        return (
            tf.where(
                in_sub_blocks,
                position + 1 + first,
                tf.where(is_frame, frame_data, position + 2),
            ),
            tf.where(in_sub_blocks, tf.not_equal(first, 0), tf.logical_or(is_frame, is_extension)),
            tf.where(new_frame, tf.maximum(height, frame_height), height),
            tf.where(new_frame, tf.maximum(width, frame_width), width),
            frames + tf.cast(new_frame, tf.int64),
            pixels + tf.where(new_frame, frame_width * frame_height, 0),
            tf.logical_not(in_sub_blocks | is_frame | is_extension),
        )

    def going_on(position, in_sub_blocks, height, width, frames, pixels, ended):
        return tf.logical_and(tf.logical_not(ended), position < end)

    zero = tf.constant(0, tf.int64)
    start = 13 + colour_table_size(bytes_at(tf.constant(10, tf.int64))[0])
    position, _, height, width, frames, pixels, ended = tf.while_loop(
        going_on,
        step,
        (start, tf.constant(False), zero, zero, zero, zero, tf.constant(False)),
        maximum_iterations=MAX_GIF_BLOCKS,
    )
    unfinished = tf.logical_and(tf.logical_not(ended), position < end)
    return height, width, tf.where(unfinished, tf.constant(-1, tf.int64), frames), pixels


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
    target_height = params.input_shape[0]
    height, width = tf.shape(image)[0], tf.shape(image)[1]
    new_width = fitted_width(height, width, params.input_shape)
    # A multiply, not / 255: graph optimizers rewrite the division so, and serving must match
    # training bit for bit.
    image = tf.image.resize(image, [target_height, new_width], method="bilinear", antialias=True)
    image = tf.clip_by_value(image * (1 / 255), 0.0, 1.0)
    image = _pad_to_input_width(image, new_width, params)
    if training and params.data_augmentation:
        image = augment_fitted(image, new_width, params)
    return image, new_width


def augment_fitted(image: tf.Tensor, width: tf.Tensor, params: Params) -> tf.Tensor:
    """Augments the content (the first ``width`` columns) of a fitted [H, W, C] image, padded
    again. Apart from the fitting, so that fitted images kept in a cache (``cache_decoded_images``)
    are augmented afresh at every read."""
    content = tf.clip_by_value(augment(image[:, :width], params), 0.0, 1.0)
    return _pad_to_input_width(content, width, params)


def _pad_to_input_width(content: tf.Tensor, width: tf.Tensor, params: Params) -> tf.Tensor:
    target_height, target_width = params.input_shape
    image = tf.pad(content, [[0, 0], [0, target_width - width], [0, 0]])
    image.set_shape([target_height, target_width, params.input_channels])
    return image


def max_serving_batch(params: Params) -> int:
    """The most images one call of a served model takes: ``MAX_SERVING_BATCH_PIXELS`` of network
    input (1024 images at 32 x 128)."""
    height, width = params.input_shape
    return max(1, MAX_SERVING_BATCH_PIXELS // (height * width))
