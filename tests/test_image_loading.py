"""tf_crnn.image_loading: images of CSV rows loaded in tf.data, where a bad image comes out as a
row marked not loaded (not a lost element or an error), and a failed read is retried."""

import threading

import numpy as np
import tensorflow as tf
from helpers import write_image

from tf_crnn import image_loading
from tf_crnn.image_loading import describe_image_problem, load_images


def rows_of(paths):
    return tf.data.Dataset.from_tensor_slices(
        {"csv_file": ["d.csv"] * len(paths), "line_number": list(range(1, len(paths) + 1)),
         "image_path": [str(p) for p in paths]}
    )  # fmt: skip


def loaded(dataset):
    return [
        (int(row["line_number"]), bool(row["loaded"]), int(row["source_width"])) for row in dataset
    ]


def test_bad_images_come_out_marked_with_their_row(tmp_path):
    write_image(tmp_path / "good.png", np.full((20, 50), 100, np.uint8))
    (tmp_path / "text.png").write_text("not an image")
    (tmp_path / "empty.png").write_bytes(b"")
    paths = [tmp_path / name for name in ("good.png", "gone.png", "text.png", "empty.png")]
    rows = loaded(load_images(rows_of(paths), channels=1))
    assert rows == [(1, True, 50), (2, False, 0), (3, False, 0), (4, False, 0)]


def test_prepare_gives_each_row_its_value_or_the_failed_value(tmp_path):
    write_image(tmp_path / "good.png", np.full((20, 50), 100, np.uint8))
    dataset = load_images(
        rows_of([tmp_path / "good.png", tmp_path / "gone.png"]),
        channels=1,
        prepare=lambda image: tf.reduce_max(image),
        failed_value=tf.constant(0, tf.uint8),
    )
    assert [int(row["prepared"]) for row in dataset] == [100, 0]


def test_a_read_that_fails_is_retried(tmp_path, monkeypatch):
    # The image appears while the loader waits before its second attempt.
    monkeypatch.setattr(image_loading, "RETRY_DELAY_SECONDS", 1.0)
    late = tmp_path / "late.png"
    image = np.full((20, 30), 100, np.uint8)
    writer = threading.Timer(0.4, lambda: write_image(late, image))
    writer.start()
    try:
        assert loaded(load_images(rows_of([late]), channels=1)) == [(1, True, 30)]
    finally:
        writer.join()


def test_describe_image_problem(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "text.png").write_text("not an image")
    assert describe_image_problem(str(tmp_path / "gone.png"), 1) == "image file not found"
    assert describe_image_problem(str(tmp_path / "empty.png"), 1) == "image file is empty (0 bytes)"
    text = describe_image_problem(str(tmp_path / "text.png"), 1)
    assert text.startswith("not a readable PNG, JPEG, BMP or GIF image (")
    assert "\n" not in text
