"""hlp.numbers_mnist_generator: digit strings from a tiny hand-made MNIST, checked pixel by pixel.

Every fake MNIST digit image is a solid block of its own grey value (train: 100 + index, test:
200 + index) with label index % 10, so a generated image says which source digits it was made of:
the blocks, read left to right, must spell its label, and train images may only hold train values.
"""
import gzip
import os
import struct
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import cv2
import numpy as np
import pytest

from hlp import numbers_mnist_generator as gen

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN_BASE, TEST_BASE = 100, 200
N_TRAIN_DIGITS, N_TEST_DIGITS = 20, 10


def fake_digits(count, base):
    images = np.zeros((count, 28, 28), np.uint8)
    for i in range(count):
        images[i, 4:24, 8:20] = base + i  # 8 empty columns each side, like a (wide-margin) MNIST digit
    return images, (np.arange(count) % 10).astype(np.uint8)


def fake_mnist():
    x_train, y_train = fake_digits(N_TRAIN_DIGITS, TRAIN_BASE)
    x_test, y_test = fake_digits(N_TEST_DIGITS, TEST_BASE)
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}


@pytest.fixture
def mnist_npz(tmp_path):
    path = tmp_path / "mnist.npz"
    np.savez(path, **fake_mnist())
    return str(path)


def idx_bytes(array):
    return struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


@pytest.fixture
def mnist_idx_folder(tmp_path):
    """The four IDX files, two gzipped with .gz and two plain, as downloaded ones may be."""
    folder = tmp_path / "idx"
    folder.mkdir()
    arrays = fake_mnist()
    for key, name in gen.IDX_FILES.items():
        data = idx_bytes(arrays[key])
        if key in ("x_train", "y_test"):
            (folder / (name + ".gz")).write_bytes(gzip.compress(data))
        else:
            (folder / name).write_bytes(data)
    return str(folder)


def read_csv(path, delimiter=";"):
    with open(path, encoding="utf-8", newline="") as f:
        text = f.read()
    assert text.endswith("\n")
    return [line.split(delimiter) for line in text.splitlines()]


def blocks_label(image, base):
    """The label spelled by the grey blocks along the middle row of a generated image."""
    row = image[14]
    values = [int(v) for i, v in enumerate(row) if v and (i == 0 or row[i - 1] != v)]
    return "".join(str((v - base) % 10) for v in values)


def check_split(output, split, expected_rows, min_digits, max_digits, max_gap, max_overlap, delimiter=";"):
    rows = read_csv(os.path.join(output, f"{split}.csv"), delimiter)
    assert len(rows) == expected_rows
    base, count = (TRAIN_BASE, N_TRAIN_DIGITS) if split == "train" else (TEST_BASE, N_TEST_DIGITS)
    allowed = {0} | set(range(base, base + count))
    for index, (path, label) in enumerate(rows):
        assert path == f"images/{split}_{index:06d}.png"
        assert label.isdigit() and min_digits <= len(label) <= max_digits
        image = cv2.imread(os.path.join(output, path), cv2.IMREAD_UNCHANGED)
        assert image is not None and image.ndim == 2 and image.dtype == np.uint8  # grayscale PNG
        n = len(label)
        assert image.shape[0] == 28
        assert 28 * n - (n - 1) * max_overlap <= image.shape[1] <= 28 * n + (n - 1) * max_gap
        assert set(np.unique(image).tolist()) <= allowed, f"{split} image {path} uses digits of the other split"
        assert blocks_label(image, base) == label
    return rows


def test_npz_source_writes_both_splits_from_their_own_digits(tmp_path, mnist_npz):
    out = str(tmp_path / "out")
    assert gen.main(["--mnist", mnist_npz, "--output", out, "--n-train", "40", "--n-test", "15", "--seed", "3"]) == 0
    train = check_split(out, "train", 40, 3, 8, 4, 6)
    check_split(out, "test", 15, 3, 8, 4, 6)
    assert len({len(label) for _, label in train}) > 1  # lengths vary within the bounds
    assert sorted(os.listdir(os.path.join(out, "images"))) == sorted(
        [f"train_{i:06d}.png" for i in range(40)] + [f"test_{i:06d}.png" for i in range(15)])

    from tf_crnn.csv_rows import read_csv_rows
    rows = read_csv_rows(os.path.join(out, "train.csv"), ";").strict()
    assert len(rows) == 40
    assert all(os.path.isabs(r.image_path) and os.path.isfile(r.image_path) for r in rows)
    assert [r.label for r in rows] == [label for _, label in train]


