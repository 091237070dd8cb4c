"""Pictures a person can check at a glance: input images captioned with prediction and truth.

Used by the EVAL image summaries in TensorBoard and by the ``samples.png`` grid a training run
writes into its job directory.
"""
from __future__ import annotations

from typing import Optional, Sequence

import cv2
import numpy as np
import tensorflow as tf

from tf_crnn import data_handler

CAPTION_HEIGHT = 18
RIGHT = (0, 150, 0)  # BGR
WRONG = (0, 0, 220)


def captioned(image: np.ndarray, prediction: str, truth: Optional[str] = None, width: Optional[int] = None) -> np.ndarray:
    """A uint8 BGR picture of ``image`` (float in [0, 1] or uint8, 1 or 3 channels) with a caption below.

    The caption shows the prediction, in green when it equals ``truth`` and in red followed by the
    truth when it does not.
    """
    if image.dtype != np.uint8:
        image = (np.clip(image, 0, 1) * 255).astype(np.uint8)
    if image.ndim == 2 or image.shape[-1] == 1:
        image = cv2.cvtColor(image.reshape(image.shape[:2]), cv2.COLOR_GRAY2BGR)
    if width is not None and width > image.shape[1]:
        image = cv2.copyMakeBorder(image, 0, 0, 0, width - image.shape[1], cv2.BORDER_CONSTANT, value=(255, 255, 255))
    caption = np.full((CAPTION_HEIGHT, image.shape[1], 3), 255, np.uint8)
    correct = truth is None or prediction == truth
    text = prediction if correct else f"{prediction}  [truth: {truth}]"
    # Hershey fonts draw ASCII only; other characters show as '?' (the text summary has them all).
    text = "".join(c if 32 <= ord(c) < 127 else "?" for c in text)
    cv2.putText(caption, text, (2, CAPTION_HEIGHT - 5), cv2.FONT_HERSHEY_SIMPLEX, 0.45,
                RIGHT if correct else WRONG, 1, cv2.LINE_AA)
    return np.concatenate([image, caption], axis=0)


def samples_grid(images: Sequence[np.ndarray], predictions: Sequence[str], truths: Sequence[str],
                 columns: int = 2) -> np.ndarray:
    """A grid of :func:`captioned` pictures, ``columns`` wide, as one uint8 BGR image."""
    width = max(image.shape[1] for image in images)
    tiles = [captioned(image, p, t, width) for image, p, t in zip(images, predictions, truths)]
    height, width = max(t.shape[0] for t in tiles), max(t.shape[1] for t in tiles)
    tiles = [cv2.copyMakeBorder(t, 4, 4 + height - t.shape[0], 4, 4 + width - t.shape[1], cv2.BORDER_CONSTANT,
                                value=(200, 200, 200)) for t in tiles]
    blank = np.full_like(tiles[0], 200)
    tiles += [blank] * (-len(tiles) % columns)
    rows = [np.concatenate(tiles[i:i + columns], axis=1) for i in range(0, len(tiles), columns)]
    return np.concatenate(rows, axis=0)


def save_samples_png(path: str, image_paths: Sequence[str], predictions: Sequence[str], truths: Sequence[str]) -> None:
    """Writes a :func:`samples_grid` of the images at ``image_paths`` to ``path`` (any gfile scheme)."""
    # TensorFlow's decoder, like training: OpenCV reads no GIF.
    images = [data_handler.decode_image(tf.io.read_file(path), 3).numpy()[..., ::-1] for path in image_paths]
    ok, encoded = cv2.imencode(".png", samples_grid(images, predictions, truths))
    with tf.io.gfile.GFile(path, "wb") as f:
        f.write(encoded.tobytes())
