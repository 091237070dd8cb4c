"""Make a digit-string text-recognition data set from MNIST, in tf_crnn's CSV format.

Why: to try the whole tf_crnn pipeline (training, evaluation, export) on a small, freely
available data set whose labels are certain, before spending time on real text lines. Each
sample is a row of 3 to 8 (``--min-digits``/``--max-digits``) MNIST digits placed side by side,
with random small gaps or overlaps between them, so the model has to segment as well as classify.

Output, in ``--output DIR``::

    DIR/images/train_000000.png ...   grayscale PNG, height 28, white digits on black (as in MNIST)
    DIR/images/eval_000000.png ...
    DIR/train.csv                     rows "images/train_000000.png;4071" (relative paths, UTF-8)
    DIR/eval.csv

Training images use only MNIST training digits and evaluation images only MNIST test digits, so
the eval set measures generalisation to unseen handwriting. The same ``--seed`` gives the same
files; the train and eval splits draw from separate random streams, so changing ``--n-train``
does not change the eval set. Labels are digit strings and may start with 0 (keep them as text
when reading the CSV with other tools). A split asked for with 0 samples is not written.

``DIR`` and ``--mnist`` may be local paths or any URL ``tf.io.gfile`` reads and writes, such as
``gs://bucket/mnist_numbers``: every file goes through ``tf.io.gfile``.

MNIST source (``--mnist``): a Keras ``mnist.npz`` (arrays x_train, y_train, x_test, y_test), or a
folder with the four IDX files of http://yann.lecun.com/exdb/mnist/ (``train-images-idx3-ubyte``,
``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``, each
optionally gzipped as ``<name>.gz``). Without ``--mnist``, ``tf.keras.datasets.mnist.load_data()``
is used, which downloads mnist.npz to ~/.keras/datasets the first time.

Train on the result with the built-in digits alphabet, e.g.::

    python -m hlp.numbers_mnist_generator --output data/mnist_numbers
    python -m tf_crnn.task --job-dir runs/mnist --train-csv data/mnist_numbers/train.csv \\
        --eval-csv data/mnist_numbers/eval.csv --alphabet digits
"""

from __future__ import annotations

import argparse
import gzip
import io
import struct
import sys
from collections.abc import Sequence

import numpy as np
from tqdm import tqdm

from hlp import HelpFormatter
from tf_crnn.demo import join_path, write_png

IDX_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
# IDX type byte -> big-endian numpy dtype
# (http://yann.lecun.com/exdb/mnist/, "THE IDX FILE FORMAT").
IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
IMAGE_HEIGHT = 28
SPLITS = ("train", "eval")  # the splits written, in this order (each has its own random stream)
# Split written -> the MNIST split its digits come from.
MNIST_SPLITS = {"train": "train", "eval": "test"}


class MnistError(ValueError):
    """The MNIST source is missing or not in the expected format; the message names the file."""


# ----------------------------------------------------------------------------------------------
# Files: local or any tf.io.gfile URL (gs://...)
# ----------------------------------------------------------------------------------------------
def _gfile():
    """``tf.io.gfile``, imported on first use so that ``--help`` and usage errors stay fast."""
    import tensorflow as tf

    return tf.io.gfile


def _read_bytes(path: str) -> bytes:
    with _gfile().GFile(path, "rb") as f:
        return f.read()


# ----------------------------------------------------------------------------------------------
# Reading MNIST
# ----------------------------------------------------------------------------------------------
def read_idx(path: str) -> np.ndarray:
    """The array stored in one IDX file (gzipped or not: told by the content, not the name)."""
    data = _read_bytes(path)
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as error:
            raise MnistError(f"{path}: damaged gzip file ({error})") from None
    if len(data) < 4 or data[:2] != b"\x00\x00" or data[2] not in IDX_DTYPES:
        raise MnistError(f"{path}: not an IDX file (bad magic number {data[:4].hex()})")
    dtype = np.dtype(IDX_DTYPES[data[2]])
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise MnistError(f"{path}: IDX header truncated")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) - header != expected:
        raise MnistError(
            f"{path}: IDX data is {len(data) - header} bytes, "
            f"the header {list(shape)} says {expected}"
        )
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)


def _idx_path(folder: str, name: str) -> str:
    gfile = _gfile()
    for candidate in (name, name + ".gz"):
        path = join_path(folder, candidate)
        if gfile.exists(path) and not gfile.isdir(path):
            return path
    raise MnistError(f"{folder}: neither {name} nor {name}.gz found")


