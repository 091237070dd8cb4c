"""Training-time augmentation of one fitted image, drawn per image with ``tf.random`` ops.

Each random op has a seed of its own (beside the graph-level ``random_seed``): a run is repeatable,
each op draws its own stream, and TensorFlow does not warn that the outer graph's seed might be
reused inside the ``tf.data`` map function.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import tensorflow as tf

if TYPE_CHECKING:
    from tf_crnn.config import Params

# One op-level seed per random draw.
SEED_ANGLE, SEED_SHEAR, SEED_MARGINS, SEED_BRIGHTNESS = 1, 2, 3, 4
SEED_CONTRAST, SEED_BLUR, SEED_NOISE_LEVEL, SEED_NOISE = 5, 6, 7, 8


def augment(image: tf.Tensor, params: Params) -> tf.Tensor:
    """Random geometric and photometric changes of one [H, w, C] image with pixels in [0, 1].

    The output keeps the input size, so the true width (and the CTC time steps) do not change.
    Each change is off when its setting is 0.
    """
    image = _random_geometry(image, params)
    if params.aug_brightness_max:
        limit = params.aug_brightness_max
        image += tf.random.uniform([], -limit, limit, seed=SEED_BRIGHTNESS)
    if params.aug_contrast_max:
        low, high = 1 - params.aug_contrast_max, 1 + params.aug_contrast_max
        mean = tf.reduce_mean(image)
        image = (image - mean) * tf.random.uniform([], low, high, seed=SEED_CONTRAST) + mean
    if params.aug_blur_probability:
        blurred = tf.nn.avg_pool2d(image[tf.newaxis], ksize=3, strides=1, padding="SAME")[0]
        blur = tf.random.uniform([], seed=SEED_BLUR) < params.aug_blur_probability
        image = tf.where(blur, blurred, image)
    if params.aug_noise_stddev_max:
        stddev = tf.random.uniform([], 0, params.aug_noise_stddev_max, seed=SEED_NOISE_LEVEL)
        image += tf.random.normal(tf.shape(image), seed=SEED_NOISE) * stddev
    return image


def _random_geometry(image: tf.Tensor, params: Params) -> tf.Tensor:
    """Rotation, shear and random margins as one projective warp; new area in the border colour."""
    if not (params.aug_rotation_max_degrees or params.aug_shear_max or params.aug_padding_max):
        return image
    height = tf.cast(tf.shape(image)[0], tf.float32)
    width = tf.cast(tf.shape(image)[1], tf.float32)
    max_angle = params.aug_rotation_max_degrees * math.pi / 180
    angle = tf.random.uniform([], -1.0, 1.0, seed=SEED_ANGLE) * max_angle
    shear = tf.random.uniform([], -params.aug_shear_max, params.aug_shear_max, seed=SEED_SHEAR)
    margins = tf.random.uniform([4], 0, params.aug_padding_max, seed=SEED_MARGINS) * height
    left, right, top, bottom = tf.unstack(margins)
    # Output -> input mapping: the margins are added around the image, which is then scaled back
    # to its size (so the content keeps a positive size however large the margins); then rotate
    # and shear.
    scale_x, scale_y = (width + left + right) / width, (height + top + bottom) / height
    add_margins = tf.stack([[scale_x, 0, -left], [0, scale_y, -top], [0, 0, 1]])
    cx, cy = width / 2, height / 2
    cos, sin = tf.cos(angle), tf.sin(angle)
    rotate_shear = tf.stack(
        [
            [cos, -sin + shear, cx - cos * cx - (-sin + shear) * cy],
            [sin, cos, cy - sin * cx - cos * cy],
            [0.0, 0.0, 1.0],
        ]
    )
    matrix = tf.reshape(tf.matmul(rotate_shear, add_margins), [9])[:8]
    border = tf.concat([image[0], image[-1], image[:, 0], image[:, -1]], axis=0)
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=image[tf.newaxis],
        transforms=matrix[tf.newaxis],
        output_shape=tf.shape(image)[:2],
        fill_value=tf.reduce_mean(border),
        interpolation="BILINEAR",
        fill_mode="CONSTANT",
    )[0]
