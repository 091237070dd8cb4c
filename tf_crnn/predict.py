"""``python -m tf_crnn.predict``: a SavedModel applied to image files or a CSV; :class:`Predictor` for Python.

    python -m tf_crnn.predict --model runs/demo --images a.png b.jpg
    python -m tf_crnn.predict --model runs/demo --csv data/eval.csv --output predictions.csv

``--model`` is an export folder, or a job directory (meaning its newest export). A file that cannot
be read or decoded is reported with its path and the rest go on.
"""
from __future__ import annotations

import argparse
import csv
import os
import sys
from dataclasses import dataclass, field
from typing import Iterable, List, Optional, Sequence

import numpy as np
import tensorflow as tf
from tqdm import tqdm

from tf_crnn import data_handler, metrics
from tf_crnn.alphabet import Alphabet
from tf_crnn.config import Params
from tf_crnn.export_model import PARAMS_FILE

# How many of the worst predictions a labelled CSV run lists.
WORST_SHOWN = 10


@dataclass
class Prediction:
    """The recognizer's answer for one image, or why there is none."""
    source: str
    text: str = ""
    top_texts: List[str] = field(default_factory=list)
    scores: List[float] = field(default_factory=list)
    error: Optional[str] = None


def find_saved_model(model_dir: str) -> str:
    """``model_dir`` if it is a SavedModel, else the newest export below ``model_dir/export``."""
    if tf.io.gfile.exists(os.path.join(model_dir, "saved_model.pb")):
        return model_dir
    candidates = []
    export_root = os.path.join(model_dir, "export")
    if tf.io.gfile.isdir(export_root):
        for kind in tf.io.gfile.listdir(export_root):
            kind_dir = os.path.join(export_root, kind.rstrip("/"))
            if not tf.io.gfile.isdir(kind_dir):
                continue
            for name in tf.io.gfile.listdir(kind_dir):
                name = name.rstrip("/")
                if name.isdigit() and tf.io.gfile.exists(os.path.join(kind_dir, name, "saved_model.pb")):
                    candidates.append((int(name), os.path.join(kind_dir, name)))
    if not candidates:
        raise FileNotFoundError(f"{model_dir} is neither a SavedModel nor a job directory with exports")
    return max(candidates)[1]