def test_idx_folder_gzipped_and_plain_with_options(tmp_path, mnist_idx_folder):
    out = str(tmp_path / "out")
    assert gen.main(["--mnist", mnist_idx_folder, "--output", out, "--n-train", "25", "--n-test", "10",
                     "--min-digits", "1", "--max-digits", "2", "--max-gap", "0", "--max-overlap", "0",
                     "--delimiter", "|"]) == 0
    train = check_split(out, "train", 25, 1, 2, 0, 0, delimiter="|")
    check_split(out, "test", 10, 1, 2, 0, 0, delimiter="|")
    assert {len(label) for _, label in train} == {1, 2}

    from tf_crnn.csv_rows import read_csv_rows
    rows = read_csv_rows(os.path.join(out, "test.csv"), "|").strict()
    assert len(rows) == 10 and all(os.path.isfile(r.image_path) for r in rows)


def test_read_idx_matches_the_arrays(mnist_idx_folder):
    loaded = gen.load_mnist(mnist_idx_folder)
    for key, array in fake_mnist().items():
        np.testing.assert_array_equal(loaded[key], array)


def test_same_seed_same_files_and_test_split_independent_of_n_train(tmp_path, mnist_npz):
    def run(name, seed, n_train):
        out = tmp_path / name
        assert gen.main(["--mnist", mnist_npz, "--output", str(out), "--n-train", str(n_train), "--n-test", "8",
                         "--seed", str(seed)]) == 0
        return out

    a, b, c, d = run("a", 7, 12), run("b", 7, 12), run("c", 8, 12), run("d", 7, 30)
    for split, n in (("train", 12), ("test", 8)):
        assert (a / f"{split}.csv").read_bytes() == (b / f"{split}.csv").read_bytes()
        for i in range(n):
            name = f"images/{split}_{i:06d}.png"
            assert (a / name).read_bytes() == (b / name).read_bytes()
    assert (a / "train.csv").read_bytes() != (c / "train.csv").read_bytes()
    assert (a / "test.csv").read_bytes() == (d / "test.csv").read_bytes()


def test_output_feeds_the_training_pipeline(tmp_path, mnist_npz):
    from tf_crnn.config import Params
    from tf_crnn.alphabet import with_resolved_alphabet
    from tf_crnn.checks import check_csv_files as load_samples

    out = tmp_path / "out"
    assert gen.main(["--mnist", mnist_npz, "--output", str(out), "--n-train", "24", "--n-test", "6"]) == 0
    for split, count in (("train", 24), ("test", 6)):
        csv = str(out / f"{split}.csv")
        params = with_resolved_alphabet(Params().with_overrides({"alphabet": "digits", "input_shape": [32, 256]}), [csv])
        samples = load_samples([csv], params)
        assert len(samples.rows) == count, samples.report()
        assert samples.skipped_count == 0


def test_command_line(tmp_path, mnist_npz):
    out = tmp_path / "cli"
    result = subprocess.run(
        [sys.executable, "-m", "hlp.numbers_mnist_generator", "--mnist", mnist_npz, "--output", str(out),
         "--n-train", "5", "--n-test", "0", "--min-digits", "4", "--max-digits", "4"],
        cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "train: 5 images" in result.stdout
    assert "test.csv not written" in result.stdout
    assert not (out / "test.csv").exists()
    rows = read_csv(out / "train.csv")
    assert len(rows) == 5 and all(len(label) == 4 for _, label in rows)

    help_text = subprocess.run([sys.executable, "-m", "hlp.numbers_mnist_generator", "--help"], cwd=REPO,
                               capture_output=True, text=True, timeout=60).stdout
    for option in ("--output", "--mnist", "--n-train", "--n-test", "--min-digits", "--max-digits", "--seed",
                   "--delimiter", "--max-gap", "--max-overlap"):
        assert option in help_text


def test_bad_sources_and_arguments_are_reported(tmp_path, mnist_idx_folder, capsys):
    os.remove(os.path.join(mnist_idx_folder, "t10k-images-idx3-ubyte"))
    assert gen.main(["--mnist", mnist_idx_folder, "--output", str(tmp_path / "o"), "--n-train", "2"]) == 2
    assert "t10k-images-idx3-ubyte" in capsys.readouterr().err

    broken = tmp_path / "broken-idx3-ubyte"
    broken.write_bytes(idx_bytes(np.zeros((3, 28, 28), np.uint8))[:-5])
    with pytest.raises(gen.MnistError, match="IDX data"):
        gen.read_idx(str(broken))

    bad_npz = tmp_path / "bad.npz"
    np.savez(bad_npz, x_train=np.zeros((2, 28, 28), np.uint8))
    assert gen.main(["--mnist", str(bad_npz), "--output", str(tmp_path / "o")]) == 2
    assert "missing array" in capsys.readouterr().err

    with pytest.raises(SystemExit) as exit_info:
        gen.main(["--output", str(tmp_path / "o"), "--min-digits", "5", "--max-digits", "3"])
    assert exit_info.value.code == 2
