"""tf_crnn.data_handler: what input_fn yields, the preprocessing it documents, and how bad rows are reported."""
import logging
import os
import struct

import cv2
import numpy as np
import pytest
import tensorflow as tf

from tf_crnn import network
from tf_crnn.alphabet import Alphabet
from tf_crnn.config import Params
from tf_crnn.alphabet import with_resolved_alphabet
from tf_crnn.checks import check_csv_files as load_samples
from tf_crnn.csv_rows import DataError
from tf_crnn.data_handler import input_fn
from tf_crnn.images import decode_image, fitted_width, preprocess_image

ALPHABET = list("abcdefghijklmnopqrstuvwxyz0123456789")
LABELS = ["abc", "hello", "x1y2", "zz9", "q"]


def make_params(**overrides):
    values = {"alphabet_units": ALPHABET, "input_shape": [32, 128], "eval_batch_size": 2, "train_batch_size": 2}
    values.update(overrides)
    return Params(**values)


def batches(dataset):
    """[(features as numpy, dense codes padded with -1)] of every batch."""
    return [({key: value.numpy() for key, value in features.items()}, tf.sparse.to_dense(labels, -1).numpy())
            for features, labels in dataset]


def concatenated(dataset):
    """Features of all batches of ``dataset`` joined along the batch axis, plus the decoded labels."""
    features, codes = zip(*batches(dataset))
    joined = {key: np.concatenate([f[key] for f in features]) for key in features[0]}
    alphabet = Alphabet(ALPHABET)
    return joined, [alphabet.decode(row) for batch in codes for row in batch]


def write_image(path, pixels):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    assert cv2.imwrite(str(path), pixels)
    return str(path)


def gif_bytes(gray):
    """A valid GIF89a of a uint8 [h, w] image of at most 4 gray levels, written by hand (nothing here encodes GIF).

    LZW with a clear code before every pair of pixels, so the code width never grows past 3 bits.
    """
    levels = sorted({int(v) for v in gray.flat})
    palette = (levels + [0] * 4)[:4]
    indices = [palette.index(int(v)) for v in gray.flat]
    codes = [code for start in range(0, len(indices), 2) for code in [4] + indices[start:start + 2]] + [5]
    bits = "".join(format(code, "03b")[::-1] for code in codes)
    bits += "0" * (-len(bits) % 8)
    data = bytes(int(bits[i:i + 8][::-1], 2) for i in range(0, len(bits), 8))
    blocks = b"".join(bytes([len(data[i:i + 255])]) + data[i:i + 255] for i in range(0, len(data), 255))
    height, width = gray.shape
    return (b"GIF89a" + struct.pack("<HHBBB", width, height, 0x91, 0, 0)
            + bytes(value for level in palette for value in (level,) * 3)
            + b"," + struct.pack("<HHHHB", 0, 0, width, height, 0) + b"\x02" + blocks + b"\x00;")


@pytest.fixture
def good_image(tmp_path):
    """images/good.png (relative to tmp_path): a 32x64 gray image that fits any short label."""
    write_image(tmp_path / "images" / "good.png", np.full((32, 64), 200, np.uint8))
    return "images/good.png"


# --- what input_fn yields ------------------------------------------------------------------------
def test_eval_batches_shapes_dtypes_and_labels(text_line_csv, tmp_path):
    csv = text_line_csv(LABELS)
    params = make_params()
    batch_list = batches(input_fn(csv, params, "eval"))
    assert [len(features["filenames"]) for features, _ in batch_list] == [2, 2, 1]
    alphabet = Alphabet.from_params(params)
    texts, filenames = [], []
    for features, codes in batch_list:
        size = len(features["filenames"])
        assert features["images"].shape == (size, 32, 128, 1) and features["images"].dtype == np.float32
        assert features["images_widths"].shape == (size,) and features["images_widths"].dtype == np.int32
        assert features["filenames"].dtype == object
        assert 0.0 <= features["images"].min() and features["images"].max() <= 1.0
        assert features["images"].max() > 0.2
        assert codes.dtype == np.int32
        texts += [alphabet.decode(row) for row in codes]
        filenames += [name.decode() for name in features["filenames"]]
    assert texts == LABELS
    assert filenames == [str(tmp_path / "images" / f"data_{i}.png") for i in range(len(LABELS))]


