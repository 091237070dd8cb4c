"""Plain helpers shared by the tests: tiny settings, text-line images, image files of every format,
and what an input_fn dataset holds. Fixtures are in conftest.py.

Imported as ``from helpers import ...``: pytest puts this folder on ``sys.path`` (rootdir-relative
test modules without ``__init__.py``).
"""

from __future__ import annotations

import json
import os
import socket
import struct
import subprocess
import sys
import time
from dataclasses import dataclass

import cv2
import numpy as np
import pytest
import tensorflow as tf

from tf_crnn.alphabet import SOURCE_BUILTIN, Alphabet, with_resolved_alphabet
from tf_crnn.config import Params
from tf_crnn.demo import DEMO_ALPHABET

# --- settings -----------------------------------------------------------------------------------
# The settings of every tiny test model: few filters and units, small batches, no dropout or
# augmentation (tests that want augmentation say so), and nothing periodic that a test of a few
# steps would wait for.
TINY = {
    "conv_filters": [8, 8, 16, 16, 16, 16, 16],
    "rnn_units": 16,
    "train_batch_size": 8,
    "eval_batch_size": 16,
    "dropout_rate": 0.0,
    "data_augmentation": False,
    "save_interval": 1000,
    "eval_throttle_secs": 0,
    "log_step_count_steps": 5,
    # The same arithmetic on every machine (auto would pick bfloat16 on some): tests compare the
    # Estimator's predictions with a float32 export's bit for bit. test_precision covers the rest.
    "precision": "float32",
}
# A model just big enough to learn to read digit_line images in a few hundred steps.
DIGIT_READER = {
    "conv_filters": [16, 32, 32, 32, 64, 64, 64],
    "rnn_units": 32,
    "alphabet_string": "0123456789",
    "learning_rate": 3e-3,
}
ALPHABET_SETTINGS = ("alphabet_units", "lookup_alphabet_file", "alphabet_string", SOURCE_BUILTIN)


def tiny_params(**overrides) -> Params:
    """Params of a tiny model: :data:`TINY`, then ``overrides``, with the alphabet resolved.

    The alphabet is the demo's (digits and lower-case letters) unless ``overrides`` name one.
    """
    values = {**TINY, **overrides}
    if not any(key in values for key in ALPHABET_SETTINGS):
        values["alphabet_string"] = DEMO_ALPHABET
    return with_resolved_alphabet(Params().with_overrides(values), [])


def tiny_flags(**overrides) -> list[str]:
    """:data:`TINY`, then ``overrides``, as ``python -m tf_crnn.task`` arguments (``--param
    key=value`` each). No alphabet unless ``overrides`` name one: the task collects it from the
    training labels."""
    flags = []
    for key, value in {**TINY, **overrides}.items():
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, (list, dict)):
            text = json.dumps(value, separators=(",", ":"))
        else:
            text = str(value)
        flags += ["--param", f"{key}={text}"]
    return flags


# --- text-line images ---------------------------------------------------------------------------
def job_args(job_dir, train_csv: str, eval_csv: str, *extra: str) -> list[str]:
    """The arguments of ``python -m tf_crnn.task`` for one job directory and its two CSV files."""
    return ["--job-dir", str(job_dir), "--train-csv", train_csv, "--eval-csv", eval_csv, *extra]


