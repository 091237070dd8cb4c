"""Rewrite the relative image paths of a tf_crnn CSV as absolute paths, or check that every image
exists.

Why: tf_crnn resolves a relative image path against the folder of the CSV file that lists it. A CSV
that is copied elsewhere, concatenated with CSVs from other folders, or read by a tool that
resolves paths against the working directory then points at the wrong files. This helper writes a
copy whose paths are absolute, resolved exactly as training would resolve them
(``tf_crnn.csv_rows.resolve_image_path``), so the copy works from any folder.

Only the image path of each row changes. Everything else is kept byte for byte: the delimiter, the
label (its spacing, Unicode and any odd bytes), the line endings (LF or CRLF), a UTF-8 byte order
mark, blank lines, and whether the file ends with a newline. Paths that are already absolute (or
URLs such as gs://...) are left exactly as written.

Rows are parsed by ``tf_crnn.csv_rows.read_csv_rows``, so a malformed row (no delimiter, two
delimiters, empty path or label, invalid UTF-8) stops the conversion with its file and row number.

``--check`` writes nothing: it lists every row whose image file does not exist (and every
malformed row), as ``FILE, row N: PATH not found``, and exits with status 1 if there is any, 0 if
all images are present.

Exit status: 0 done / all found, 1 --check found problems, 2 bad arguments or unreadable CSV.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from hlp import HelpFormatter

BOM = b"\xef\xbb\xbf"


def convert(content: bytes, rows, delimiter: str) -> tuple[bytes, int]:
    """``content`` with the image path of each of ``rows`` (from read_csv_rows) replaced by its
    resolved path, and how many paths changed.

    Lines are numbered like read_csv_rows numbers them (split on LF, 1-based), so each Row's
    ``line_number`` addresses its raw line. Each line is split at its first delimiter only; the
    delimiter, the label bytes and the line ending are copied unchanged.
    """
    resolved = {row.line_number: row.image_path for row in rows}
    separator = delimiter.encode("utf-8")
    lines = content.split(b"\n")
    changed = 0
    for index, line in enumerate(lines):
        number = index + 1
        if number not in resolved:
            continue  # blank line (not a row)
        prefix = BOM if number == 1 and line.startswith(BOM) else b""
        path_bytes, sep, rest = line[len(prefix) :].partition(separator)
        path = resolved[number]
        if path_bytes.decode("utf-8").strip() == path:
            continue  # already absolute: keep it exactly as written
        lines[index] = prefix + path.encode("utf-8") + sep + rest
        changed += 1
    return b"\n".join(lines), changed


def default_output(input_csv: str) -> str:
    """``<folder>/<stem>_abs.csv`` beside ``input_csv`` (the extension kept if it is not .csv)."""
    stem, extension = os.path.splitext(input_csv)
    return f"{stem}_abs{extension or '.csv'}"


def check(input_csv: str, delimiter: str, out) -> int:
    """Reports missing images and malformed rows to ``out``; returns the number of problems."""
    import tensorflow as tf

    from tf_crnn.csv_rows import read_csv_rows

    content = read_csv_rows(input_csv, delimiter)
    rows = content.rows
    missing = [row for row in rows if not tf.io.gfile.exists(row.image_path)]
    messages = [(row.line_number, f"{row.where}: {row.image_path} not found") for row in missing]
    messages += [(bad.line_number, f"{bad.where}: {bad.problem}") for bad in content.bad_rows]
    for _, message in sorted(messages):
        print(message, file=out)
    missing, bad = len(missing), len(content.bad_rows)
    if messages:
        print(
            f"{input_csv}: {missing} of {len(rows)} image file(s) not found"
            + (f", {bad} malformed row(s)" if bad else ""),
            file=out,
        )
    else:
        print(f"{input_csv}: all {len(rows)} image file(s) found", file=out)
    return len(messages)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m hlp.csv_path_convertor", description=__doc__, formatter_class=HelpFormatter
    )
    parser.add_argument(
        "input_csv",
        metavar="INPUT_CSV",
        help="The CSV file to convert or check (rows 'image_path<delimiter>label', no header).",
    )
    parser.add_argument(
        "--output",
        "-o",
        metavar="OUT",
        default=None,
        help="Where to write the converted CSV; '-' writes it to standard output. "
        "Default: <input stem>_abs.csv beside INPUT_CSV (never the input itself).",
    )
    parser.add_argument(
        "--delimiter",
        default=";",
        metavar="CHAR",
        help="Delimiter between image path and label (one character, as tf_crnn's csv_delimiter).",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="Write nothing; list every row whose image file is missing (and every malformed "
        "row) with its row number, and exit with status 1 if there is any, 0 otherwise.",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if len(args.delimiter) != 1 or args.delimiter in "\r\n":
        parser.error(
            f"--delimiter must be one character other than a line break (got {args.delimiter!r})"
        )
    if args.check and args.output is not None:
        parser.error("--check writes nothing: leave out --output")

    import tensorflow as tf  # after argument checks, so --help and usage errors are fast

    from tf_crnn.csv_rows import DataError, read_csv_rows

    try:
        if args.check:
            return 1 if check(args.input_csv, args.delimiter, sys.stdout) else 0
        rows = read_csv_rows(args.input_csv, args.delimiter).strict()
        with tf.io.gfile.GFile(args.input_csv, "rb") as f:
            content = f.read()
    except DataError as error:
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        return 2
    converted, changed = convert(content, rows, args.delimiter)

    if args.output == "-":
        sys.stdout.flush()
        sys.stdout.buffer.write(converted)
        sys.stdout.buffer.flush()
        return 0
    output = args.output or default_output(args.input_csv)
    with tf.io.gfile.GFile(output, "wb") as f:
        f.write(converted)
    print(
        f"{args.input_csv}: {len(rows)} row(s) written to {output}, "
        f"{changed} relative path(s) made absolute"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