def test_labels_are_a_sparse_tensor_of_codes(text_line_csv):
    csv = text_line_csv(["hello", "ab"])
    _, labels = next(iter(input_fn(csv, make_params(), "eval")))
    assert isinstance(labels, tf.SparseTensor) and labels.dtype == tf.int32
    assert labels.dense_shape.numpy().tolist() == [2, 5]
    assert labels.indices.numpy().tolist() == [[0, 0], [0, 1], [0, 2], [0, 3], [0, 4], [1, 0], [1, 1]]
    alphabet = Alphabet(ALPHABET)
    assert labels.values.numpy().tolist() == alphabet.encode("hello") + alphabet.encode("ab")


def test_code_zero_is_kept_in_the_labels(text_line_csv):
    csv = text_line_csv(["aaba", "a"])  # 'a' has code 0
    _, texts = concatenated(input_fn(csv, make_params(), "eval"))
    assert texts == ["aaba", "a"]


def test_widths_match_fitted_width_and_padding_is_zero(tmp_path, write_csv):
    sizes = [(32, 64), (16, 40), (48, 300), (64, 20), (45, 77)]
    lines = []
    for index, (height, width) in enumerate(sizes):
        write_image(tmp_path / f"{index}.png", np.full((height, width), 200, np.uint8))
        lines.append(f"{index}.png;{'ab' if width > 30 else 'a'}")
    csv = write_csv(tmp_path / "data.csv", lines)
    params = make_params()
    features, _ = concatenated(input_fn(csv, params, "eval"))
    expected = [fitted_width(height, width, params.input_shape) for height, width in sizes]
    assert expected == [64, 80, 128, 10, 55]
    assert features["images_widths"].tolist() == expected
    for image, width in zip(features["images"], expected):
        np.testing.assert_allclose(image[:, :width], 200 / 255, atol=1e-5)
        assert (image[:, width:] == 0).all()


def test_known_pixels_are_normalized_and_resized_as_documented(tmp_path, write_csv):
    half = np.zeros((32, 64), np.uint8)
    half[:, 32:] = 255
    write_image(tmp_path / "half.png", half)
    write_image(tmp_path / "gray.png", np.full((16, 16), 128, np.uint8))
    csv = write_csv(tmp_path / "data.csv", ["half.png;ab", "gray.png;a"])
    features, _ = concatenated(input_fn(csv, make_params(), "eval"))
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

    rgb, _ = concatenated(input_fn(csv, make_params(input_channels=3), "eval"))
    assert rgb["images"].shape == (2, 32, 128, 3)
    np.testing.assert_allclose(rgb["images"][0, :, :32], 100 / 255, atol=1e-6)
    np.testing.assert_allclose(rgb["images"][1, :, :32], np.broadcast_to([1.0, 0.0, 0.0], (32, 32, 3)), atol=1e-6)

    gray, _ = concatenated(input_fn(csv, make_params(input_channels=1), "eval"))
    assert gray["images"].shape == (2, 32, 128, 1)
    np.testing.assert_allclose(gray["images"][0, :, :32], 100 / 255, atol=1e-6)
    np.testing.assert_allclose(gray["images"][1, :, :32], 0.299, atol=1.5 / 255)  # luma of pure red