def digit_line(text: str) -> np.ndarray:
    """``text`` printed in one clean font, black on white: learnable by a tiny model in a few
    hundred steps."""
    image = np.full((32, 15 * len(text) + 10), 255, np.uint8)
    cv2.putText(image, text, (5, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.7, 0, 2)
    return image


def digit_strings(count: int, seed: int) -> list[str]:
    """``count`` random strings of 3 to 5 digits."""
    rng = np.random.default_rng(seed)
    return ["".join(rng.choice(list("0123456789"), rng.integers(3, 6))) for _ in range(count)]


def write_image(path, pixels: np.ndarray) -> str:
    """Writes ``pixels`` (format from the extension) with OpenCV, making the folder; returns
    str(path)."""
    os.makedirs(os.path.dirname(str(path)), exist_ok=True)
    assert cv2.imwrite(str(path), pixels)
    return str(path)


# --- image files of every format the model reads ------------------------------------------------
# Every format the bytes signature accepts, in several colour modes.
FORMATS = ["png", "jpeg", "png_rgba", "bmp", "gif", "png_16bit", "png_3x", "jpeg_gray"]


def encode_gif(gray: np.ndarray) -> bytes:
    """``gray`` (uint8 [h, w]) as a lossless GIF, which OpenCV cannot write: a 256-gray palette and
    9-bit LZW codes.

    A clear code every 200 pixels keeps the LZW table, and so the code width, from growing.
    """
    height, width = gray.shape
    codes = []
    for index, pixel in enumerate(gray.ravel()):
        if index % 200 == 0:
            codes.append(256)  # clear
        codes.append(int(pixel))
    codes.append(257)  # end of information
    packed, bits, count = bytearray(), 0, 0
    for code in codes:
        bits |= code << count
        count += 9
        while count >= 8:
            packed.append(bits & 255)
            bits, count = bits >> 8, count - 8
    if count:
        packed.append(bits)
    blocks = b"".join(
        bytes([len(packed[i : i + 255])]) + packed[i : i + 255] for i in range(0, len(packed), 255)
    )
    palette = bytes(value for gray_level in range(256) for value in (gray_level,) * 3)
    return (
        b"GIF89a"
        + struct.pack("<HHBBB", width, height, 0xF7, 0, 0)
        + palette
        + b","
        + struct.pack("<HHHHB", 0, 0, width, height, 0)
        + b"\x08"
        + blocks
        + b"\x00;"
    )


def encode(gray: np.ndarray, image_format: str) -> bytes:
    """A black-on-white ``gray`` image as a file of ``image_format`` (one of :data:`FORMATS`;
    colour ones: dark blue on cream)."""
    ink = 1 - gray[..., np.newaxis] / 255.0
    paper, blue = np.array([200, 240, 250]), np.array([90, 30, 10])  # BGR
    colour = np.uint8(paper + ink * (blue - paper))
    if image_format == "gif":
        return encode_gif(gray)
    extension, image = {
        "png": (".png", gray),
        "jpeg": (".jpg", colour),
        "png_rgba": (".png", np.dstack([colour, np.full(gray.shape, 200, np.uint8)])),
        "bmp": (".bmp", colour),
        "png_16bit": (".png", gray.astype(np.uint16) * 257),
        "png_3x": (".png", cv2.resize(gray, None, fx=3, fy=3, interpolation=cv2.INTER_CUBIC)),
        "jpeg_gray": (".jpg", gray),
    }[image_format]
    ok, data = cv2.imencode(extension, image)
    assert ok
    return data.tobytes()


def write_digit_csv(folder, name: str, count: int, seed: int, formats=("png",)) -> str:
    """``folder/name.csv`` of ``count`` digit_line images, stored in ``formats`` in turn."""
    rows = []
    for index, text in enumerate(digit_strings(count, seed)):
        image_format = formats[index % len(formats)]
        file_name = f"{name}_{index}.{image_format}"
        (folder / file_name).write_bytes(encode(digit_line(text), image_format))
        rows.append(f"{file_name};{text}")
    (folder / f"{name}.csv").write_text("\n".join(rows) + "\n")
    return str(folder / f"{name}.csv")


# --- what an input_fn dataset holds -------------------------------------------------------------
def batches(dataset) -> list[tuple[dict, np.ndarray]]:
    """[(features as numpy, dense codes padded with -1)] of every batch."""
    return [
        (
            {key: value.numpy() for key, value in features.items()},
            tf.sparse.to_dense(labels, -1).numpy(),
        )
        for features, labels in dataset
    ]


def concatenated(dataset, params: Params) -> tuple[dict, list[str]]:
    """Features of all batches of ``dataset`` joined along the batch axis, and the labels decoded
    with the alphabet of ``params``."""
    features, codes = zip(*batches(dataset))
    joined = {key: np.concatenate([f[key] for f in features]) for key in features[0]}
    alphabet = Alphabet.from_params(params)
    return joined, [alphabet.decode(row) for batch in codes for row in batch]


# --- the trained job that serving tests share (see conftest.py) ---------------------------------
@dataclass
class Job:
    """A trained model's job directory, its settings, latest checkpoint and newest export."""

    job_dir: str
    params: Params
    checkpoint: str
    export: str  # made from ``checkpoint`` by the exporters


@dataclass
class Lines:
    """Labelled text-line images in every format: the paths, their bytes and labels, and their
    CSV."""

    csv: str
    paths: list[str]
    contents: list[bytes]
    labels: list[str]


def assert_same_predictions(outputs: dict, expected: dict) -> None:
    """Serving ``outputs`` equal ``expected`` (Estimator.predict's words, top_words and scores)."""
    np.testing.assert_array_equal(outputs["words"], expected["words"])
    np.testing.assert_array_equal(outputs["top_words"], expected["top_words"])
    np.testing.assert_allclose(outputs["scores"], expected["scores"], rtol=1e-4, atol=1e-3)


# --- a trainer in a subprocess, for the tests that signal or kill it ----------------------------
class TaskProcess:
    """``python ARGS`` (e.g. ``-m tf_crnn.task ...``) in a subprocess, its stdout and stderr in
    ``log_path``; ``env`` is added to the environment."""

    TIMEOUT_SECONDS = 180

    def __init__(self, log_path, args, env=None):
        self.log_path = log_path
        with open(log_path, "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, *args],
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **(env or {})},
            )

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for(self, marker: str) -> None:
        """Returns as soon as ``marker`` is in the output; fails if the process ends first."""
        deadline = time.time() + self.TIMEOUT_SECONDS
        while marker not in self.output():
            if self.process.poll() is not None or time.time() > deadline:
                self.end()
                pytest.fail(f"no {marker!r} in the output:\n{self.output()[-3000:]}")
            time.sleep(0.05)

    def finish(self) -> int:
        """The exit status, once the process has ended by itself."""
        try:
            return self.process.wait(timeout=self.TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            self.end()
            pytest.fail(f"still running after {self.TIMEOUT_SECONDS} s:\n{self.output()[-3000:]}")

    def end(self) -> None:
        """Kills the process if it still runs."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()


def free_ports(count: int) -> list[int]:
    """``count`` TCP ports on 127.0.0.1 that are free now, for the tasks of a test cluster."""
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports
