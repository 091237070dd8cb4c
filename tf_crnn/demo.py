"""The embedded demo data set: synthetic text lines rendered with OpenCV's built-in Hershey fonts.

It exists so that the whole pipeline runs offline with nothing but this package: ``python -m
tf_crnn.task`` without any CSV files generates this data set and trains, evaluates and exports on
it. No font files and no downloads are needed, and the text is kept legible so that a small CRNN
can reach 95 % word accuracy or more within minutes on a CPU.

Each sample is a random string of 3 to 8 units of :data:`DEMO_ALPHABET`, drawn in one of six
legible Hershey fonts (sometimes italic) at a varied size and stroke width, slightly slanted, dark
on light or light on dark with random gray levels, sometimes blurred, always with gaussian noise.
The crop is tight around the text plus a margin of a few pixels, so images are about 28 to 50
pixels high and as wide as their text.

Output layout (the CSV format that :mod:`tf_crnn.data_handler` reads)::

    <output_dir>/images/train_000001.png ...
    <output_dir>/train.csv    rows "images/train_000001.png;label"
    <output_dir>/eval.csv     rows "images/eval_000001.png;label"

``<output_dir>`` may be any path ``tf.io.gfile`` knows: a local folder (made absolute) or a URL such
as ``gs://bucket/data``, kept as written. Every file is written through ``tf.io.gfile``.

Command line: ``python -m tf_crnn.demo --output DIR [--train N] [--eval N] [--seed S]``.
"""

from __future__ import annotations

import argparse
import math
import os
import posixpath
from collections.abc import Sequence

import cv2
import numpy as np
from tqdm import tqdm

DEMO_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"

# Font -> thickest stroke (px) that keeps it legible; one less below SMALL_TEXT_HEIGHT. The fonts
# drawn with several strokes per line clog first. The script fonts are left out: too hard to read.
FONT_MAX_THICKNESS = {
    cv2.FONT_HERSHEY_SIMPLEX: 3,
    cv2.FONT_HERSHEY_PLAIN: 3,
    cv2.FONT_HERSHEY_DUPLEX: 2,
    cv2.FONT_HERSHEY_COMPLEX: 2,
    cv2.FONT_HERSHEY_TRIPLEX: 2,
    cv2.FONT_HERSHEY_COMPLEX_SMALL: 2,
}
FONTS = tuple(FONT_MAX_THICKNESS)
ITALIC_PROBABILITY = 0.25
LABEL_LENGTHS = (3, 8)  # inclusive
# Height in px of the font's line box (ascender top to descender bottom) before the margins.
TEXT_HEIGHTS = (26, 38)
SMALL_TEXT_HEIGHT = 30
MAX_SHEAR = 0.2  # horizontal shift per pixel of height
MARGINS = (1, 5)  # px on each side, inclusive
LIGHT_BACKGROUNDS = (150, 255)  # gray levels
DARK_BACKGROUNDS = (0, 105)
MIN_CONTRAST = 90  # gray levels between text and background
BLUR_PROBABILITY = 0.3
MAX_NOISE_SIGMA = 10.0

SPLITS = ("train", "eval")


def render_text_line(text: str, rng: np.random.Generator) -> np.ndarray:
    """``text`` drawn as one line in a random style: a uint8 grayscale image [height, width].

    Every draw comes from ``rng``, so the same generator state gives the same pixels. The crop
    covers all ink and at least the font's full line box, so no character is clipped and a lone
    "o" keeps its size relative to the line (it does not swell into a "0").
    """
    text_mask, box_top, box_bottom = _draw_slanted_text(text, rng)
    ink_rows = np.flatnonzero(text_mask.any(axis=1))
    ink_cols = np.flatnonzero(text_mask.any(axis=0))
    top, bottom = min(box_top, ink_rows[0]), max(box_bottom, ink_rows[-1] + 1)
    text_mask = text_mask[top:bottom, ink_cols[0] : ink_cols[-1] + 1]
    text_mask = cv2.copyMakeBorder(
        text_mask,
        *rng.integers(MARGINS[0], MARGINS[1] + 1, size=4).tolist(),
        borderType=cv2.BORDER_CONSTANT,
        value=0,
    )
    return _paint(text_mask, rng)