def test_relative_paths_resolve_against_the_csv_folder(tmp_path, write_csv, monkeypatch):
    write_image(tmp_path / "data" / "imgs" / "a.png", np.full((32, 40), 50, np.uint8))
    absolute = write_image(tmp_path / "elsewhere" / "b.png", np.full((32, 40), 60, np.uint8))
    write_csv(tmp_path / "data" / "set.csv", ["imgs/a.png;ab", f"{absolute};cd"])
    os.makedirs(tmp_path / "run")
    monkeypatch.chdir(tmp_path / "run")
    features, texts = concatenated(input_fn(os.path.join("..", "data", "set.csv"), make_params(), "eval"))
    assert [os.path.normpath(f.decode()) for f in features["filenames"]] == [
        str(tmp_path / "data" / "imgs" / "a.png"), absolute]
    assert texts == ["ab", "cd"]
    np.testing.assert_allclose(features["images"][0, :, :40], 50 / 255, atol=1e-6)


def test_multiple_csv_files(tmp_path, write_csv):
    write_image(tmp_path / "one" / "a.png", np.full((32, 40), 10, np.uint8))
    write_image(tmp_path / "two" / "a.png", np.full((32, 40), 20, np.uint8))
    first = write_csv(tmp_path / "one" / "first.csv", ["a.png;ab", "a.png;ba"])
    second = write_csv(tmp_path / "two" / "second.csv", ["a.png;cc"])
    params = make_params(eval_batch_size=8)
    assert len(load_samples([first, second], params).rows) == 3
    features, texts = concatenated(input_fn([first, second], params, "eval"))
    assert texts == ["ab", "ba", "cc"]
    assert [f.decode() for f in features["filenames"]] == [str(tmp_path / "one" / "a.png")] * 2 + [
        str(tmp_path / "two" / "a.png")]
    np.testing.assert_allclose(features["images"][:, 0, 0, 0], [10 / 255, 10 / 255, 20 / 255], atol=1e-6)


def test_jpeg_bmp_and_gif_decode(tmp_path, write_csv):
    pattern = np.zeros((32, 48), np.uint8)
    pattern[:, 16:32] = 128
    pattern[:, 32:] = 255
    write_image(tmp_path / "gray.jpg", np.full((32, 48), 90, np.uint8))
    write_image(tmp_path / "pattern.bmp", pattern)
    write_image(tmp_path / "colour.bmp", np.dstack([pattern] * 3))
    (tmp_path / "pattern.gif").write_bytes(gif_bytes(pattern))
    csv = write_csv(tmp_path / "data.csv", ["gray.jpg;ab", "pattern.bmp;ab", "colour.bmp;ab", "pattern.gif;ab"])
    features, texts = concatenated(input_fn(csv, make_params(eval_batch_size=4), "eval"))
    assert texts == ["ab"] * 4
    assert features["images_widths"].tolist() == [48] * 4
    np.testing.assert_allclose(features["images"][0, :, :48, 0], 90 / 255, atol=2 / 255)  # JPEG is lossy
    for image in features["images"][1:]:
        np.testing.assert_allclose(image[:, :48, 0], pattern / 255, atol=1e-6)


def test_unicode_labels_bom_and_windows_line_endings(tmp_path, good_image):
    content = "\ufeff" + "".join(f"{good_image};{label}\r\n" for label in ("café", "北京", "سلام"))
    (tmp_path / "data.csv").write_bytes(content.encode("utf-8"))
    params = make_params(alphabet_units=list("café北京سلام"))
    features, codes = zip(*batches(input_fn(str(tmp_path / "data.csv"), params, "eval", batch_size=3)))
    alphabet = Alphabet.from_params(params)
    assert [alphabet.decode(row) for row in codes[0]] == ["café", "北京", "سلام"]
    assert features[0]["filenames"][0].decode() == str(tmp_path / good_image)


