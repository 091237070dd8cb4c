"""tf_crnn.images: decoding every format, the fitted width in Python and in the graph, pixels
normalized and resized as documented, channels, and the bound on decoded pixels."""

import struct

import cv2
import numpy as np
import pytest
import tensorflow as tf
from helpers import concatenated, encode_gif, tiny_params, write_image

from tf_crnn.data_handler import input_fn
from tf_crnn.images import (
    MAX_IMAGE_PIXELS,
    decode_image,
    encoded_image_size,
    fitted_width,
    preprocess_image,
    to_model_channels,
)


def png_header(height: int, width: int) -> bytes:
    """The first 26 bytes of a PNG of ``height`` x ``width``: as far as a header reader looks."""
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I4sII", 13, b"IHDR", width, height) + b"\x08\x00"


# --- fitted width ---------------------------------------------------------------------------------
SIZES = [(32, 64), (16, 40), (48, 300), (64, 20), (45, 77), (1, 1), (200, 1), (7, 3), (32, 128)]


def test_fitted_width_in_python_equals_the_graphs():
    for input_shape in ([32, 128], [48, 256], [64, 100]):
        python = [fitted_width(h, w, input_shape) for h, w in SIZES]
        heights, widths = tf.constant([h for h, _ in SIZES]), tf.constant([w for _, w in SIZES])
        graph = fitted_width(heights, widths, input_shape)
        assert graph.numpy().tolist() == python, input_shape
        assert all(1 <= width <= input_shape[1] for width in python)
    # Height scaled to 32 keeping the aspect ratio, rounded to the nearest column, at most 128.
    assert [fitted_width(h, w, [32, 128]) for h, w in SIZES] == [
        64,
        80,
        128,
        10,
        55,
        32,
        1,
        14,
        128,
    ]


def test_widths_match_fitted_width_and_padding_is_zero(tmp_path, write_csv):
    sizes = [(32, 64), (16, 40), (48, 300), (64, 20), (45, 77)]
    lines = []
    for index, (height, width) in enumerate(sizes):
        write_image(tmp_path / f"{index}.png", np.full((height, width), 200, np.uint8))
        lines.append(f"{index}.png;{'ab' if width > 30 else 'a'}")
    csv = write_csv(tmp_path / "data.csv", lines)
    params = tiny_params()
    features, _ = concatenated(input_fn(csv, params, "eval"), params)
    expected = [fitted_width(height, width, params.input_shape) for height, width in sizes]
    assert expected == [64, 80, 128, 10, 55]
    assert features["images_widths"].tolist() == expected
    for image, width in zip(features["images"], expected):
        np.testing.assert_allclose(image[:, :width], 200 / 255, atol=1e-5)
        assert (image[:, width:] == 0).all()
    # preprocess_image alone gives the same pixels and widths.
    for index, (image, width) in enumerate(zip(features["images"], expected)):
        decoded = decode_image(tf.io.read_file(str(tmp_path / f"{index}.png")), 1)
        pixels, fitted = preprocess_image(decoded, params)
        assert int(fitted) == width
        np.testing.assert_array_equal(pixels.numpy(), image)


# --- pixels ---------------------------------------------------------------------------------------
def test_known_pixels_are_normalized_and_resized_as_documented(tmp_path, write_csv):
    half = np.zeros((32, 64), np.uint8)
    half[:, 32:] = 255
    write_image(tmp_path / "half.png", half)
    write_image(tmp_path / "gray.png", np.full((16, 16), 128, np.uint8))
    csv = write_csv(tmp_path / "data.csv", ["half.png;ab", "gray.png;a"])
    params = tiny_params()
    features, _ = concatenated(input_fn(csv, params, "eval"), params)
    half_out, gray_out = features["images"][..., 0]
    assert features["images_widths"].tolist() == [64, 32]
    np.testing.assert_allclose(half_out[:, :32], 0.0, atol=1e-6)
    np.testing.assert_allclose(half_out[:, 32:64], 1.0, atol=1e-6)
    assert (half_out[:, 64:] == 0).all()
    np.testing.assert_allclose(gray_out[:, :32], 128 / 255, atol=1e-6)  # 16x16 -> 32x32
    assert (gray_out[:, 32:] == 0).all()


