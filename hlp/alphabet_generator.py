"""Build a tf_crnn alphabet lookup JSON from the labels of one or more CSV files.

Why: with ``alphabet='auto'`` tf_crnn collects the alphabet from the training CSV at every run.
A fixed file is better when the alphabet must not change between runs (fine-tuning, adding data,
serving an exported model), when it should also cover units that only occur in the evaluation CSV,
or when you want to look at the units before training: a stray character in one label shows up here.

The file is tf-crnn's ``{"unit": code}`` lookup JSON (codes 0..N-1, units sorted by code point,
UTF-8), written by ``tf_crnn.alphabet.Alphabet.to_lookup_json``. Use it with the setting
``lookup_alphabet_file=<the file>``. Units are split exactly as training splits labels: one
Unicode character each, or the pieces between ``--split-delimiter`` (for multi-character units).
The JSON does not store ``--split-delimiter`` or ``--case-fold``: train with the same
``string_split_delimiter`` and ``alphabet_case_fold``.

Rows are read with tf_crnn's own CSV reader, so a malformed row stops with its file and row number.
Prints the number of units and the units (as a JSON list, so spaces are visible).
"""

from __future__ import annotations

import argparse
import json
import os
import posixpath
import sys
from collections.abc import Sequence

from hlp import HelpFormatter


def folder_to_create(path: str) -> str:
    """The folder of the file ``path`` that must exist before writing it, or "" when there is none.

    A local path gives its folder. A URL (gs://bucket/a/b.json) gives its folder below the bucket;
    a file right under the bucket (gs://bucket/b.json) or under the scheme (ram://b.json) gives "":
    gfile cannot create a bucket, and ``makedirs`` of "gs:" would create a local folder "gs:".
    """
    if "://" not in path:
        return os.path.dirname(path)
    scheme, rest = path.split("://", 1)
    parent = posixpath.dirname(rest).strip("/")
    return f"{scheme}://{parent}" if "/" in parent else ""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m hlp.alphabet_generator", description=__doc__, formatter_class=HelpFormatter
    )
    parser.add_argument(
        "csv_files",
        nargs="+",
        metavar="CSV",
        help="CSV files whose labels make up the alphabet (rows 'image_path<delimiter>label').",
    )
    parser.add_argument(
        "--output",
        "-o",
        required=True,
        metavar="JSON",
        help="The lookup JSON file to write (its folder is created if needed).",
    )
    parser.add_argument(
        "--delimiter",
        default=";",
        metavar="CHAR",
        help="Delimiter between image path and label in the CSV files (one character, as "
        "tf_crnn's csv_delimiter).",
    )
    parser.add_argument(
        "--split-delimiter",
        default="",
        metavar="TEXT",
        help="Split labels on this string into units (tf-crnn used '|'), so that a unit may have "
        "several characters; empty = every Unicode character is a unit. Same as tf_crnn's "
        "string_split_delimiter.",
    )
    parser.add_argument(
        "--case-fold",
        action="store_true",
        help="Lower-case the labels first, so that 'A' and 'a' are one unit. Same as tf_crnn's "
        "alphabet_case_fold.",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)

    import tensorflow as tf  # after argument parsing, so --help is fast

    from tf_crnn.alphabet import Alphabet, AlphabetError, read_labels
    from tf_crnn.config import Params, ParamsError
    from tf_crnn.csv_rows import DataError

    try:
        params = Params().with_overrides(
            {
                "csv_delimiter": args.delimiter,
                "string_split_delimiter": args.split_delimiter,
                "alphabet_case_fold": args.case_fold,
            },
            source="the command line",
        )
    except ParamsError as error:
        parser.error(str(error))
    try:
        labels = read_labels(args.csv_files, params)
        if not labels:
            raise DataError(f"{', '.join(args.csv_files)}: no labels found")
        alphabet = Alphabet.from_labels(
            labels, params.string_split_delimiter, params.alphabet_case_fold
        )
    except (DataError, AlphabetError) as error:
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        return 2

    folder = folder_to_create(args.output)
    if folder:
        tf.io.gfile.makedirs(folder)
    alphabet.to_lookup_json(args.output)
    print(
        f"{len(alphabet)} units from {len(labels)} labels in {len(args.csv_files)} file(s) "
        f"-> {args.output}"
    )
    print(json.dumps(alphabet.units, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
