"""Shared test fixtures: small CSV files and tiny labelled text-line images on disk."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import cv2
import numpy as np
import pytest

from tf_crnn.demo import render_text_line


def digit_line(text: str) -> np.ndarray:
    """``text`` printed in one clean font, black on white: learnable by a tiny model in a few hundred steps."""
    image = np.full((32, 15 * len(text) + 10), 255, np.uint8)
    cv2.putText(image, text, (5, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.7, 0, 2)
    return image


@pytest.fixture
def write_csv():
    """``write_csv(path, lines)``: writes ``lines`` (str, or bytes for exact content) joined by '\\n'; returns str(path)."""
    def write(path, lines):
        content = b"".join((line if isinstance(line, bytes) else line.encode("utf-8")) + b"\n" for line in lines)
        with open(path, "wb") as f:
            f.write(content)
        return str(path)
    return write


@pytest.fixture
def text_line_csv(tmp_path, write_csv):
    """``text_line_csv(labels, name='data.csv')``: renders each label with the demo renderer into
    ``tmp_path/images`` and writes a CSV of relative paths ``images/<name>_<i>.png;<label>``.

    The same labels give the same pixels (one seeded generator per image).
    """
    def make(labels, name="data.csv"):
        os.makedirs(tmp_path / "images", exist_ok=True)
        stem = os.path.splitext(name)[0]
        lines = []
        for index, label in enumerate(labels):
            image_name = f"{stem}_{index}.png"
            assert cv2.imwrite(str(tmp_path / "images" / image_name), render_text_line(label, np.random.default_rng(index)))
            lines.append(f"images/{image_name};{label}")
        return write_csv(tmp_path / name, lines)
    return make
