"""Tests of the embedded demo data set (tf_crnn.demo): format, determinism, reuse, gfile URLs,
legibility guards."""

import os
import re

import cv2
import numpy as np
import pytest

from tf_crnn import demo
from tf_crnn.demo import DEMO_ALPHABET, generate_demo_dataset, render_text_line

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
ROW_PATTERN = re.compile(r"images/(train|eval)_\d{6}\.png;[0-9a-z]{3,8}")


def generate(folder, num_train=12, num_eval=4, seed=0):
    return generate_demo_dataset(
        str(folder), num_train=num_train, num_eval=num_eval, seed=seed, progress=False
    )


def read_rows(csv_path):
    with open(csv_path, encoding="utf-8", newline="") as f:
        return [line.rstrip("\n").split(";") for line in f]


def read_images(csv_path):
    folder = os.path.dirname(csv_path)
    return [
        cv2.imread(os.path.join(folder, path), cv2.IMREAD_UNCHANGED)
        for path, _ in read_rows(csv_path)
    ]


def test_same_seed_gives_identical_data(tmp_path):
    first, second = generate(tmp_path / "a", seed=5), generate(tmp_path / "b", seed=5)
    for csv_a, csv_b in zip(first, second):
        with open(csv_a, "rb") as a, open(csv_b, "rb") as b:
            assert a.read() == b.read()
        for image_a, image_b in zip(read_images(csv_a), read_images(csv_b)):
            np.testing.assert_array_equal(image_a, image_b)


def test_different_seeds_give_different_data(tmp_path):
    first, second = generate(tmp_path / "a", seed=0), generate(tmp_path / "b", seed=1)
    for csv_a, csv_b in zip(first, second):
        labels_a = [label for _, label in read_rows(csv_a)]
        labels_b = [label for _, label in read_rows(csv_b)]
        assert labels_a != labels_b
        images_a, images_b = read_images(csv_a), read_images(csv_b)
        assert any(a.shape != b.shape or (a != b).any() for a, b in zip(images_a, images_b))


def test_samples_do_not_depend_on_the_requested_counts(tmp_path):
    small_train, small_eval = generate(tmp_path / "small", num_train=5, num_eval=3)
    large_train, large_eval = generate(tmp_path / "large", num_train=9, num_eval=3)
    assert read_rows(large_train)[:5] == read_rows(small_train)
    assert read_rows(large_eval) == read_rows(small_eval)


def test_csv_rows_and_images(tmp_path):
    train_csv, eval_csv = generate(tmp_path, num_train=150, num_eval=20)
    assert (train_csv, eval_csv) == (str(tmp_path / "train.csv"), str(tmp_path / "eval.csv"))
    lengths = set()
    for csv_path, split, count in ((train_csv, "train", 150), (eval_csv, "eval", 20)):
        with open(csv_path, "rb") as f:
            content = f.read()
        assert b"\r" not in content and content.endswith(b"\n")
        lines = content.decode("utf-8").split("\n")[:-1]
        assert len(lines) == count  # no header, no blank lines
        for line in lines:
            assert ROW_PATTERN.fullmatch(line), line
            path, label = line.split(";")
            assert path.startswith(f"images/{split}_")
            assert 3 <= len(label) <= 8 and set(label) <= set(DEMO_ALPHABET)
            lengths.add(len(label))
            image_path = tmp_path / path
            with open(image_path, "rb") as f:
                assert f.read(8) == PNG_SIGNATURE
            image = cv2.imread(str(image_path), cv2.IMREAD_UNCHANGED)
            assert image is not None and image.ndim == 2 and image.dtype == np.uint8
            assert image.shape[0] > 0 and image.shape[1] > 0
    assert lengths == set(range(3, 9))


def test_existing_data_is_reused(tmp_path, monkeypatch):
    paths = generate(tmp_path, num_train=6, num_eval=2)
    stamps = {path: os.stat(path).st_mtime_ns for path in paths}

    def must_not_render(*args):
        raise AssertionError("existing demo data was regenerated")

    monkeypatch.setattr(demo, "render_text_line", must_not_render)
    assert generate(tmp_path, num_train=6, num_eval=2) == paths
    assert {path: os.stat(path).st_mtime_ns for path in paths} == stamps


def test_other_counts_regenerate(tmp_path):
    generate(tmp_path, num_train=6, num_eval=2)
    train_csv, eval_csv = generate(tmp_path, num_train=8, num_eval=3)
    assert len(read_rows(train_csv)) == 8 and len(read_rows(eval_csv)) == 3