def load_mnist(source: str | None) -> dict[str, np.ndarray]:
    """x_train, y_train, x_test and y_test from an .npz file, an IDX folder or (None) Keras."""
    import tensorflow as tf

    gfile = tf.io.gfile
    if source is None:
        (x_train, y_train), (x_test, y_test) = tf.keras.datasets.mnist.load_data()
        arrays = {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}
        source = "tf.keras.datasets.mnist"
    elif gfile.isdir(source):
        arrays = {key: read_idx(_idx_path(source, name)) for key, name in IDX_FILES.items()}
    elif gfile.exists(source):
        try:
            with np.load(io.BytesIO(_read_bytes(source)), allow_pickle=False) as npz:
                missing = sorted(set(IDX_FILES) - set(npz.files))
                if missing:
                    raise MnistError(
                        f"{source}: missing array(s) {', '.join(missing)} "
                        f"(has {', '.join(npz.files)})"
                    )
                arrays = {key: npz[key] for key in IDX_FILES}
        except (OSError, ValueError) as error:
            if isinstance(error, MnistError):
                raise
            raise MnistError(f"{source}: not a readable .npz file ({error})") from None
    else:
        raise MnistError(f"{source}: no such file or folder")
    return _checked(arrays, source)


def _checked(arrays: dict[str, np.ndarray], source: str) -> dict[str, np.ndarray]:
    for split in MNIST_SPLITS.values():
        images, labels = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if images.ndim != 3 or images.shape[1] != IMAGE_HEIGHT:
            raise MnistError(
                f"{source}: x_{split} has shape {images.shape}, expected [N, {IMAGE_HEIGHT}, width]"
            )
        if labels.shape != (images.shape[0],):
            raise MnistError(
                f"{source}: y_{split} has shape {labels.shape}, "
                f"expected [{images.shape[0]}] like x_{split}"
            )
        if len(labels) == 0:
            raise MnistError(f"{source}: the {split} split has no images")
        if labels.min() < 0 or labels.max() > 9:
            raise MnistError(f"{source}: y_{split} has labels outside 0-9")
        if images.min() < 0 or images.max() > 255:
            raise MnistError(f"{source}: x_{split} has pixel values outside 0-255")
        arrays[f"x_{split}"] = images.astype(np.uint8)
        arrays[f"y_{split}"] = labels.astype(np.int64)
    return arrays


# ----------------------------------------------------------------------------------------------
# Composing digit strings
# ----------------------------------------------------------------------------------------------
def compose(digits: Sequence[np.ndarray], offsets: Sequence[int]) -> np.ndarray:
    """Digit images side by side, ``offsets[i]`` columns between digit i and i+1.

    A negative offset overlaps the two digits. Overlapping pixels take the brighter value, so no
    stroke is cut.
    """
    widths = [d.shape[1] for d in digits]
    starts = np.concatenate(
        [[0], np.cumsum(np.asarray(widths[:-1]) + np.asarray(offsets, dtype=np.int64))]
    ).astype(int)
    canvas = np.zeros((IMAGE_HEIGHT, int(starts[-1]) + widths[-1]), np.uint8)
    for start, digit in zip(starts, digits):
        window = canvas[:, start : start + digit.shape[1]]
        np.maximum(window, digit, out=window)
    return canvas


def make_sample(
    rng: np.random.Generator,
    images: np.ndarray,
    labels: np.ndarray,
    min_digits: int,
    max_digits: int,
    max_gap: int,
    max_overlap: int,
) -> tuple[np.ndarray, str]:
    """One (image, label) drawn from ``images``/``labels``."""
    count = int(rng.integers(min_digits, max_digits + 1))
    picks = rng.integers(0, len(images), size=count)
    offsets = rng.integers(-max_overlap, max_gap + 1, size=count - 1)
    image = compose([images[i] for i in picks], offsets)
    return image, "".join(str(int(labels[i])) for i in picks)


def generate_split(
    split: str,
    count: int,
    rng: np.random.Generator,
    images: np.ndarray,
    labels: np.ndarray,
    output: str,
    args: argparse.Namespace,
) -> str:
    """Writes ``count`` images and ``<split>.csv`` into ``output``; returns the CSV path."""
    rows: list[str] = []
    for index in tqdm(range(count), desc=f"{split} images", unit="img", file=sys.stderr):
        image, label = make_sample(
            rng, images, labels, args.min_digits, args.max_digits, args.max_gap, args.max_overlap
        )
        relative = f"images/{split}_{index:06d}.png"
        write_png(join_path(output, *relative.split("/")), image)
        rows.append(f"{relative}{args.delimiter}{label}\n")
    csv_path = join_path(output, f"{split}.csv")
    with _gfile().GFile(csv_path, "wb") as f:
        f.write("".join(rows).encode("utf-8"))
    return csv_path


