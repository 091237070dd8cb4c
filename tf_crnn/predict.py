"""``python -m tf_crnn.predict``: a SavedModel applied to image files or a CSV; :class:`Predictor`
for Python.

    python -m tf_crnn.predict --model runs/demo --images a.png b.jpg
    python -m tf_crnn.predict --model runs/demo --csv data/eval.csv --output predictions.csv

``--model`` is an export folder, or a job directory (meaning its newest export). A file that cannot
be read or decoded is reported with its path and the rest go on.
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import tensorflow as tf
from tqdm import tqdm

from tf_crnn import metrics
from tf_crnn.alphabet import Alphabet
from tf_crnn.config import Params
from tf_crnn.constants import (
    ASSETS_EXTRA,
    CODES,
    EXPORT_DIR,
    FRAME_LOG_PROBS,
    IMAGE_BYTES,
    IMAGES,
    IMAGES_WIDTHS,
    PADDING_CODE,
    PARAMS_FILE,
    SCORES,
    SEQUENCE_LENGTHS,
    SIGNATURE_BYTES,
    SIGNATURE_IMAGES,
    SIGNATURE_WITH_FRAMES,
    TOP_WORDS,
    WORDS,
)
from tf_crnn.csv_rows import DataError, read_csv_rows
from tf_crnn.images import max_serving_batch, preprocess_image, to_model_channels

# How many of the worst predictions a labelled CSV run lists.
WORST_SHOWN = 10


@dataclass
class Prediction:
    """The recognizer's answer for one image, or why there is none."""

    source: str
    text: str = ""  # the best reading's units joined (without string_split_delimiter)
    top_texts: list[str] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    error: str | None = None
    units: list[str] = field(default_factory=list)  # the best reading, unit by unit
    # float32 [time steps, classes], the image's own steps only; when the Predictor keeps them.
    frame_log_probs: np.ndarray | None = None


def export_names(export_base: str) -> list[str]:
    """The finished (timestamp-named) SavedModel versions in ``export_base``; unfinished ones are
    written under a ``temp-`` name first."""
    if not tf.io.gfile.isdir(export_base):
        return []
    names = (name.rstrip("/") for name in tf.io.gfile.listdir(export_base))
    return [name for name in names if name.isdigit()]


def find_saved_model(model_dir: str) -> str:
    """``model_dir`` if it is a SavedModel; else its newest version when it is a folder of versions
    (``export/best``, as TF Serving reads it); else the newest export below ``model_dir/export``.
    """
    if tf.io.gfile.exists(os.path.join(model_dir, "saved_model.pb")):
        return model_dir

    def versions(folder: str) -> list[tuple]:
        return [
            (int(name), os.path.join(folder, name))
            for name in export_names(folder)
            if tf.io.gfile.exists(os.path.join(folder, name, "saved_model.pb"))
        ]

    candidates = versions(model_dir)
    export_root = os.path.join(model_dir, EXPORT_DIR)
    if not candidates and tf.io.gfile.isdir(export_root):
        for kind in tf.io.gfile.listdir(export_root):
            candidates += versions(os.path.join(export_root, kind.rstrip("/")))
    if not candidates:
        raise FileNotFoundError(
            f"{model_dir} is neither a SavedModel, a folder of SavedModel versions, "
            f"nor a job directory with exports"
        )
    return max(candidates)[1]


def export_params(saved_model: str) -> Params:
    """The settings a SavedModel was exported with (its ``assets.extra/params.json``)."""
    return Params.from_json(os.path.join(saved_model, ASSETS_EXTRA, PARAMS_FILE))


class Predictor:
    """Loads a SavedModel once and recognizes text in batches of paths, encoded bytes or arrays.

    Every way in is preprocessed exactly like training (bytes in the graph, arrays with the same
    ``preprocess_image``). Each method returns one :class:`Prediction` per input, in order; an
    input that cannot be read or decoded gets ``error`` set instead of stopping the others.

    Args:
        model_dir: a SavedModel, a folder of SavedModel versions (``export/best``), or a job
            directory (its newest export); see :func:`find_saved_model`.
        batch_size: images per model call; by default the model's own ``eval_batch_size``.
        keep_frame_log_probs: fill each prediction's ``frame_log_probs`` (for lexicon decoding);
            off by default because they cost ``time steps x classes`` floats per image.

    Raises:
        FileNotFoundError: no SavedModel at ``model_dir``.
        ValueError: ``keep_frame_log_probs`` with a SavedModel exported without that output.
    """

    def __init__(
        self, model_dir: str, batch_size: int | None = None, keep_frame_log_probs: bool = False
    ):
        self.path = find_saved_model(model_dir)
        self.params = export_params(self.path)
        self.alphabet = Alphabet.from_params(self.params)
        # Capped at what a served model takes in one call, which refuses a larger batch whole.
        self.batch_size = min(
            batch_size or self.params.eval_batch_size, max_serving_batch(self.params)
        )
        self._model = tf.saved_model.load(self.path)
        self.keep_frame_log_probs = keep_frame_log_probs
        if keep_frame_log_probs and SIGNATURE_WITH_FRAMES not in self._model.signatures:
            raise ValueError(
                f"{self.path} has no {SIGNATURE_WITH_FRAMES} signature (exported by an older "
                "tf_crnn): export it again with python -m tf_crnn.export_model --job-dir JOB_DIR"
            )
        bytes_signature = SIGNATURE_WITH_FRAMES if keep_frame_log_probs else SIGNATURE_BYTES
        self._from_bytes = self._model.signatures[bytes_signature]
        self._from_images = self._model.signatures[SIGNATURE_IMAGES]

    def predict_files(self, paths: Sequence[str], progress: bool = False) -> list[Prediction]:
        """Image files (any gfile path) -> predictions; a file that cannot be read or decoded gets
        ``error``.

        Files are read one batch at a time, so a long list never sits in memory at once.
        """
        results: list[Prediction] = []
        for batch in self._batches(len(paths), progress):
            contents: dict[int, bytes] = {}
            predictions: dict[int, Prediction] = {}
            for index in range(batch.start, batch.stop):
                try:
                    with tf.io.gfile.GFile(paths[index], "rb") as f:
                        contents[index] = f.read()
                except (tf.errors.OpError, OSError) as error:
                    predictions[index] = Prediction(
                        paths[index], error=f"cannot read file: {error_reason(error)}"
                    )
            readable = list(contents)
            predictions.update(
                zip(
                    readable,
                    self._predict_batch(
                        [contents[i] for i in readable], [paths[i] for i in readable]
                    ),
                )
            )
            results += [predictions[index] for index in range(batch.start, batch.stop)]
        return results

    def predict_bytes(
        self,
        contents: Sequence[bytes],
        sources: Sequence[str] | None = None,
        progress: bool = False,
    ) -> list[Prediction]:
        """Encoded images -> predictions; an image that does not decode gets ``error`` set."""
        sources = (
            list(sources) if sources is not None else [f"image {i}" for i in range(len(contents))]
        )
        results: list[Prediction] = []
        for batch in self._batches(len(contents), progress):
            results += self._predict_batch(list(contents[batch]), sources[batch])
        return results

    def predict_arrays(
        self, images: Sequence[np.ndarray], progress: bool = False
    ) -> list[Prediction]:
        """uint8 arrays [h, w] (gray) or [h, w, 3|4] (RGB, RGBA) -> predictions, preprocessed like
        training. (Without frame log-probabilities: only the bytes path has a signature with them.)
        """
        if self.keep_frame_log_probs:
            raise ValueError("frame log-probabilities come with predict_files, not predict_arrays")
        results: list[Prediction] = []
        for batch in self._batches(len(images), progress):
            channels = self.params.input_channels
            fitted = [
                preprocess_image(
                    to_model_channels(np.asarray(image, np.uint8), channels), self.params
                )
                for image in images[batch]
            ]
            outputs = self._from_images(
                **{
                    IMAGES: tf.stack([pixels for pixels, _ in fitted]),
                    IMAGES_WIDTHS: tf.stack([width for _, width in fitted]),
                }
            )
            results += self._outputs_to_predictions(
                outputs, [f"array {i}" for i in range(batch.start, batch.stop)]
            )
        return results

    def _batches(self, count: int, progress: bool) -> Iterator[slice]:
        """Slices of ``batch_size`` items over ``count``, advancing a progress bar as each is
        done."""
        with tqdm(total=count, disable=not progress, unit="image", desc="predicting") as bar:
            for start in range(0, count, self.batch_size):
                batch = slice(start, min(start + self.batch_size, count))
                yield batch
                bar.update(batch.stop - batch.start)

    def _predict_batch(self, contents: list[bytes], sources: Sequence[str]) -> list[Prediction]:
        if not contents:
            return []
        try:
            return self._outputs_to_predictions(
                self._from_bytes(**{IMAGE_BYTES: tf.constant(contents, tf.string)}), sources
            )
        except tf.errors.InvalidArgumentError:
            # One bad image fails its whole batch: redo it image by image to name the culprit.
            return [self._predict_one(item, source) for item, source in zip(contents, sources)]

    def _predict_one(self, contents: bytes, source: str) -> Prediction:
        try:
            return self._outputs_to_predictions(
                self._from_bytes(**{IMAGE_BYTES: tf.constant([contents])}), [source]
            )[0]
        except tf.errors.InvalidArgumentError as error:
            return Prediction(source, error=f"cannot decode image: {one_image_reason(error)}")

    def _outputs_to_predictions(self, outputs, sources: Sequence[str]) -> list[Prediction]:
        words = outputs[WORDS].numpy()
        top_words = outputs[TOP_WORDS].numpy()
        scores = outputs[SCORES].numpy()
        codes = outputs[CODES].numpy()
        if self.keep_frame_log_probs:
            frames, lengths = outputs[FRAME_LOG_PROBS].numpy(), outputs[SEQUENCE_LENGTHS].numpy()
        return [
            Prediction(
                source,
                words[i].decode("utf-8"),
                [w.decode("utf-8") for w in top_words[i]],
                [float(s) for s in scores[i]],
                units=[self.alphabet.units[code] for code in codes[i] if code != PADDING_CODE],
                frame_log_probs=frames[i, : lengths[i]] if self.keep_frame_log_probs else None,
            )
            for i, source in enumerate(sources)
        ]


