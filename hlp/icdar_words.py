"""Convert an ICDAR 2013 or 2015 word recognition set (its gt.txt) to a tf_crnn CSV file.

The data sets, from the Robust Reading Competition, https://rrc.cvc.uab.es/ (registration needed):
- ICDAR 2013, Challenge 2 "Focused Scene Text", Task 3 Word Recognition (?ch=2): D. Karatzas et
  al., "ICDAR 2013 Robust Reading Competition", ICDAR 2013. Archives
  Challenge2_Training_Task3_Images_GT.zip, Challenge2_Test_Task3_Images.zip and
  Challenge2_Test_Task3_GT.txt.
- ICDAR 2015, Challenge 4 "Incidental Scene Text", Task 3 Word Recognition (?ch=4): D. Karatzas et
  al., "ICDAR 2015 Competition on Robust Reading", ICDAR 2015. Archives
  ch4_training_word_images_gt.zip, ch4_test_word_images_gt.zip and Challenge4_Test_Task3_GT.txt.
Nothing is downloaded: point GT_FILE at the unpacked ground truth.

Layout expected: a ground-truth text file, UTF-8 (a byte order mark is allowed), one word image a
line, the file name, a comma, spaces, and the transcription in double quotes::

    word_1.png, "Tiredness"
    word_2.png, "kills"
    word_7.png, "\\"HOLIDAY"      (a quote inside: \\" or "" are both read as ")

and the word images beside it (the training archives: IMAGES/gt.txt) or in another folder given by
--images (the test sets, whose ground truth is a separate file). The label is what the quotes
enclose, with \\" and "" turned into "; nothing else is changed (other backslashes stay).

Output: the CSV file OUT, rows "word_1.png;Tiredness", image paths relative to OUT's folder.
Image files are not opened (`python -m hlp.csv_path_convertor OUT --check` lists missing ones).

    python -m hlp.icdar_words data/ic13/Challenge2_Training_Task3_Images_GT/gt.txt \\
        --output data/ic13_csv/train.csv
    python -m hlp.icdar_words data/ic15/Challenge4_Test_Task3_GT.txt \\
        --images data/ic15/ch4_test_word_images_gt --output data/ic15_csv/test.csv
"""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence

from hlp import dataset_csv

# The two escapes of a quote found in the releases: backslash-quote and a doubled quote.
QUOTE_ESCAPE = re.compile(r'\\"|""')


def parse_line(line: str) -> tuple[tuple[str, str] | None, str | None]:
    """((image name, label), None) for a ground-truth line, (None, its problem) otherwise."""
    name, comma, quoted = line.partition(",")
    quoted = quoted.strip(" \t")
    if not comma or not name.strip():
        return None, f"expected 'IMAGE, \"LABEL\"' ({line!r})"
    if len(quoted) < 2 or quoted[0] != '"' or quoted[-1] != '"':
        return None, f"label is not in double quotes ({line!r})"
    return (name.strip(), QUOTE_ESCAPE.sub('"', quoted[1:-1])), None


def convert(args, problems: dataset_csv.Problems) -> None:
    images = args.images or dataset_csv.folder_of(args.gt_file)
    dataset_csv.require_file(args.gt_file)
    with dataset_csv.CsvWriter(args.output, images, args.delimiter, problems) as writer:
        for number, line in dataset_csv.text_lines(args.gt_file, problems):
            if not line.strip():
                continue
            where = f"{args.gt_file}, line {number}"
            sample, problem = parse_line(line)
            if problem:
                problems.report(where, problem)
            else:
                writer.add(where, *sample)


def main(argv: Sequence[str] | None = None) -> int:
    parser = dataset_csv.build_parser("python -m hlp.icdar_words", __doc__)
    parser.add_argument(
        "gt_file", metavar="GT_FILE", help="The ground-truth file: gt.txt or Challenge*_GT.txt."
    )
    parser.add_argument(
        "--images",
        metavar="DIR",
        default=None,
        help="The folder with the word images. Default: GT_FILE's folder.",
    )
    parser.add_argument(
        "--output", "-o", required=True, metavar="OUT", help="The CSV file to write."
    )
    return dataset_csv.run(parser, convert, argv)


if __name__ == "__main__":
    sys.exit(main())
