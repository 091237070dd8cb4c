"""``python -m tf_crnn.evaluate``: a model's accuracy on test CSVs, raw and by the standard protocol
of scene-text recognition (Shi, Bai & Yao 2015, Table 2).

    python -m tf_crnn.evaluate runs/mine --csv IIIT5K=iiit5k/test.csv \\
        --per-image-lexicon 50=iiit5k/test_lexicon50.csv \\
        --per-image-lexicon 1k=iiit5k/test_lexicon1k.csv --json iiit5k.json

For each test set it prints the raw CER / WER / word accuracy (labels as written, unit by unit),
then a table of protocol word accuracies: prediction and label lower-cased and stripped to letters
and digits (rows whose label is then empty are left out and counted), lexicon-free ("None") and
with each lexicon, where the answer is the lexicon word of highest CTC probability among those
within ``--max-distance`` edits of the lexicon-free reading, or among all its words when the
lexicon has at most ``--score-all-up-to`` words or none is that close (``tf_crnn/lexicon.py``).

Lexicons:

- ``--lexicon [NAME=]FILE``: one word list for every image, one word per line (e.g. the 50k
  Hunspell words, or every word of a set's per-image lexicons: SVT's "Full").
- ``--per-image-lexicon [NAME=]FILE``: a side file of ``image_path;word1 word2 ...`` rows, one per
  image, words separated by spaces, image paths relative to the side file's folder (like a CSV's);
  the delimiter is the model's ``csv_delimiter``. It applies to the test sets whose images it lists
  (all of a set's images, or none). A side file rather than a third CSV column, so that the test
  CSV stays a training-format CSV (``--eval-csv`` reads it too).

A column is named NAME, else after its size as in the paper (``50``, ``1k``, ``50k``; a per-image
lexicon after its median size); a test set NAME, else after its file name.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field

import tensorflow as tf
from tqdm import tqdm

from tf_crnn import metrics
from tf_crnn.csv_rows import DataError, Row, read_csv_rows
from tf_crnn.lexicon import (
    PAPER_MAX_DISTANCE,
    LexiconDecoder,
    ProtocolClasses,
    normalize,
)
from tf_crnn.predict import (
    Prediction,
    Predictor,
    export_params,
    find_saved_model,
    report_accuracy,
)

# The lexicon-free column, named as in the paper's Table 2.
NO_LEXICON = "None"
# Lexicons of at most this many words are scored whole: as fast as a distance search at that
# size, and never misses the most probable word.
SCORE_ALL_UP_TO = 100


@dataclass(frozen=True)
class Named:
    """A path given as ``[NAME=]PATH`` on the command line."""

    name: str | None
    path: str

    @classmethod
    def parse(cls, text: str) -> Named:
        """``NAME=PATH``, unless what precedes the first ``=`` looks like part of a path."""
        name, equals, path = text.partition("=")
        if equals and name and path and not any(c in name for c in "/\\:"):
            return cls(name, path)
        return cls(None, text)


@dataclass
class Lexicon:
    """One lexicon column: a word list for every image, or a word list per image path."""

    name: str
    path: str
    words: list[str] | None = None  # a global word list
    by_image: dict[str, list[str]] | None = None  # per-image lexicons, by path_key

    def covers(self, rows: Sequence[Row]) -> bool:
        """Whether this lexicon applies to a test set: a word list always; a side file when it
        lists every image of the set (:class:`DataError` when it lists only some)."""
        if self.by_image is None:
            return True
        missing = [row for row in rows if path_key(row.image_path) not in self.by_image]
        if len(missing) == len(rows):
            return False
        if missing:
            row = missing[0]
            raise DataError(
                f"{self.path} has no lexicon for {row.where} ({row.image_path}); it has lexicons "
                f"for {len(rows) - len(missing)} of that file's {len(rows)} images"
            )
        return True


@dataclass
class LexiconScore:
    """How a test set fared with one lexicon."""

    correct: int = 0
    fallbacks: int = 0  # images with no word within the distance: the whole lexicon was scored
    unscorable: set[str] = field(default_factory=set)  # words with characters the model lacks


@dataclass
class SetResult:
    """One test set's raw counts and protocol word accuracies."""

    name: str
    csv: str
    images: int
    unreadable: int  # counted as wrong readings
    left_out: int  # labels empty once normalised: not part of the protocol's figures
    raw: metrics.ErrorCounts
    lexicon_free: int  # correct protocol readings without a lexicon
    lexicons: dict[str, LexiconScore]  # the lexicons that apply to this set

    @property
    def evaluated(self) -> int:
        return self.images - self.left_out

    def accuracy(self, column: str) -> float | None:
        """Protocol word accuracy in column ``column``; None where the lexicon does not apply."""
        if column == NO_LEXICON:
            correct = self.lexicon_free
        elif column in self.lexicons:
            correct = self.lexicons[column].correct
        else:
            return None
        return correct / self.evaluated if self.evaluated else 0.0