def test_split_delimiter_and_csv_delimiter_settings(tmp_path, write_csv, good_image):
    csv = write_csv(tmp_path / "data.tsv", [f"{good_image}\tch|a|ll", f"{good_image}\tll|ch"])
    params = make_params(alphabet_units=["a", "ch", "ll"], string_split_delimiter="|", csv_delimiter="\t")
    (_, codes), = batches(input_fn(csv, params, "eval"))
    assert codes.tolist() == [[1, 0, 2], [2, 1, -1]]


# --- augmentation and shuffling --------------------------------------------------------------------
@pytest.fixture
def twice_the_same_image(text_line_csv, tmp_path, write_csv):
    text_line_csv(["word"])
    return write_csv(tmp_path / "twice.csv", ["images/data_0.png;word", "images/data_0.png;word"])


def unaugmented(path, params):
    image, _ = preprocess_image(decode_image(tf.io.read_file(path), params.input_channels), params, training=False)
    return image.numpy()


def test_training_augmentation_differs_per_image_and_per_epoch(twice_the_same_image, tmp_path):
    params = make_params(data_augmentation=True)
    (first, _), (second, _) = batches(input_fn(twice_the_same_image, params, "train", batch_size=2, num_epochs=2))
    images = np.concatenate([first["images"], second["images"]])
    reference = unaugmented(str(tmp_path / "images" / "data_0.png"), params)
    for i in range(4):
        assert not np.allclose(images[i], reference, atol=1e-3)
        for j in range(i):
            assert not np.allclose(images[i], images[j], atol=1e-3), (i, j)
    assert 0 <= images.min() and images.max() <= 1
    # Augmentation keeps the true width, so the CTC time steps do not change.
    height, width = cv2.imread(str(tmp_path / "images" / "data_0.png"), cv2.IMREAD_GRAYSCALE).shape
    assert first["images_widths"].tolist() == second["images_widths"].tolist() == [fitted_width(height, width, params.input_shape)] * 2


def test_largest_random_margins_keep_the_content_upright(tmp_path, write_csv):
    halves = np.zeros((32, 64), np.uint8)
    halves[16:] = 255  # dark top, bright bottom
    write_image(tmp_path / "halves.png", halves)
    csv = write_csv(tmp_path / "data.csv", ["halves.png;ab"])
    params = make_params(aug_padding_max=1.0, aug_rotation_max_degrees=0, aug_shear_max=0, aug_brightness_max=0,
                         aug_contrast_max=0, aug_noise_stddev_max=0, aug_blur_probability=0)
    features, _ = concatenated(input_fn(csv, params, "train", batch_size=1, num_epochs=16))
    images = features["images"][:, :, :64, 0]
    assert np.isfinite(images).all()
    assert len({image.tobytes() for image in images}) == 16
    for image in images:
        assert image[:8].mean() <= image[-8:].mean() + 1e-3


def test_evaluation_is_deterministic_and_not_augmented(twice_the_same_image, tmp_path):
    params = make_params(data_augmentation=True)
    reference = unaugmented(str(tmp_path / "images" / "data_0.png"), params)
    for _ in range(2):
        features, _ = concatenated(input_fn(twice_the_same_image, params, "eval"))
        for image in features["images"]:
            np.testing.assert_array_equal(image, reference)


def test_without_augmentation_training_images_equal_evaluation_images(twice_the_same_image):
    params = make_params(data_augmentation=False)
    evaluated, _ = concatenated(input_fn(twice_the_same_image, params, "eval"))
    trained, _ = concatenated(input_fn(twice_the_same_image, params, "train", num_epochs=2))
    assert len(trained["images"]) == 4
    for image in trained["images"]:
        np.testing.assert_array_equal(image, evaluated["images"][0])


def far_moves(order, other):
    """How many items sit more than 4 places apart in the two orders: more than the few places the
    parallel (non-deterministic) loading of TRAIN batches can swap neighbours by."""
    return sum(abs(order.index(item) - other.index(item)) > 4 for item in order)