def _draw_slanted_text(text: str, rng: np.random.Generator) -> tuple[np.ndarray, int, int]:
    """White-on-black anti-aliased text in a random font, size and slant, on a canvas with room to
    spare.

    Returns the canvas and the rows of the font's line box on it (top inclusive, bottom exclusive).
    """
    face = FONTS[rng.integers(len(FONTS))]
    font = face | (cv2.FONT_ITALIC if rng.random() < ITALIC_PROBABILITY else 0)
    box_height = rng.uniform(*TEXT_HEIGHTS)
    max_thickness = FONT_MAX_THICKNESS[face] - (box_height < SMALL_TEXT_HEIGHT)
    thickness = int(rng.integers(1, max_thickness + 1))
    (_, unit_height), unit_baseline = cv2.getTextSize(text, font, 1.0, 1)
    scale = box_height / (unit_height + unit_baseline)
    (width, height), baseline = cv2.getTextSize(text, font, scale, thickness)

    shear = rng.uniform(-MAX_SHEAR, MAX_SHEAR)
    pad = 2 * thickness + 4
    canvas_height = height + baseline + 2 * pad
    slant_room = math.ceil(abs(shear) * canvas_height)
    canvas_width = width + 2 * (pad + slant_room)
    baseline_y = pad + height
    canvas = np.zeros((canvas_height, canvas_width), np.uint8)
    cv2.putText(
        canvas, text, (pad + slant_room, baseline_y), font, scale, 255, thickness, cv2.LINE_AA
    )

    # x' = x + shear * (baseline_y - y): rows above the baseline lean right for a positive shear,
    # rows keep their y, so the line box stays where it was.
    matrix = np.float32([[1, -shear, shear * baseline_y], [0, 1, 0]])
    canvas = cv2.warpAffine(canvas, matrix, (canvas_width, canvas_height), flags=cv2.INTER_LINEAR)
    return canvas, baseline_y - height, baseline_y + baseline