def test_url_output_is_written_through_gfile(ram_root, tmp_path, monkeypatch):
    """A scheme:// folder (ram:// here, gs:// in the cloud) is kept as written, not made absolute
    into a local "gs:" folder, and holds the same bytes as a local run."""
    import tensorflow as tf

    from tf_crnn.csv_rows import read_csv_rows

    monkeypatch.chdir(tmp_path)
    ram_folder = f"{ram_root}/data"
    train_csv, eval_csv = generate(ram_folder, num_train=5, num_eval=2, seed=3)
    assert (train_csv, eval_csv) == (f"{ram_folder}/train.csv", f"{ram_folder}/eval.csv")
    assert os.listdir(tmp_path) == []  # nothing local, no "ram:" folder
    assert sorted(tf.io.gfile.listdir(ram_folder)) == ["eval.csv", "images", "train.csv"]  # no .tmp

    local_train, local_eval = generate(tmp_path / "local", num_train=5, num_eval=2, seed=3)
    for csv_path, local_csv, count in ((train_csv, local_train, 5), (eval_csv, local_eval, 2)):
        with tf.io.gfile.GFile(csv_path, "rb") as f:
            content = f.read()
        with open(local_csv, "rb") as f:
            assert content == f.read()
        rows = read_csv_rows(csv_path, ";").strict()
        assert len(rows) == count
        for row, line in zip(rows, content.decode("utf-8").splitlines()):
            path, label = line.split(";")
            assert row.image_path == f"{ram_folder}/{path}" and row.label == label
            assert tf.io.gfile.exists(row.image_path)
        with tf.io.gfile.GFile(rows[0].image_path, "rb") as f:
            encoded = f.read()
        assert encoded.startswith(PNG_SIGNATURE)
        image = cv2.imdecode(np.frombuffer(encoded, np.uint8), cv2.IMREAD_UNCHANGED)
        assert image is not None and image.ndim == 2 and image.dtype == np.uint8
        np.testing.assert_array_equal(image, read_images(local_csv)[0])

    def must_not_render(*args):
        raise AssertionError("existing demo data was regenerated")

    monkeypatch.setattr(demo, "render_text_line", must_not_render)
    assert generate(ram_folder, num_train=5, num_eval=2) == (train_csv, eval_csv)


def test_invalid_counts_are_refused(tmp_path):
    with pytest.raises(ValueError, match="at least 1"):
        generate(tmp_path, num_train=0)


def test_rendering_varies(tmp_path):
    images = read_images(generate(tmp_path, num_train=50, num_eval=1)[0])
    heights = {image.shape[0] for image in images}
    backgrounds = [float(np.median(image)) for image in images]  # the background covers most pixels
    assert len(heights) >= 5
    assert 28 <= min(heights) and max(heights) <= 52
    assert len({round(b) for b in backgrounds}) >= 20
    assert sum(b < 110 for b in backgrounds) >= 10  # light on dark
    assert sum(b > 145 for b in backgrounds) >= 10  # dark on light
    assert len({image.shape[1] for image in images}) >= 20


def test_text_is_never_clipped(monkeypatch):
    """All ink drawn on the canvas ends up inside the image, with a margin on every side."""
    canvases = []

    def keep_canvas(text, rng):
        canvas, top, bottom = draw(text, rng)
        canvases.append(canvas)
        return canvas, top, bottom

    draw = demo._draw_slanted_text
    monkeypatch.setattr(demo, "_draw_slanted_text", keep_canvas)
    # The image is the white-on-black ink.
    monkeypatch.setattr(demo, "_paint", lambda mask, rng: mask)
    rng = np.random.default_rng(3)
    for _ in range(300):
        text = "".join(rng.choice(list(DEMO_ALPHABET), size=8))
        image = render_text_line(text, rng)
        canvas = canvases.pop()
        assert not (
            canvas[0].any() or canvas[-1].any() or canvas[:, 0].any() or canvas[:, -1].any()
        ), text
        assert int(image.sum()) == int(canvas.sum()), text
        assert not (
            image[0].any() or image[-1].any() or image[:, 0].any() or image[:, -1].any()
        ), text


def test_render_text_line_is_deterministic():
    first = render_text_line("abc123", np.random.default_rng(7))
    second = render_text_line("abc123", np.random.default_rng(7))
    assert first.dtype == np.uint8 and first.ndim == 2
    np.testing.assert_array_equal(first, second)


def test_command_line(tmp_path, capsys):
    demo.main(["--output", str(tmp_path), "--train", "3", "--eval", "2", "--seed", "4"])
    output = capsys.readouterr().out
    assert str(tmp_path / "train.csv") in output and str(tmp_path / "eval.csv") in output
    assert (
        len(read_rows(tmp_path / "train.csv")) == 3 and len(read_rows(tmp_path / "eval.csv")) == 2
    )