class Predictor:
    """Loads a SavedModel once and recognizes text in batches of paths, encoded bytes or arrays."""

    def __init__(self, model_dir: str, batch_size: int = 32):
        self.path = find_saved_model(model_dir)
        self.params = Params.from_json(os.path.join(self.path, "assets.extra", PARAMS_FILE))
        self.alphabet = Alphabet.from_params(self.params)
        self.batch_size = batch_size
        self._model = tf.saved_model.load(self.path)
        self._from_bytes = self._model.signatures["serving_default"]
        self._from_images = self._model.signatures["images"]

    def predict_files(self, paths: Sequence[str], progress: bool = False) -> List[Prediction]:
        contents, unreadable = [], {}
        for path in paths:
            try:
                with tf.io.gfile.GFile(path, "rb") as f:
                    contents.append(f.read())
            except (tf.errors.OpError, OSError) as error:
                unreadable[path] = f"cannot read file: {getattr(error, 'message', error)}"
                contents.append(b"")
        predictions = self.predict_bytes(contents, sources=paths, progress=progress)
        for prediction in predictions:
            if prediction.source in unreadable:
                prediction.error = unreadable[prediction.source]
        return predictions

    def predict_bytes(self, contents: Sequence[bytes], sources: Optional[Sequence[str]] = None,
                      progress: bool = False) -> List[Prediction]:
        """Encoded images -> predictions; an image that does not decode gets ``error`` set."""
        sources = list(sources) if sources is not None else [f"image {i}" for i in range(len(contents))]
        results: List[Prediction] = []
        with tqdm(total=len(contents), disable=not progress, unit="image", desc="predicting") as bar:
            for start in range(0, len(contents), self.batch_size):
                batch = list(contents[start:start + self.batch_size])
                batch_sources = sources[start:start + self.batch_size]
                try:
                    results += self._outputs_to_predictions(
                        self._from_bytes(image_bytes=tf.constant(batch, tf.string)), batch_sources)
                except tf.errors.InvalidArgumentError:
                    # One bad image fails its whole batch: redo it image by image to name the culprit.
                    results += [self._predict_one(item, source) for item, source in zip(batch, batch_sources)]
                bar.update(len(batch))
        return results

    def predict_arrays(self, images: Iterable[np.ndarray]) -> List[Prediction]:
        """uint8 arrays [h, w] or [h, w, C] -> predictions, preprocessed exactly like training."""
        preprocessed, widths = [], []
        for image in images:
            image = data_handler.to_model_channels(np.asarray(image, np.uint8), self.params.input_channels)
            pixels, width = data_handler.preprocess_image(image, self.params)
            preprocessed.append(pixels)
            widths.append(width)
        results = []
        for start in range(0, len(preprocessed), self.batch_size):
            outputs = self._from_images(images=tf.stack(preprocessed[start:start + self.batch_size]),
                                        images_widths=tf.stack(widths[start:start + self.batch_size]))
            results += self._outputs_to_predictions(outputs, [f"array {i}" for i in range(start, start + len(outputs["words"]))])
        return results

    def _predict_one(self, contents: bytes, source: str) -> Prediction:
        try:
            return self._outputs_to_predictions(self._from_bytes(image_bytes=tf.constant([contents])), [source])[0]
        except tf.errors.InvalidArgumentError as error:
            return Prediction(source, error=f"cannot decode image: {error.message.splitlines()[0]}")

    @staticmethod
    def _outputs_to_predictions(outputs, sources: Sequence[str]) -> List[Prediction]:
        words = outputs["words"].numpy()
        top_words = outputs["top_words"].numpy()
        scores = outputs["scores"].numpy()
        return [Prediction(source, words[i].decode("utf-8"), [w.decode("utf-8") for w in top_words[i]],
                           [float(s) for s in scores[i]]) for i, source in enumerate(sources)]


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tf_crnn.predict", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="SavedModel folder, or a job directory (its newest export).")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--images", nargs="+", metavar="IMAGE", help="Image files (PNG, JPEG, BMP, GIF).")
    source.add_argument("--csv", help="CSV of 'image_path;label' rows (or image paths only); labels give CER.")
    parser.add_argument("--output", help="Write 'image_path;prediction;score' rows (plus the label) to this CSV.")
    parser.add_argument("--batch-size", type=int, default=32, help="Images per model call.")
    args = parser.parse_args(argv)

    predictor = Predictor(args.model, batch_size=args.batch_size)
    if args.csv:
        try:
            rows = data_handler.read_csv_rows(args.csv, predictor.params.csv_delimiter, labels_optional=True)
        except data_handler.DataError as error:
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
                writer.writerow([prediction.source, prediction.text, score] + ([label] if args.csv else []))
        print(f"wrote {len(predictions)} predictions to {args.output}")
    if any(labels):
        report_accuracy(predictor.alphabet, predictions, labels)
    return 1 if any(p.error for p in predictions) else 0


def report_accuracy(alphabet: Alphabet, predictions: Sequence[Prediction], labels: Sequence[str]) -> None:
    """Prints CER and word accuracy over the readable images, and the worst predictions."""
    pairs = [(p, label) for p, label in zip(predictions, labels) if not p.error]
    counts = metrics.ErrorCounts.of([alphabet.split(p.text) for p, _ in pairs],
                                    [alphabet.split(label) for _, label in pairs])
    print(f"{counts.sequences} labelled images: CER {counts.cer:.4f}, word accuracy {counts.word_accuracy:.4f}, "
          f"WER {counts.wer:.4f}")
    errors = sorted(((metrics.edit_distance(alphabet.split(p.text), alphabet.split(label)), p, label)
                     for p, label in pairs), key=lambda item: -item[0])
    worst = [item for item in errors if item[0] > 0][:WORST_SHOWN]
    if worst:
        print("worst predictions (edits, image, prediction, label):")
        for distance, prediction, label in worst:
            print(f"  {distance}  {prediction.source}  {prediction.text!r}  {label!r}")


if __name__ == "__main__":
    sys.exit(main())
