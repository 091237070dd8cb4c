"""Convert the text lines of the IAM Handwriting Database to a tf_crnn CSV file.

The data set: U.-V. Marti, H. Bunke, "The IAM-database: an English sentence database for offline
handwriting recognition", International Journal on Document Analysis and Recognition 5, 39-46,
2002; https://fki.tic.heia-fr.ch/databases/iam-handwriting-database (registration needed; files
ascii.tgz and lines.tgz). 13,353 handwritten English text lines by 657 writers. Nothing is
downloaded: point ROOT at the folder the two archives were unpacked into.

Layout expected::

    ROOT/ascii/lines.txt    '#' comment lines, then one line per text line:
                            a01-000u-00 ok 154 19 408 746 1661 89 A|MOVE|to|stop|Mr.|Gaitskell|from
                            (line id, word segmentation result ok/err, grey level, number of
                            components, bounding box x y w h, transcription with '|' between
                            words)
    ROOT/lines/a01/a01-000u/a01-000u-00.png ...

Label: the transcription with each '|' turned into a space ("A MOVE to stop Mr. Gaitskell from");
punctuation stays the separate token IAM makes it ("said , and"). Everything else is kept as
written.

Lines flagged 'err' are kept unless --drop-err is given: the flag is the outcome of IAM's
automatic segmentation of the line into words, and the header of lines.txt notes that a line
that could not be segmented properly still has a correct line image and transcription, which is
all a line recognizer uses. Splits come as files of line ids, such as the trainset.txt,
validationset1.txt, validationset2.txt and testset.txt of IAM's "Large Writer Independent Text
Line Recognition Task": --ids takes one and converts the lines it lists only (an id it lists that
lines.txt lacks is reported).

Output: the CSV file OUT, rows "lines/a01/a01-000u/a01-000u-00.png;A MOVE to stop Mr. Gaitskell
from", image paths relative to OUT's folder. Image files are not opened
(`python -m hlp.csv_path_convertor OUT --check` lists missing ones).

    python -m hlp.iam_lines data/iam --ids data/iam/trainset.txt --output data/iam_csv/train.csv
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from hlp import dataset_csv
from tf_crnn.demo import join_path

FIELDS = 9  # id, ok/err, grey level, components, x, y, w, h, transcription
SEGMENTATION_RESULTS = ("ok", "err")


def read_ids(path: str, problems: dataset_csv.Problems) -> dict[str, int]:
    """The line ids listed in ``path`` (one a line, blank lines ignored) and their line numbers."""
    return {
        line.strip(): number
        for number, line in dataset_csv.text_lines(path, problems)
        if line.strip()
    }


def image_path(line_id: str) -> str | None:
    """lines/a01/a01-000u/a01-000u-00.png for the line id a01-000u-00; None for a malformed id."""
    parts = line_id.split("-")
    if len(parts) != 3 or not all(parts):
        return None
    return f"lines/{parts[0]}/{parts[0]}-{parts[1]}/{line_id}.png"


def parse_line(line: str) -> tuple[tuple[str, str, str] | None, str | None]:
    """((line id, segmentation result, label), None), or (None, its problem)."""
    fields = line.split(" ")
    if len(fields) != FIELDS:
        return None, f"expected {FIELDS} fields separated by single spaces, found {len(fields)}"
    line_id, result, transcription = fields[0], fields[1], fields[-1]
    if result not in SEGMENTATION_RESULTS:
        return None, f"segmentation result is neither 'ok' nor 'err' ({result!r})"
    if image_path(line_id) is None:
        return None, f"line id is not FORM-PART-LINE ({line_id!r})"
    return (line_id, result, transcription.replace("|", " ")), None


def convert(args, problems: dataset_csv.Problems) -> None:
    lines_txt = join_path(args.root, "ascii", "lines.txt")
    dataset_csv.require_file(lines_txt)
    wanted = read_ids(args.ids, problems) if args.ids else None
    dropped = 0
    with dataset_csv.CsvWriter(args.output, args.root, args.delimiter, problems) as writer:
        for number, line in dataset_csv.text_lines(lines_txt, problems):
            if not line.strip() or line.startswith("#"):
                continue
            where = f"{lines_txt}, line {number}"
            sample, problem = parse_line(line)
            if problem:
                problems.report(where, problem)
                continue
            line_id, result, label = sample
            if wanted is not None and wanted.pop(line_id, None) is None:
                continue
            if result == "err" and args.drop_err:
                dropped += 1
            else:
                writer.add(where, image_path(line_id), label)
    if args.drop_err:
        print(f"{dropped} line(s) flagged 'err' left out (--drop-err)")
    for line_id, number in (wanted or {}).items():
        problems.report(f"{args.ids}, line {number}", f"line id not in {lines_txt} ({line_id})")


def main(argv: Sequence[str] | None = None) -> int:
    parser = dataset_csv.build_parser("python -m hlp.iam_lines", __doc__)
    parser.add_argument(
        "root", metavar="ROOT", help="The IAM folder with ascii/lines.txt and lines/."
    )
    parser.add_argument(
        "--output", "-o", required=True, metavar="OUT", help="The CSV file to write."
    )
    parser.add_argument(
        "--ids",
        metavar="FILE",
        default=None,
        help="Convert only the lines whose ids this file lists, one a line (a split such as "
        "trainset.txt). Default: every line of lines.txt.",
    )
    parser.add_argument(
        "--drop-err",
        action="store_true",
        help="Leave out the lines whose word segmentation is flagged 'err' (kept by default: "
        "the flag does not concern the line's image or transcription).",
    )
    return dataset_csv.run(parser, convert, argv)


if __name__ == "__main__":
    sys.exit(main())