def test_input_channels(tmp_path, write_csv):
    write_image(tmp_path / "gray.png", np.full((32, 32), 100, np.uint8))
    red = np.zeros((32, 32, 3), np.uint8)
    red[..., 2] = 255  # OpenCV writes BGR
    write_image(tmp_path / "red.png", red)
    csv = write_csv(tmp_path / "data.csv", ["gray.png;a", "red.png;b"])

    params = tiny_params(input_channels=3)
    rgb, _ = concatenated(input_fn(csv, params, "eval"), params)
    assert rgb["images"].shape == (2, 32, 128, 3)
    np.testing.assert_allclose(rgb["images"][0, :, :32], 100 / 255, atol=1e-6)
    red_rgb = np.broadcast_to([1.0, 0.0, 0.0], (32, 32, 3))
    np.testing.assert_allclose(rgb["images"][1, :, :32], red_rgb, atol=1e-6)

    params = tiny_params(input_channels=1)
    gray, _ = concatenated(input_fn(csv, params, "eval"), params)
    assert gray["images"].shape == (2, 32, 128, 1)
    np.testing.assert_allclose(gray["images"][0, :, :32], 100 / 255, atol=1e-6)
    luma_of_red = 0.299
    np.testing.assert_allclose(gray["images"][1, :, :32], luma_of_red, atol=1.5 / 255)


def test_to_model_channels_drops_alpha_and_converts_gray_like_rgb():
    gray = np.full((2, 3), 100, np.uint8)
    rgba = np.dstack([np.full((2, 3), v, np.uint8) for v in (255, 0, 0, 7)])
    assert to_model_channels(gray, 3).numpy().tolist() == np.full((2, 3, 3), 100).tolist()
    assert to_model_channels(gray[..., np.newaxis], 1).numpy().tolist() == gray[..., None].tolist()
    assert to_model_channels(rgba, 3).numpy()[0, 0].tolist() == [255, 0, 0]
    rgb_gray = tf.image.rgb_to_grayscale(tf.constant(rgba[..., :3])).numpy()
    np.testing.assert_array_equal(to_model_channels(rgba, 1).numpy(), rgb_gray)


# --- formats --------------------------------------------------------------------------------------
def test_jpeg_bmp_and_gif_decode(tmp_path, write_csv):
    pattern = np.zeros((32, 48), np.uint8)
    pattern[:, 16:32] = 128
    pattern[:, 32:] = 255
    write_image(tmp_path / "gray.jpg", np.full((32, 48), 90, np.uint8))
    write_image(tmp_path / "pattern.bmp", pattern)
    write_image(tmp_path / "colour.bmp", np.dstack([pattern] * 3))
    (tmp_path / "pattern.gif").write_bytes(encode_gif(pattern))
    csv = write_csv(
        tmp_path / "data.csv", ["gray.jpg;ab", "pattern.bmp;ab", "colour.bmp;ab", "pattern.gif;ab"]
    )
    params = tiny_params(eval_batch_size=4)
    features, texts = concatenated(input_fn(csv, params, "eval"), params)
    assert texts == ["ab"] * 4
    assert features["images_widths"].tolist() == [48] * 4
    jpeg = features["images"][0, :, :48, 0]
    np.testing.assert_allclose(jpeg, 90 / 255, atol=2 / 255)  # JPEG is lossy
    for image in features["images"][1:]:
        np.testing.assert_allclose(image[:, :48, 0], pattern / 255, atol=1e-6)


def test_encoded_image_size_reads_the_header_of_every_format():
    gray = np.zeros((23, 57), np.uint8)
    files = {
        "png": cv2.imencode(".png", gray)[1].tobytes(),
        "jpeg": cv2.imencode(".jpg", gray)[1].tobytes(),
        "bmp": cv2.imencode(".bmp", gray)[1].tobytes(),
        "gif": encode_gif(gray),
    }
    for name, contents in files.items():
        height, width = encoded_image_size(tf.constant(contents))
        assert (int(height), int(width)) == (23, 57), name
    for junk in (b"", b"not an image", b"\x89PN"):
        assert [int(v) for v in encoded_image_size(tf.constant(junk))] == [0, 0]


def test_more_pixels_than_the_bound_are_refused_before_decoding():
    header = tf.constant(png_header(20000, 20000))
    assert [int(v) for v in encoded_image_size(header)] == [20000, 20000]
    message = f"image of 20000 x 20000 pixels: more than the {MAX_IMAGE_PIXELS} pixels"
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        decode_image(header, 1)
    # Just within the bound, the header passes and the (truncated) data is what fails.
    height = MAX_IMAGE_PIXELS // 20000
    with pytest.raises(tf.errors.InvalidArgumentError) as error:
        decode_image(tf.constant(png_header(height, 20000)), 1)
    assert "more than the" not in str(error.value)
