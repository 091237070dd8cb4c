"""hlp.numbers_mnist_generator: digit strings from a tiny hand-made MNIST, checked pixel by pixel.

Every fake MNIST digit image is a solid block of its own grey value (MNIST train: 100 + index,
MNIST test: 200 + index) with label index % 10, so a generated image says which source digits it
was made of: the blocks, read left to right, must spell its label, train images may only hold
MNIST train values and eval images only MNIST test values.
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
        # 8 empty columns each side, like a (wide-margin) MNIST digit
        images[i, 4:24, 8:20] = base + i
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
    return (
        struct.pack(">BBBB", 0, 0, 0x08, array.ndim)
        + struct.pack(f">{array.ndim}I", *array.shape)
        + array.tobytes()
    )


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


def check_split(
    output, split, expected_rows, min_digits, max_digits, max_gap, max_overlap, delimiter=";"
):
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
        message = f"{split} image {path} uses digits of the other split"
        assert set(np.unique(image).tolist()) <= allowed, message
        assert blocks_label(image, base) == label
    return rows


def test_npz_source_writes_both_splits_from_their_own_digits(tmp_path, mnist_npz):
    out = str(tmp_path / "out")
    options = "--n-train 40 --n-eval 15 --seed 3".split()
    assert gen.main(["--mnist", mnist_npz, "--output", out, *options]) == 0
    train = check_split(out, "train", 40, 3, 8, 4, 6)
    check_split(out, "eval", 15, 3, 8, 4, 6)
    assert len({len(label) for _, label in train}) > 1  # lengths vary within the bounds
    assert sorted(os.listdir(os.path.join(out, "images"))) == sorted(
        [f"train_{i:06d}.png" for i in range(40)] + [f"eval_{i:06d}.png" for i in range(15)]
    )

    from tf_crnn.csv_rows import read_csv_rows

    rows = read_csv_rows(os.path.join(out, "train.csv"), ";").strict()
    assert len(rows) == 40
    assert all(os.path.isabs(r.image_path) and os.path.isfile(r.image_path) for r in rows)
    assert [r.label for r in rows] == [label for _, label in train]


def test_idx_folder_gzipped_and_plain_with_options(tmp_path, mnist_idx_folder):
    out = str(tmp_path / "out")
    options = (
        "--n-train 25 --n-eval 10 --min-digits 1 --max-digits 2 --max-gap 0 --max-overlap 0"
        " --delimiter |"
    ).split()
    assert gen.main(["--mnist", mnist_idx_folder, "--output", out, *options]) == 0
    train = check_split(out, "train", 25, 1, 2, 0, 0, delimiter="|")
    check_split(out, "eval", 10, 1, 2, 0, 0, delimiter="|")
    assert {len(label) for _, label in train} == {1, 2}

    from tf_crnn.csv_rows import read_csv_rows

    rows = read_csv_rows(os.path.join(out, "eval.csv"), "|").strict()
    assert len(rows) == 10 and all(os.path.isfile(r.image_path) for r in rows)


def test_read_idx_matches_the_arrays(mnist_idx_folder):
    loaded = gen.load_mnist(mnist_idx_folder)
    for key, array in fake_mnist().items():
        np.testing.assert_array_equal(loaded[key], array)


def test_same_seed_same_files_and_eval_split_independent_of_n_train(tmp_path, mnist_npz):
    def run(name, seed, n_train):
        out = tmp_path / name
        options = f"--n-train {n_train} --n-eval 8 --seed {seed}".split()
        assert gen.main(["--mnist", mnist_npz, "--output", str(out), *options]) == 0
        return out

    a, b, c, d = run("a", 7, 12), run("b", 7, 12), run("c", 8, 12), run("d", 7, 30)
    for split, n in (("train", 12), ("eval", 8)):
        assert (a / f"{split}.csv").read_bytes() == (b / f"{split}.csv").read_bytes()
        for i in range(n):
            name = f"images/{split}_{i:06d}.png"
            assert (a / name).read_bytes() == (b / name).read_bytes()
    assert (a / "train.csv").read_bytes() != (c / "train.csv").read_bytes()
    assert (a / "eval.csv").read_bytes() == (d / "eval.csv").read_bytes()


def test_output_feeds_the_training_pipeline(tmp_path, mnist_npz):
    from tf_crnn.alphabet import with_resolved_alphabet
    from tf_crnn.checks import check_csv_files as load_samples
    from tf_crnn.config import Params

    out = tmp_path / "out"
    options = "--n-train 24 --n-eval 6".split()
    assert gen.main(["--mnist", mnist_npz, "--output", str(out), *options]) == 0
    for split, count in (("train", 24), ("eval", 6)):
        csv = str(out / f"{split}.csv")
        params = with_resolved_alphabet(
            Params().with_overrides({"alphabet": "digits", "input_shape": [32, 256]}), [csv]
        )
        samples = load_samples([csv], params)
        assert samples.usable_rows == count, samples.report()
        assert samples.skipped_count == 0


def test_command_line(tmp_path, mnist_npz):
    out = tmp_path / "cli"
    command = [sys.executable, "-m", "hlp.numbers_mnist_generator", "--mnist", mnist_npz]
    options = "--n-train 5 --n-eval 0 --min-digits 4 --max-digits 4".split()
    result = subprocess.run(
        [*command, "--output", str(out), *options],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "train: 5 images" in result.stdout
    assert "eval.csv not written" in result.stdout
    assert not (out / "eval.csv").exists()
    rows = read_csv(out / "train.csv")
    assert len(rows) == 5 and all(len(label) == 4 for _, label in rows)

    help_text = subprocess.run(
        [sys.executable, "-m", "hlp.numbers_mnist_generator", "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    for option in (
        "--output",
        "--mnist",
        "--n-train",
        "--n-eval",
        "--min-digits",
        "--max-digits",
        "--seed",
        "--delimiter",
        "--max-gap",
        "--max-overlap",
    ):
        assert option in help_text
    assert "eval.csv" in help_text and "test.csv" not in help_text
    # The old option name still works, hidden from --help.
    assert "--n-test" not in help_text
    assert gen.build_parser().parse_args(["--output", "x", "--n-test", "7"]).n_eval == 7


def test_url_output_is_written_through_gfile(tmp_path, mnist_npz, ram_root, monkeypatch):
    """--output gs://... works: every file goes through tf.io.gfile (ram:// stands in for gs://),
    with the same bytes as a local run, and the CSV paths resolve inside the URL."""
    ram_output = f"{ram_root}/out"
    import tensorflow as tf

    from tf_crnn.csv_rows import read_csv_rows

    monkeypatch.chdir(tmp_path)
    arguments = ["--mnist", mnist_npz, "--n-train", "6", "--n-eval", "3", "--seed", "5"]
    assert gen.main([*arguments, "--output", ram_output]) == 0
    assert gen.main([*arguments, "--output", str(tmp_path / "local")]) == 0
    assert sorted(os.listdir(tmp_path)) == ["local", "mnist.npz"]  # no local "ram:" folder
    assert sorted(tf.io.gfile.listdir(ram_output)) == ["eval.csv", "images", "train.csv"]

    for split, count in (("train", 6), ("eval", 3)):
        with tf.io.gfile.GFile(f"{ram_output}/{split}.csv", "rb") as f:
            content = f.read()
        assert content == (tmp_path / "local" / f"{split}.csv").read_bytes()
        rows = read_csv_rows(f"{ram_output}/{split}.csv", ";").strict()
        assert len(rows) == count
        for index, row in enumerate(rows):
            name = f"images/{split}_{index:06d}.png"
            assert row.image_path == f"{ram_output}/{name}"
            with tf.io.gfile.GFile(row.image_path, "rb") as f:
                encoded = f.read()
            assert encoded == (tmp_path / "local" / name).read_bytes()
            image = cv2.imdecode(np.frombuffer(encoded, np.uint8), cv2.IMREAD_UNCHANGED)
            assert image.ndim == 2 and image.shape[0] == 28
            base = TRAIN_BASE if split == "train" else TEST_BASE
            assert blocks_label(image, base) == row.label


def test_mnist_source_is_read_through_gfile(tmp_path, mnist_npz, mnist_idx_folder, ram_root):
    """--mnist may be a URL too: an .npz file or an IDX folder."""
    import tensorflow as tf

    source = f"{ram_root}/source"
    tf.io.gfile.makedirs(f"{source}/idx")
    tf.io.gfile.copy(mnist_npz, f"{source}/mnist.npz")
    for name in os.listdir(mnist_idx_folder):
        tf.io.gfile.copy(os.path.join(mnist_idx_folder, name), f"{source}/idx/{name}")
    expected = fake_mnist()
    for loaded in (gen.load_mnist(f"{source}/mnist.npz"), gen.load_mnist(f"{source}/idx")):
        for key, array in expected.items():
            np.testing.assert_array_equal(loaded[key], array)
    with pytest.raises(gen.MnistError, match="no such file or folder"):
        gen.load_mnist(f"{source}/missing.npz")


def test_bad_sources_and_arguments_are_reported(tmp_path, mnist_idx_folder, capsys):
    os.remove(os.path.join(mnist_idx_folder, "t10k-images-idx3-ubyte"))
    output = str(tmp_path / "o")
    assert gen.main(["--mnist", mnist_idx_folder, "--output", output, "--n-train", "2"]) == 2
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