def path_key(path: str) -> str:
    """``path`` spelled one way, so a CSV's and a side file's rows for one image match."""
    return path if "://" in path else os.path.normpath(path)


def size_name(count: int) -> str:
    """A lexicon size as the paper writes it: 50, 1k, 50k."""
    return str(count) if count < 1000 else f"{round(count / 1000)}k"


def read_text(path: str, what: str) -> str:
    if not tf.io.gfile.exists(path):
        raise DataError(f"{path}: {what} not found")
    with tf.io.gfile.GFile(path, "rb") as f:
        content = f.read()
    try:
        return content.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise DataError(f"{path}: not valid UTF-8 (byte {error.start})") from None


def read_word_list(named: Named) -> Lexicon:
    """A word list file: one word per line, blank lines ignored."""
    words = [line.strip() for line in read_text(named.path, "lexicon").splitlines()]
    words = [word for word in words if word]
    if not words:
        raise DataError(f"{named.path}: the lexicon has no words")
    return Lexicon(named.name or size_name(len(words)), named.path, words=words)


def read_per_image_lexicons(named: Named, delimiter: str) -> Lexicon:
    """A side file of ``image_path<delimiter>word1 word2 ...`` rows."""
    by_image: dict[str, list[str]] = {}
    first_row: dict[str, int] = {}
    for row in read_csv_rows(named.path, delimiter, labels_optional=True).strict():
        key = path_key(row.image_path)
        if not row.label.split():
            raise DataError(f"{row.where}: no lexicon words for {row.image_path}")
        if key in by_image:
            raise DataError(
                f"{row.where}: {row.image_path} already has a lexicon (row {first_row[key]})"
            )
        by_image[key], first_row[key] = row.label.split(), row.line_number
    if not by_image:
        raise DataError(f"{named.path}: no per-image lexicons")
    median = statistics.median_low(len(words) for words in by_image.values())
    return Lexicon(named.name or size_name(median), named.path, by_image=by_image)


def unique_names(names: Sequence[str], what: str) -> None:
    seen = set()
    for name in names:
        if name in seen:
            raise DataError(f"two {what} are named {name!r}: name them with NAME=PATH")
        seen.add(name)


class Evaluation:
    """A model and lexicons, applied to test sets.

    Args:
        predictor: the model; it must keep frame log-probabilities when there are lexicons.
        lexicons: the lexicon columns, in order.
        max_distance: the paper's δ: lexicon words within this many edits of the reading are
            scored.
        score_all_up_to: lexicons of at most this many words are scored whole.
    """

    def __init__(
        self,
        predictor: Predictor,
        lexicons: Sequence[Lexicon] = (),
        max_distance: int = PAPER_MAX_DISTANCE,
        score_all_up_to: int = SCORE_ALL_UP_TO,
    ):
        self.predictor = predictor
        self.lexicons = list(lexicons)
        self.classes = ProtocolClasses(predictor.alphabet)
        self._settings = {"max_distance": max_distance, "score_all_up_to": score_all_up_to}
        # A word list serves every image: index it once.
        self._shared = {
            lexicon.name: LexiconDecoder(lexicon.words, self.classes, **self._settings)
            for lexicon in self.lexicons
            if lexicon.words is not None
        }

    def decoder(self, lexicon: Lexicon, image_path: str) -> LexiconDecoder:
        if lexicon.name in self._shared:
            return self._shared[lexicon.name]
        words = lexicon.by_image[path_key(image_path)]
        # Searched once: a scan costs less than building a BK-tree.
        return LexiconDecoder(words, self.classes, use_bk_tree=False, **self._settings)

    def run(self, name: str, csv_file: str, rows: Sequence[Row]) -> SetResult:
        """Reads every image of a test set, prints its raw accuracy, and scores its readings
        lexicon-free and with each lexicon that applies.

        Images go through the model one batch at a time, and each batch's frame probabilities are
        dropped once its lexicon words are chosen, so memory does not grow with the set. An image
        that cannot be read is named on stderr and counts as an empty (wrong) reading, in the raw
        figures as in the protocol's.
        """
        applicable = [lexicon for lexicon in self.lexicons if lexicon.covers(rows)]
        scores = {lexicon.name: LexiconScore() for lexicon in applicable}
        chosen: dict[str, list[str]] = {lexicon.name: [] for lexicon in applicable}
        readings: list[Prediction] = []
        batch_size = self.predictor.batch_size
        with tqdm(total=len(rows), unit="image", desc=name) as bar:
            for start in range(0, len(rows), batch_size):
                batch = rows[start : start + batch_size]
                paths = [row.image_path for row in batch]
                for path, reading in zip(paths, self.predictor.predict_files(paths)):
                    for lexicon in applicable:
                        decoder = self.decoder(lexicon, path)
                        scores[lexicon.name].unscorable.update(decoder.unscorable)
                        word = ""
                        if not reading.error:
                            choice = decoder.decode(reading.text, reading.frame_log_probs)
                            word = choice.word
                            scores[lexicon.name].fallbacks += choice.fell_back
                        chosen[lexicon.name].append(word)
                    reading.frame_log_probs = None
                    readings.append(reading)
                bar.update(len(batch))

        for reading in readings:
            if reading.error:
                print(f"{reading.source}: {reading.error}", file=sys.stderr)
        labels = [row.label for row in rows]
        print(f"{name} ({csv_file}):")
        raw = report_accuracy(
            self.predictor.alphabet,
            [Prediction(r.source) if r.error else r for r in readings],
            labels,
        )
        truths = [normalize(label) for label in labels]
        kept = [i for i, truth in enumerate(truths) if truth]
        for lexicon_name, words in chosen.items():
            scores[lexicon_name].correct = sum(words[i] == truths[i] for i in kept)
        return SetResult(
            name=name,
            csv=csv_file,
            images=len(rows),
            unreadable=sum(bool(r.error) for r in readings),
            left_out=len(rows) - len(kept),
            raw=raw,
            lexicon_free=sum(normalize(readings[i].text) == truths[i] for i in kept),
            lexicons=scores,
        )