def test_training_reshuffles_every_epoch(tmp_path, write_csv):
    lines = []
    for index in range(16):
        write_image(tmp_path / f"{index}.png", np.full((32, 16), 10 * index, np.uint8))
        lines.append(f"{index}.png;{ALPHABET[index]}")
    csv = write_csv(tmp_path / "data.csv", lines)
    features, texts = concatenated(input_fn(csv, make_params(), "train", batch_size=1, num_epochs=2))
    names = [os.path.basename(f.decode()) for f in features["filenames"]]
    in_order = [f"{index}.png" for index in range(16)]
    assert sorted(names) == sorted(in_order * 2)
    # By first and second appearance, not by halves: parallel loading may let an image of the
    # second epoch overtake one of the first.
    first = list(dict.fromkeys(names))
    second = [name for index, name in enumerate(names) if name in names[:index]]
    assert far_moves(first, in_order) >= 4
    assert far_moves(first, second) >= 4
    # Labels travel with their images through the shuffle.
    assert texts == [ALPHABET[int(name.split(".")[0])] for name in names]


def test_training_drops_the_incomplete_last_batch(text_line_csv):
    csv = text_line_csv(["ab", "cd", "ef"])
    sizes = [len(f["filenames"]) for f, _ in batches(input_fn(csv, make_params(), "train", batch_size=2, num_epochs=1))]
    assert sizes == [2]


# --- labels CTC cannot fit ---------------------------------------------------------------------------
def test_labels_longer_than_the_time_steps_are_dropped_and_reported(tmp_path, write_csv, caplog):
    write_image(tmp_path / "narrow.png", np.full((32, 24), 200, np.uint8))  # 24 columns -> 5 time steps
    csv = write_csv(tmp_path / "data.csv", ["narrow.png;abab", "narrow.png;aaaa", "narrow.png;aaa",
                                            "narrow.png;ababab"])
    params = make_params()
    assert network.time_steps(fitted_width(32, 24, params.input_shape)) == 5
    with caplog.at_level(logging.INFO, logger="tf_crnn"):
        samples = load_samples(csv, params)
    assert [row.label for row in samples.rows] == ["abab", "aaa"]  # 4 and 3 + 2 repeats = 5 steps
    assert samples.skipped_count == 2
    (problem, where), = samples.skipped.items()
    assert problem == "label too long for the CTC time steps of its image"
    assert where == [f"{csv}, row 2 (5 steps)", f"{csv}, row 4 (5 steps)"]
    report = samples.report()
    assert "2 samples" in report and "skipped 2" in report and f"{csv}, row 2" in report
    assert report in caplog.text
    _, texts = concatenated(input_fn(csv, params, "eval"))
    assert texts == ["abab", "aaa"]


# --- bad input: each stops with the file, the row and the problem ----------------------------------
def load_error(csv, params=None):
    with pytest.raises(DataError) as error:
        load_samples(csv, params or make_params())
    return str(error.value)


def test_missing_csv(tmp_path):
    csv = str(tmp_path / "missing.csv")
    message = load_error(csv)
    assert csv in message and "not found" in message
    with pytest.raises(DataError, match="not found"):
        input_fn(csv, make_params(), "eval")


def test_empty_csv(tmp_path, write_csv):
    for name, lines in (("empty.csv", []), ("blank.csv", ["", "  ", ""])):
        csv = write_csv(tmp_path / name, lines)
        message = load_error(csv)
        assert csv in message and "no rows" in message


def test_row_without_delimiter(tmp_path, write_csv, good_image):
    csv = write_csv(tmp_path / "data.csv", [f"{good_image};ab", f"{good_image};cd", f"{good_image},ef"])
    message = load_error(csv)
    assert f"{csv}, row 3" in message and "no ';' delimiter" in message


def test_row_with_too_many_fields(tmp_path, write_csv, good_image):
    csv = write_csv(tmp_path / "data.csv", [f"{good_image};ab", f"{good_image};c;d"])
    message = load_error(csv)
    assert f"{csv}, row 2" in message and "3 fields where 2 are expected" in message


