"""tf_crnn.visualize: captioned pictures (green when right, red with the truth when wrong), the
samples grid, samples.png, and the TensorBoard summaries of an evaluation batch."""

import cv2
import numpy as np
import tensorflow as tf
from helpers import encode_gif, write_image

from tf_crnn import visualize
from tf_crnn.visualize import CAPTION_HEIGHT, RIGHT, WRONG

# Anti-aliased text has few pixels of exactly its colour: the nearest ink pixel is within NEAR of
# it, and every ink pixel is beyond FAR from the other colour.
NEAR, FAR = 60, 150


def caption_ink(picture: np.ndarray, image_height: int) -> np.ndarray:
    """[n, 3] BGR pixels of the caption strip that are not white paper."""
    strip = picture[image_height:].reshape(-1, 3).astype(int)
    return strip[(strip != 255).any(axis=1)]


def nearest(ink: np.ndarray, colour) -> int:
    """How far (sum of absolute BGR differences) the closest ink pixel is from ``colour``."""
    return int(np.abs(ink - np.array(colour)).sum(axis=1).min())


def ink_columns(picture: np.ndarray, image_height: int) -> np.ndarray:
    strip = picture[image_height:]
    return np.where((strip != 255).any(axis=2).any(axis=0))[0]


def test_a_right_prediction_is_captioned_in_green_under_the_image():
    image = np.full((32, 200), 0.5, np.float32)
    picture = visualize.captioned(image, "123", "123")
    assert picture.shape == (32 + CAPTION_HEIGHT, 200, 3) and picture.dtype == np.uint8
    np.testing.assert_array_equal(picture[:32], 127)  # the image itself, gray in all 3 channels
    ink = caption_ink(picture, 32)
    assert len(ink) > 20
    assert nearest(ink, RIGHT) < NEAR and nearest(ink, WRONG) > FAR
    # Anti-aliased green on white: blue and red stay equal, green is the strongest.
    assert (ink[:, 0] == ink[:, 2]).all() and (ink[:, 1] >= ink[:, 0]).all()
    # Without a truth there is nothing to be wrong about: green too.
    assert nearest(caption_ink(visualize.captioned(image, "123"), 32), RIGHT) < NEAR


def test_a_wrong_prediction_is_captioned_in_red_followed_by_the_truth():
    image = np.full((32, 200), 0.5, np.float32)
    right = visualize.captioned(image, "123", "123")
    wrong = visualize.captioned(image, "123", "124")
    ink = caption_ink(wrong, 32)
    assert nearest(ink, WRONG) < NEAR and nearest(ink, RIGHT) > FAR
    assert (ink[:, 0] == ink[:, 1]).all() and (ink[:, 2] >= ink[:, 0]).all()
    # "123  [truth: 124]": the same start, then much more text.
    assert ink_columns(wrong, 32).min() == ink_columns(right, 32).min()
    assert ink_columns(wrong, 32).max() > ink_columns(right, 32).max() + 60
    # The caption is exactly that text, drawn as captioned() draws it.
    expected = np.full((CAPTION_HEIGHT, 200, 3), 255, np.uint8)
    cv2.putText(
        expected,
        "123  [truth: 124]",
        (2, CAPTION_HEIGHT - 5),
        cv2.FONT_HERSHEY_SIMPLEX,
        0.45,
        WRONG,
        1,
        cv2.LINE_AA,
    )
    np.testing.assert_array_equal(wrong[32:], expected)


def test_captioned_pads_to_the_width_and_reads_every_kind_of_image():
    gray_uint8 = np.zeros((20, 30), np.uint8)
    picture = visualize.captioned(gray_uint8, "x", width=80)
    assert picture.shape == (20 + CAPTION_HEIGHT, 80, 3)
    np.testing.assert_array_equal(picture[:20, :30], 0)
    np.testing.assert_array_equal(picture[:20, 30:], 255)  # padded with white
    for image in (np.zeros((20, 30, 1), np.float32), np.zeros((20, 30, 3), np.uint8)):
        assert visualize.captioned(image, "x", "x").shape == (20 + CAPTION_HEIGHT, 30, 3)
    # A narrower width does not crop; characters Hershey fonts lack do not fail.
    assert visualize.captioned(gray_uint8, "北京", "北京", width=10).shape[1] == 30


def test_samples_grid_tiles_two_columns():
    sizes = [(32, 100), (32, 60), (40, 80), (32, 120), (32, 40)]
    images = [np.full(size, 0.8, np.float32) for size in sizes]
    predictions = ["abc", "abc", "cde", "def", "efg"]
    grid = visualize.samples_grid(images, predictions, ["abc", "xyz", "cde", "def", "yyy"])
    tile_height, tile_width = 40 + CAPTION_HEIGHT + 8, 120 + 8
    assert grid.shape == (3 * tile_height, 2 * tile_width, 3) and grid.dtype == np.uint8
    # The sixth place, left empty, is the gray of the borders.
    np.testing.assert_array_equal(grid[2 * tile_height :, tile_width:], 200)
    # The first tile (a right prediction) has green ink only, the second (a wrong one) red.
    first, second = grid[:tile_height, :tile_width], grid[:tile_height, tile_width:]
    for tile, colour, other in ((first, RIGHT, WRONG), (second, WRONG, RIGHT)):
        pixels = tile.reshape(-1, 3).astype(int)
        coloured = pixels[(pixels != pixels[:, :1]).any(axis=1)]  # not white, gray or black
        assert nearest(coloured, colour) < NEAR and nearest(coloured, other) > FAR


def test_save_samples_png_writes_a_png_opencv_reads_back_gif_input_included(tmp_path):
    text = np.full((32, 90), 255, np.uint8)
    cv2.putText(text, "42", (5, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.7, 0, 2)
    png = write_image(tmp_path / "a.png", text)
    (tmp_path / "b.gif").write_bytes(encode_gif(text))
    path = str(tmp_path / "samples.png")
    visualize.save_samples_png(path, [png, str(tmp_path / "b.gif")], ["42", "42"], ["42", "41"])
    read_back = cv2.imread(path)
    assert read_back is not None
    expected = visualize.samples_grid([text[..., np.newaxis]] * 2, ["42", "42"], ["42", "41"])
    assert read_back.shape == expected.shape == (32 + CAPTION_HEIGHT + 8, 2 * (90 + 8), 3)
    np.testing.assert_array_equal(read_back, expected)  # PNG is lossless, GIF too


def test_predictions_summary_has_captioned_images_and_a_text_table():
    with tf.Graph().as_default():
        summary = visualize.predictions_summary(
            tf.random.uniform([6, 32, 64, 1], seed=2),
            tf.constant([64, 40, 20, 64, 64, 64]),
            tf.constant(["ab", "c", "", "d", "e", "f"]),
            tf.constant(["ab", "cc", "x", "d", "e", "g"]),
        )
        with tf.compat.v1.Session() as session:
            serialized = session.run(summary)
    values = {value.tag: value for value in tf.compat.v1.Summary.FromString(serialized).value}
    image_tags = sorted(tag for tag in values if tag.startswith("predictions/image/"))
    assert len(image_tags) == visualize.SUMMARY_IMAGES
    first = values["predictions/image/0"].image
    assert (first.height, first.width) == (32 + CAPTION_HEIGHT, 64)
    table = tf.make_ndarray(values["predictions_vs_truth"].tensor).item().decode()
    assert table.splitlines() == [
        "| prediction | truth |",
        "|---|---|",
        "| ab | ab |",
        "| c | cc |",
        "|  | x |",
        "| d | d |",
        "| e | e |",
        "| f | g |",
    ]
