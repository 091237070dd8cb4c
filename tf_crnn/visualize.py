"""Pictures a person can check at a glance: input images captioned with prediction and truth.

Used by the EVAL image summaries in TensorBoard and by the ``samples.png`` grid a training run
writes into its job directory.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import tensorflow as tf

from tf_crnn.images import decode_image
from tf_crnn.job_files import write_atomically

CAPTION_HEIGHT = 18
RIGHT = (0, 150, 0)  # BGR
WRONG = (0, 0, 220)
# Images shown per TensorBoard image summary.
SUMMARY_IMAGES = 4


def captioned(
    image: np.ndarray, prediction: str, truth: str | None = None, width: int | None = None
) -> np.ndarray:
    """A uint8 BGR picture of ``image`` (float in [0, 1] or uint8, 1 or 3 channels), caption below.

    The caption shows the prediction, in green when it equals ``truth`` and in red followed by the
    truth when it does not. ``width`` pads the picture on the right with white.
    """
    if image.dtype != np.uint8:
        image = (np.clip(image, 0, 1) * 255).astype(np.uint8)
    if image.ndim == 2 or image.shape[-1] == 1:
        image = cv2.cvtColor(image.reshape(image.shape[:2]), cv2.COLOR_GRAY2BGR)
    if width is not None and width > image.shape[1]:
        extra = width - image.shape[1]
        image = cv2.copyMakeBorder(image, 0, 0, 0, extra, cv2.BORDER_CONSTANT, value=(255,) * 3)
    caption = np.full((CAPTION_HEIGHT, image.shape[1], 3), 255, np.uint8)
    correct = truth is None or prediction == truth
    text = prediction if correct else f"{prediction}  [truth: {truth}]"
    # Hershey fonts draw ASCII only; other characters show as '?' (the text summary has them all).
    text = "".join(c if 32 <= ord(c) < 127 else "?" for c in text)
    colour = RIGHT if correct else WRONG
    position = (2, CAPTION_HEIGHT - 5)
    cv2.putText(caption, text, position, cv2.FONT_HERSHEY_SIMPLEX, 0.45, colour, 1, cv2.LINE_AA)
    return np.concatenate([image, caption], axis=0)


def samples_grid(
    images: Sequence[np.ndarray], predictions: Sequence[str], truths: Sequence[str], columns=2
) -> np.ndarray:
    """A grid of :func:`captioned` pictures, ``columns`` wide, as one uint8 BGR image."""
    width = max(image.shape[1] for image in images)
    tiles = [captioned(image, p, t, width) for image, p, t in zip(images, predictions, truths)]
    height, width = max(t.shape[0] for t in tiles), max(t.shape[1] for t in tiles)
    gray = (200, 200, 200)
    tiles = [
        cv2.copyMakeBorder(
            t,
            4,
            4 + height - t.shape[0],
            4,
            4 + width - t.shape[1],
            cv2.BORDER_CONSTANT,
            value=gray,
        )
        for t in tiles
    ]
    blank = np.full_like(tiles[0], 200)
    tiles += [blank] * (-len(tiles) % columns)
    rows = [np.concatenate(tiles[i : i + columns], axis=1) for i in range(0, len(tiles), columns)]
    return np.concatenate(rows, axis=0)


def save_samples_png(
    path: str, image_paths: Sequence[str], predictions: Sequence[str], truths: Sequence[str]
) -> None:
    """Writes a :func:`samples_grid` of the images at ``image_paths`` to ``path`` (any gfile
    scheme), atomically."""
    # TensorFlow's decoder, like training: OpenCV reads no GIF.
    images = [decode_image(tf.io.read_file(p), 3).numpy()[..., ::-1] for p in image_paths]
    ok, encoded = cv2.imencode(".png", samples_grid(images, predictions, truths))
    write_atomically(path, encoded.tobytes())


def predictions_summary(images, widths, predicted_texts, true_texts) -> tf.Tensor:
    """TensorBoard summaries of an EVAL batch: its first images captioned with prediction and
    truth, and a text table of every prediction beside its truth."""

    def draw(images, widths, predicted, truth):
        pictures = [
            captioned(image[:, : max(int(w), 1)], p.decode(), t.decode(), width=images.shape[2])
            for image, w, p, t in zip(
                images.numpy(), widths.numpy(), predicted.numpy(), truth.numpy()
            )
        ]
        return np.stack(pictures)[..., ::-1]  # BGR -> RGB

    count = tf.minimum(tf.shape(images)[0], SUMMARY_IMAGES)
    shown = [images[:count], widths[:count], predicted_texts[:count], true_texts[:count]]
    pictures = tf.py_function(draw, shown, tf.uint8)
    rows = tf.strings.join(["| ", predicted_texts, " | ", true_texts, " |"])
    table = tf.strings.reduce_join(
        tf.concat([["| prediction | truth |", "|---|---|"], rows], 0), separator="\n"
    )
    return tf.compat.v1.summary.merge(
        [
            tf.compat.v1.summary.image("predictions", pictures, max_outputs=SUMMARY_IMAGES),
            tf.compat.v1.summary.text("predictions_vs_truth", table),
        ]
    )