def _paint(text_mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Gray levels for a white-on-black text mask: random background and ink with enough contrast,
    sometimes a blur, always some noise."""
    if rng.random() < 0.5:  # dark on light
        background = rng.uniform(*LIGHT_BACKGROUNDS)
        ink = rng.uniform(0, background - MIN_CONTRAST)
    else:  # light on dark
        background = rng.uniform(*DARK_BACKGROUNDS)
        ink = rng.uniform(background + MIN_CONTRAST, 255)
    image = background + (ink - background) * (text_mask.astype(np.float32) / 255)
    if rng.random() < BLUR_PROBABILITY:
        image = cv2.GaussianBlur(image, (0, 0), rng.uniform(0.5, 1.0))
    image += rng.normal(0, rng.uniform(0, MAX_NOISE_SIGMA), size=image.shape).astype(np.float32)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def _random_label(rng: np.random.Generator) -> str:
    """A random string of 3 to 8 units of :data:`DEMO_ALPHABET`."""
    length = rng.integers(LABEL_LENGTHS[0], LABEL_LENGTHS[1] + 1)
    return "".join(DEMO_ALPHABET[i] for i in rng.integers(0, len(DEMO_ALPHABET), size=length))


def generate_demo_dataset(
    output_dir: str,
    num_train: int = 20000,
    num_eval: int = 1000,
    seed: int = 0,
    progress: bool = True,
) -> tuple[str, str]:
    """Write the demo data set to ``output_dir``; return the paths of its train and eval CSV files.

    ``output_dir`` is a local folder (made absolute) or a ``tf.io.gfile`` URL such as ``gs://...``
    (kept as written); every file goes through ``tf.io.gfile``.

    Deterministic: the same seed gives byte-identical CSVs and identical pixels. Each sample draws
    from its own generator seeded by (seed, split, index), so sample *i* does not depend on how many
    samples are asked for. When both CSVs already exist with the requested row counts they are
    returned as they are (the seed is not checked), so a rerun of training reuses its data.
    """
    if num_train < 1 or num_eval < 1:
        raise ValueError(
            f"num_train and num_eval must be at least 1, got {num_train} and {num_eval}"
        )
    gfile = _gfile()
    if not _is_url(output_dir):
        output_dir = os.path.abspath(output_dir)
    counts = {"train": num_train, "eval": num_eval}
    csv_paths = {split: join_path(output_dir, f"{split}.csv") for split in SPLITS}
    if all(_count_rows(csv_paths[split]) == counts[split] for split in SPLITS):
        return csv_paths["train"], csv_paths["eval"]

    # The CSVs go last, so they exist only when every image they list has been written: an image
    # cut by a kill is rewritten by the rerun, and needs no temporary name of its own.
    for path in csv_paths.values():
        if gfile.exists(path):
            gfile.remove(path)
    gfile.makedirs(join_path(output_dir, "images"))
    rows = {split: [] for split in SPLITS}
    total = num_train + num_eval
    with tqdm(total=total, desc="Demo data", unit="image", disable=not progress) as bar:
        for split_code, split in enumerate(SPLITS):
            for index in range(1, counts[split] + 1):
                rng = np.random.default_rng([seed, split_code, index])
                label = _random_label(rng)
                name = f"{split}_{index:06d}.png"
                write_png(join_path(output_dir, "images", name), render_text_line(label, rng))
                rows[split].append(f"images/{name};{label}")
                bar.update()
    # Each CSV is renamed into place whole (a unique temporary name each, so that the tasks of a
    # cluster generating the same data do not write into one file). Imported here, like TensorFlow.
    from tf_crnn.job_files import write_atomically

    for split in SPLITS:
        write_atomically(csv_paths[split], "".join(row + "\n" for row in rows[split]).encode())
    return csv_paths["train"], csv_paths["eval"]


def _gfile():
    """``tf.io.gfile``, imported on first use so that ``--help`` does not wait for TensorFlow."""
    import tensorflow as tf

    return tf.io.gfile


def _is_url(path: str) -> bool:
    """True for ``scheme://`` paths (gs://, ram://, ...), which are neither made absolute nor
    joined with the local separator."""
    return "://" in path


def join_path(folder: str, *names: str) -> str:
    """``names`` under ``folder``: with '/' for a URL, with the local separator otherwise."""
    return posixpath.join(folder, *names) if _is_url(folder) else os.path.join(folder, *names)


def write_png(path: str, image: np.ndarray) -> None:
    """``image`` PNG-encoded into ``path`` (local or URL)."""
    ok, encoded = cv2.imencode(".png", image)
    if not ok:
        raise OSError(f"Could not encode {path} as PNG")
    with _gfile().GFile(path, "wb") as f:
        f.write(encoded.tobytes())


def _count_rows(csv_path: str) -> int | None:
    """Number of non-blank lines of ``csv_path``, or None if it does not exist."""
    gfile = _gfile()
    if not gfile.exists(csv_path) or gfile.isdir(csv_path):
        return None
    with gfile.GFile(csv_path, "rb") as f:
        content = f.read()
    return sum(1 for line in content.split(b"\n") if line.strip())


def main(argv: Sequence[str] | None = None) -> None:
    """Command line entry point: generate (or reuse) the demo data set and print where it is."""
    parser = argparse.ArgumentParser(description="Generate the synthetic demo text-line data set.")
    parser.add_argument(
        "--output",
        required=True,
        help="Folder for images/, train.csv and eval.csv: local, or a URL such as gs://bucket/data.",
    )
    parser.add_argument("--train", type=int, default=20000, help="Number of training images.")
    parser.add_argument("--eval", type=int, default=1000, help="Number of evaluation images.")
    parser.add_argument(
        "--seed", type=int, default=0, help="Random seed; the same seed gives the same data."
    )
    args = parser.parse_args(argv)
    train_csv, eval_csv = generate_demo_dataset(args.output, args.train, args.eval, args.seed)
    print(f"train: {train_csv}\neval: {eval_csv}")


if __name__ == "__main__":
    main()