# ----------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m hlp.numbers_mnist_generator",
        description=__doc__,
        formatter_class=HelpFormatter,
    )
    parser.add_argument(
        "--output",
        required=True,
        metavar="DIR",
        help="Folder to write images/, train.csv and eval.csv into, local or a URL such as "
        "gs://bucket/mnist_numbers (created if needed; existing files of the same names "
        "are overwritten).",
    )
    parser.add_argument(
        "--mnist",
        metavar="PATH",
        default=None,
        help="MNIST source: a Keras mnist.npz file or a folder with the four IDX files "
        "(optionally .gz). Default: tf.keras.datasets.mnist.load_data(), which downloads.",
    )
    parser.add_argument(
        "--n-train",
        type=int,
        default=10000,
        metavar="N",
        help="Number of training images (built from MNIST training digits only). 0 = none.",
    )
    parser.add_argument(
        "--n-eval",
        type=int,
        default=2000,
        metavar="N",
        help="Number of evaluation images (built from MNIST test digits only). 0 = none.",
    )
    # The old name of --n-eval, from when the split was called "test".
    parser.add_argument(
        "--n-test", type=int, dest="n_eval", default=argparse.SUPPRESS, help=argparse.SUPPRESS
    )
    parser.add_argument(
        "--min-digits",
        type=int,
        default=3,
        metavar="K",
        help="Fewest digits in one image (label length).",
    )
    parser.add_argument(
        "--max-digits",
        type=int,
        default=8,
        metavar="K",
        help="Most digits in one image (label length).",
    )
    parser.add_argument(
        "--max-gap",
        type=int,
        default=4,
        metavar="PX",
        help="Largest extra space, in pixels, between two neighbouring 28-pixel digit images.",
    )
    parser.add_argument(
        "--max-overlap",
        type=int,
        default=6,
        metavar="PX",
        help="Largest overlap, in pixels, of two neighbouring 28-pixel digit images "
        "(MNIST digits have about 4 empty columns on each side).",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=42,
        help="Random seed: the same seed and arguments give the same files.",
    )
    parser.add_argument(
        "--delimiter",
        default=";",
        metavar="CHAR",
        help="Delimiter between image path and label in the CSV files (one character; "
        "set tf_crnn's csv_delimiter to the same).",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.n_train < 0 or args.n_eval < 0:
        parser.error("--n-train and --n-eval must be >= 0")
    if args.n_train == 0 and args.n_eval == 0:
        parser.error("nothing to do: --n-train and --n-eval are both 0")
    if not 1 <= args.min_digits <= args.max_digits:
        parser.error(
            f"need 1 <= --min-digits <= --max-digits (got {args.min_digits} and {args.max_digits})"
        )
    if args.max_gap < 0:
        parser.error("--max-gap must be >= 0")
    if not 0 <= args.max_overlap < IMAGE_HEIGHT // 2:
        parser.error(f"--max-overlap must be in 0..{IMAGE_HEIGHT // 2 - 1}")
    if len(args.delimiter) != 1 or args.delimiter.isdigit() or args.delimiter in "\r\n/.":
        parser.error(
            f"--delimiter must be one character that is not a digit, '/', '.' or a line break "
            f"(got {args.delimiter!r})"
        )

    try:
        mnist = load_mnist(args.mnist)
    except MnistError as error:
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        return 2
    _gfile().makedirs(join_path(args.output, "images"))
    rngs = dict(
        zip(SPLITS, (np.random.default_rng(s) for s in np.random.SeedSequence(args.seed).spawn(2)))
    )
    for split, count in (("train", args.n_train), ("eval", args.n_eval)):
        if count == 0:
            print(f"{split}: 0 images asked for, {split}.csv not written")
            continue
        images, labels = mnist[f"x_{MNIST_SPLITS[split]}"], mnist[f"y_{MNIST_SPLITS[split]}"]
        csv_path = generate_split(split, count, rngs[split], images, labels, args.output, args)
        print(
            f"{split}: {count} images from {len(images)} MNIST {MNIST_SPLITS[split]} digits "
            f"-> {csv_path}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