def columns(lexicons: Sequence[Lexicon]) -> list[str]:
    """The table's columns: the lexicons in command-line order, then the lexicon-free one, as in
    the paper."""
    return [lexicon.name for lexicon in lexicons] + [NO_LEXICON]


def notes(result: SetResult, max_distance: int) -> list[str]:
    """What a reader of the table must know about one test set's numbers."""
    lines = []
    if result.unreadable:
        lines.append(f"unreadable images, counted as wrong readings: {result.unreadable}")
    if result.left_out:
        lines.append(
            f"rows left out of the protocol (no letter or digit in the label): "
            f"{result.left_out} of {result.images}"
        )
    for name, score in result.lexicons.items():
        if score.fallbacks:
            lines.append(
                f"lexicon {name}: images with no word within {max_distance} edits of their "
                f"reading, which were scored against the whole lexicon: {score.fallbacks}"
            )
        if score.unscorable:
            examples = ", ".join(repr(word) for word in sorted(score.unscorable)[:5])
            lines.append(
                f"lexicon {name}: words with characters the model does not read, never chosen: "
                f"{len(score.unscorable)} (e.g. {examples})"
            )
    return lines


def format_table(results: Sequence[SetResult], column_names: Sequence[str]) -> str:
    """Protocol word accuracies in %, one row per test set, laid out like the paper's Table 2
    ("-" where a lexicon does not apply)."""
    header = ["test set", "images", "left out", *column_names]
    rows = [
        [
            result.name,
            str(result.images),
            str(result.left_out),
            *(
                "-" if accuracy is None else f"{100 * accuracy:.1f}"
                for accuracy in map(result.accuracy, column_names)
            ),
        ]
        for result in results
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(cells):
        first = cells[0].ljust(widths[0])
        return "  ".join([first, *(cell.rjust(w) for cell, w in zip(cells[1:], widths[1:]))])

    return "\n".join(line(cells) for cells in [header, *rows])


def to_json(
    results: Sequence[SetResult], column_names: Sequence[str], model: str, settings: dict
) -> dict:
    """The report for scripts: fractions, not percentages."""
    return {
        "model": model,
        "protocol": {"case_insensitive": True, "letters_and_digits_only": True, **settings},
        "columns": list(column_names),
        "sets": [
            {
                "name": result.name,
                "csv": result.csv,
                "images": result.images,
                "unreadable": result.unreadable,
                "left_out": result.left_out,
                "cer": result.raw.cer,
                "wer": result.raw.wer,
                "word_accuracy": result.raw.word_accuracy,
                "protocol_word_accuracy": {c: result.accuracy(c) for c in column_names},
                "lexicons": {
                    name: {
                        "correct": score.correct,
                        "fallbacks": score.fallbacks,
                        "unscorable_words": len(score.unscorable),
                    }
                    for name, score in result.lexicons.items()
                },
            }
            for result in results
        ],
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tf_crnn.evaluate",
        description=__doc__.split("\n\n")[0],
        epilog="\n\n".join(__doc__.split("\n\n")[2:]),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("model", help="SavedModel folder, or a job directory (its newest export).")
    parser.add_argument(
        "--csv", action="append", required=True, type=Named.parse, metavar="[NAME=]CSV",
        help="A test set of 'image_path;label' rows; repeat for several (one table row each).",
    )  # fmt: skip
    parser.add_argument(
        "--lexicon", action="append", dest="lexicons", default=[], metavar="[NAME=]FILE",
        type=lambda text: ("words", Named.parse(text)),
        help="A word list (one word per line) for every image: one table column.",
    )  # fmt: skip
    parser.add_argument(
        "--per-image-lexicon", action="append", dest="lexicons", metavar="[NAME=]FILE",
        type=lambda text: ("per_image", Named.parse(text)),
        help="A side file of 'image_path;word1 word2 ...' rows: one table column.",
    )  # fmt: skip
    parser.add_argument(
        "--max-distance", type=int, default=PAPER_MAX_DISTANCE, metavar="DELTA",
        help="Score the lexicon words within this many edits of the lexicon-free reading "
        "(the paper's delta). Default: %(default)s.",
    )  # fmt: skip
    parser.add_argument(
        "--score-all-up-to", type=int, default=SCORE_ALL_UP_TO, metavar="WORDS",
        help="Score every word of lexicons this small (0: always search within the distance, "
        "as the paper). Default: %(default)s.",
    )  # fmt: skip
    parser.add_argument(
        "--batch-size", type=int, default=None,
        help="Images per model call (default: the model's eval_batch_size setting).",
    )  # fmt: skip
    parser.add_argument("--json", metavar="FILE", help="Also write the results to this JSON file.")
    args = parser.parse_args(argv)
    if args.max_distance < 0 or args.score_all_up_to < 0:
        parser.error("--max-distance and --score-all-up-to cannot be negative")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:  # every input is read and checked before the model is loaded
        model_path = find_saved_model(args.model)
        delimiter = export_params(model_path).csv_delimiter
        test_sets = [
            (named.name or os.path.splitext(os.path.basename(named.path))[0], named.path)
            for named in args.csv
        ]
        unique_names([name for name, _ in test_sets], "test sets")
        rows = {path: read_csv_rows(path, delimiter).strict() for _, path in test_sets}
        for path, set_rows in rows.items():
            if not set_rows:
                raise DataError(f"{path}: no rows to evaluate")
        lexicons = [
            read_word_list(named) if kind == "words" else read_per_image_lexicons(named, delimiter)
            for kind, named in args.lexicons
        ]
        unique_names([lexicon.name for lexicon in lexicons] + [NO_LEXICON], "lexicons")
        for lexicon in lexicons:
            if not any([lexicon.covers(rows[path]) for _, path in test_sets]):
                raise DataError(
                    f"{lexicon.path} lists no image of the test sets (e.g. it lists "
                    f"{next(iter(lexicon.by_image))}): are its paths relative to its own folder?"
                )
        predictor = Predictor(
            model_path, batch_size=args.batch_size, keep_frame_log_probs=bool(lexicons)
        )
    except (FileNotFoundError, ValueError) as error:  # DataError is a ValueError
        print(f"error: {error}", file=sys.stderr)
        return 2

    settings = {"max_distance": args.max_distance, "score_all_up_to": args.score_all_up_to}
    evaluation = Evaluation(predictor, lexicons, **settings)
    results = []
    for name, path in test_sets:
        result = evaluation.run(name, path, rows[path])
        for note in notes(result, args.max_distance):
            print(f"  {note}")
        results.append(result)

    column_names = columns(lexicons)
    print(
        "\nword accuracy (%), case-insensitive, letters and digits only (Shi, Bai & Yao 2015);\n"
        f"with a lexicon: its most probable word (CTC) among those within {args.max_distance} "
        f"edits of the reading\n(among all its words if it has at most {args.score_all_up_to})"
    )
    print(format_table(results, column_names))
    if args.json:
        report = to_json(results, column_names, predictor.path, settings)
        with tf.io.gfile.GFile(args.json, "w") as f:
            f.write(json.dumps(report, indent=1) + "\n")
        print(f"wrote {args.json}")
    return 1 if any(result.unreadable for result in results) else 0


if __name__ == "__main__":
    sys.exit(main())