@pytest.mark.parametrize("line, problem", [(";ab", "empty image path"), ("images/good.png;", "empty label")])
def test_row_with_an_empty_field(tmp_path, write_csv, good_image, line, problem):
    csv = write_csv(tmp_path / "data.csv", [f"{good_image};ab", line])
    message = load_error(csv)
    assert f"{csv}, row 2" in message and problem in message


def test_missing_image(tmp_path, write_csv, good_image):
    csv = write_csv(tmp_path / "data.csv", [f"{good_image};ab", f"{good_image};cd", "images/gone.png;ef"])
    message = load_error(csv)
    assert f"{csv}, row 3" in message and "gone.png" in message and "not found" in message


def test_text_file_named_png(tmp_path, write_csv, good_image):
    (tmp_path / "images" / "text.png").write_text("this is not an image\n")
    csv = write_csv(tmp_path / "data.csv", [f"{good_image};ab", "images/text.png;cd"])
    message = load_error(csv)
    assert f"{csv}, row 2" in message and "text.png" in message and "not a readable" in message


def test_truncated_png(tmp_path, write_csv, good_image):
    content = cv2.imencode(".png", np.random.default_rng(0).integers(0, 255, (32, 64), dtype=np.uint8))[1].tobytes()
    (tmp_path / "images" / "cut.png").write_bytes(content[:len(content) // 2])
    csv = write_csv(tmp_path / "data.csv", [f"{good_image};ab", f"{good_image};ab", "images/cut.png;cd"])
    message = load_error(csv)
    assert f"{csv}, row 3" in message and "cut.png" in message and "not a readable" in message


def test_zero_byte_image(tmp_path, write_csv, good_image):
    (tmp_path / "images" / "empty.png").write_bytes(b"")
    csv = write_csv(tmp_path / "data.csv", ["images/empty.png;ab", f"{good_image};ab"])
    message = load_error(csv)
    assert f"{csv}, row 1" in message and "empty.png" in message and "0 bytes" in message


def test_label_units_not_in_the_alphabet(tmp_path, write_csv, good_image):
    labels = ["ab", "a#", "é", "b#", "c", "#", "#", "#", "#", "#"]
    csv = write_csv(tmp_path / "data.csv", [f"{good_image};{label}" for label in labels])
    message = load_error(csv)
    assert "2 label unit(s) are not in the alphabet" in message
    hash_line, = [line for line in message.splitlines() if "'#'" in line]
    assert hash_line.count(csv) == 5 and hash_line.endswith("...")  # the first 5 of its 7 rows
    assert f"{csv}, row 2;" in hash_line and f"{csv}, row 4;" in hash_line and f"{csv}, row 9" not in hash_line
    accent_line, = [line for line in message.splitlines() if "'é'" in line]
    assert accent_line.strip() == f"'é': {csv}, row 3"
    with pytest.raises(DataError, match="not in the alphabet"):
        input_fn(csv, make_params(), "train")


def test_non_utf8_label(tmp_path, write_csv, good_image):
    csv = write_csv(tmp_path / "data.csv", [f"{good_image};ab", f"{good_image};caf\xe9".encode("latin-1")])
    message = load_error(csv)
    assert f"{csv}, row 2" in message and "UTF-8" in message


# --- skip_bad_samples ----------------------------------------------------------------------------------
def test_skip_bad_samples_skips_and_counts_every_bad_row(tmp_path, write_csv, good_image):
    images = tmp_path / "images"
    (images / "text.png").write_text("not an image")
    content = cv2.imencode(".png", np.random.default_rng(0).integers(0, 255, (32, 64), dtype=np.uint8))[1].tobytes()
    (images / "cut.png").write_bytes(content[:len(content) // 2])
    (images / "empty.png").write_bytes(b"")
    write_image(images / "narrow.png", np.full((32, 24), 200, np.uint8))
    csv = write_csv(tmp_path / "data.csv", [
        f"{good_image};ab",  # 1 good
        f"{good_image},ab",  # 2 no delimiter
        f"{good_image};a;b",  # 3 too many fields
        "images/gone.png;ab",  # 4 missing image
        "images/text.png;ab",  # 5 not an image
        "images/cut.png;ab",  # 6 truncated
        "images/empty.png;ab",  # 7 zero bytes
        f"{good_image};a#",  # 8 unknown unit
        f"{good_image};caf\xe9".encode("latin-1"),  # 9 not UTF-8
        f"{good_image};cd",  # 10 good
        "images/narrow.png;aaaa",  # 11 too long for its 5 time steps
    ])
    params = make_params(skip_bad_samples=True)
    samples = load_samples(csv, params)
    assert [(row.line_number, row.label) for row in samples.rows] == [(1, "ab"), (10, "cd")]
    assert samples.skipped_count == 9
    skipped = {where[len(csv) + 2:].split(" (")[0]: problem for problem, rows in samples.skipped.items()
               for where in rows}
    assert sorted(skipped, key=lambda where: int(where.split()[1])) == [f"row {n}" for n in range(2, 10)] + ["row 11"]
    for row, words in ((2, "delimiter"), (3, "fields"), (4, "not found"), (5, "not a readable"),
                       (6, "not a readable"), (7, "empty"), (8, "not in the alphabet"), (9, "UTF-8"),
                       (11, "CTC time steps")):
        assert words in skipped[f"row {row}"], row
    report = samples.report()
    assert report.startswith("2 samples") and report.count("skipped") == len(samples.skipped)
    _, texts = concatenated(input_fn(csv, params, "eval"))
    assert texts == ["ab", "cd"]


def test_skip_bad_samples_reports_rows_in_file_order(tmp_path, write_csv, good_image):
    labels = ["ab"] + ["#"] * 11
    csv = write_csv(tmp_path / "data.csv", [f"{good_image};{label}" for label in labels])
    samples = load_samples(csv, make_params(skip_bad_samples=True))
    assert samples.skipped["label unit not in the alphabet"] == [f"{csv}, row {n}" for n in range(2, 13)]
    assert f"{csv}, row 2; {csv}, row 3; {csv}, row 4; {csv}, row 5; {csv}, row 6 ..." in samples.report()


def test_skip_bad_samples_still_refuses_an_empty_csv(tmp_path, write_csv, good_image):
    bad = write_csv(tmp_path / "bad.csv", [f"{good_image};ab", f"{good_image}"])
    empty = write_csv(tmp_path / "empty.csv", [])
    params = make_params(skip_bad_samples=True)
    for files in ([empty, bad], [bad, empty]):
        message = load_error(files, params)
        assert empty in message and "no rows" in message


def test_skip_bad_samples_with_no_usable_row(tmp_path, write_csv):
    csv = write_csv(tmp_path / "data.csv", ["gone.png;ab", "also_gone.png;cd"])
    message = load_error(csv, make_params(skip_bad_samples=True))
    assert "no usable rows" in message and "skipped 2 (image file not found)" in message and f"{csv}, row 2" in message


# --- the alphabet from the training labels ----------------------------------------------------------
def test_auto_alphabet_is_collected_from_the_training_csv(tmp_path, write_csv, good_image):
    csv = write_csv(tmp_path / "data.csv", [f"{good_image};hello", f"{good_image};wörld"])
    params = with_resolved_alphabet(Params(), [csv])
    assert params.alphabet_units == sorted(set("hellowörld"))
    assert with_resolved_alphabet(params.with_overrides({"alphabet_units": ["x"]}), [csv]).alphabet_units == ["x"]
    assert with_resolved_alphabet(Params(alphabet="digits"), [csv]).alphabet_units == list("0123456789")