def error_reason(error: Exception) -> str:
    """The cause of ``error`` in one line, without TensorFlow's "Graph execution error" frame and
    node names."""
    if not isinstance(error, tf.errors.OpError):
        return str(error)
    lines = [line.strip() for line in error.message.splitlines() if line.strip()]
    for cause, line in zip(lines, lines[1:]):
        if line.startswith("[["):  # the failing node, named after the op's own message
            return cause
    return lines[0] if lines else type(error).__name__


def one_image_reason(error: Exception) -> str:
    """``error_reason`` of a signature call with one image, as a user of the command reads it:
    without TensorFlow's "assertion failed: [...]" around the graph's own message, and without the
    signature's "image_bytes[0]: " (there is only the one image, named by the caller)."""
    reason = error_reason(error)
    wrapped = re.fullmatch(r"assertion failed: \[(.*)\]", reason)
    if wrapped:
        reason = wrapped.group(1)
    return reason.removeprefix(f"{IMAGE_BYTES}[0]: ")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tf_crnn.predict", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--model", required=True, help="SavedModel folder, or a job directory (its newest export)."
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--images", nargs="+", metavar="IMAGE", help="Image files (PNG, JPEG, BMP, GIF)."
    )
    source.add_argument(
        "--csv", help="CSV of 'image_path;label' rows (or image paths only); labels give CER."
    )
    parser.add_argument(
        "--output", help="Write 'image_path;prediction;score' rows (plus the label) to this CSV."
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="Images per model call (default: the model's eval_batch_size setting).",
    )
    args = parser.parse_args(argv)

    try:
        predictor = Predictor(args.model, batch_size=args.batch_size)
    except FileNotFoundError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.csv:
        try:
            rows = read_csv_rows(
                args.csv, predictor.params.csv_delimiter, labels_optional=True
            ).strict()
        except DataError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        paths, labels = [row.image_path for row in rows], [row.label for row in rows]
    else:
        paths, labels = args.images, [""] * len(args.images)
    predictions = predictor.predict_files(paths, progress=True)

    for prediction in predictions:
        if prediction.error:
            print(f"{prediction.source}: {prediction.error}", file=sys.stderr)
        elif not args.output:
            print(f"{prediction.source}\t{prediction.text}\t{prediction.scores[0]:.3f}")
    if args.output:
        with tf.io.gfile.GFile(args.output, "w") as f:
            writer = csv.writer(f, delimiter=predictor.params.csv_delimiter, lineterminator="\n")
            for prediction, label in zip(predictions, labels):
                score = f"{prediction.scores[0]:.4f}" if prediction.scores else ""
                writer.writerow(
                    [prediction.source, prediction.text, score] + ([label] if args.csv else [])
                )
        print(f"wrote {len(predictions)} predictions to {args.output}")
    if any(labels):
        report_accuracy(predictor.alphabet, predictions, labels)
    return 1 if any(p.error for p in predictions) else 0


def report_accuracy(
    alphabet: Alphabet, predictions: Sequence[Prediction], labels: Sequence[str]
) -> metrics.ErrorCounts:
    """Prints CER and word accuracy over the readable images, and the worst predictions; returns
    the counts they come from."""
    pairs = [(p, label) for p, label in zip(predictions, labels) if not p.error]
    # Unit by unit: with string_split_delimiter the joined text no longer says where units end.
    counts = metrics.ErrorCounts.of(
        [p.units for p, _ in pairs], [alphabet.split(label) for _, label in pairs]
    )
    print(
        f"{counts.sequences} labelled images: CER {counts.cer:.4f}, word accuracy "
        f"{counts.word_accuracy:.4f}, "
        f"WER {counts.wer:.4f}"
    )
    errors = sorted(
        ((metrics.edit_distance(p.units, alphabet.split(label)), p, label) for p, label in pairs),
        key=lambda item: -item[0],
    )
    worst = [item for item in errors if item[0] > 0][:WORST_SHOWN]
    if worst:
        print("worst predictions (edits, image, prediction, label):")
        for distance, prediction, label in worst:
            print(f"  {distance}  {prediction.source}  {prediction.text!r}  {label!r}")
    return counts


if __name__ == "__main__":
    sys.exit(main())
