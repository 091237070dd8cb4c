"""CSV files as people and tools really write them, read by ``csv_rows.read_csv_rows``.

Quotes, delimiters inside labels, very long lines, NUL bytes, byte order marks, mixed line endings
(LF, CRLF, a lone CR) and text that is not UTF-8: each row is either read exactly as written, or
reported as malformed with its file, its row and the problem. First named cases with their exact
rows, then random files built from the same pieces (seeded: a failure reproduces), where every
clean row must come out exactly and every other one must be accounted for.
"""

import os

import numpy as np
import pytest
from helpers import tiny_params

from tf_crnn.checks import check_csv_files
from tf_crnn.csv_rows import BadRow, DataError, Row, read_csv_rows, resolve_image_path

SEED = 7
# BadRow.kind of every problem read_csv_rows reports.
KINDS = {
    "NUL byte in the row",
    "carriage return inside the row",
    "byte order mark at the start of the row",
    "not valid UTF-8",
    "no ';' delimiter between image path and label",
    "3 fields where 2 are expected",
    "4 fields where 2 are expected",
    "empty image path",
    "empty label",
}


def read(tmp_path, content: bytes, delimiter=";"):
    """[(line number, image path as written, label)] of the good rows and [(line number, kind)] of
    the bad ones."""
    csv = tmp_path / "data.csv"
    csv.write_bytes(content)
    rows = read_csv_rows(str(csv), delimiter)
    folder = str(tmp_path) + os.sep
    good = [(row.line_number, row.image_path.removeprefix(folder), row.label) for row in rows.rows]
    return good, [(bad.line_number, bad.kind) for bad in rows.bad_rows]


# (what, content, delimiter, good rows, bad rows)
CASES = [
    (
        "quotes are characters of the label and the path (tf_crnn does not unquote)",
        b'a.png;He said "hi"\n"b.png";"x"\n',
        ";",
        [(1, "a.png", 'He said "hi"'), (2, '"b.png"', '"x"')],
        [],
    ),
    (
        "a label holding the delimiter is refused",
        b"a.png;x;y\nb.png;x;y;z\nc.png;ok\n",
        ";",
        [(3, "c.png", "ok")],
        [(1, "3 fields where 2 are expected"), (2, "4 fields where 2 are expected")],
    ),
    (
        "with a tab delimiter, a label may hold ';' and spaces",
        b"a.png\tx;y z\n",
        "\t",
        [(1, "a.png", "x;y z")],
        [],
    ),
    (
        "a NUL in the path is refused (TensorFlow would read the file named before it)",
        b"a.png\0.jpg;x\nb.png;y\0\nc.png;z\n",
        ";",
        [(3, "c.png", "z")],
        [(1, "NUL byte in the row"), (2, "NUL byte in the row")],
    ),
    (
        "a UTF-16 file: every line holds NULs",
        "a.png;x\nb.png;y\n".encode("utf-16"),
        ";",
        [],
        [(1, "NUL byte in the row"), (2, "NUL byte in the row"), (3, "NUL byte in the row")],
    ),
    (
        "a byte order mark is skipped on the first line, even alone, and refused on a later one",
        b"\xef\xbb\xbf\na.png;x\n\xef\xbb\xbfb.png;y\n",
        ";",
        [(2, "a.png", "x")],
        [(3, "byte order mark at the start of the row")],
    ),
    (
        "LF, CRLF and CRCRLF end lines; a lone CR inside a line is refused",
        b"a.png;x\nb.png;y\r\nc.png;z\rd.png;w\ne.png;v\r\r\nf.png;u",
        ";",
        [(1, "a.png", "x"), (2, "b.png", "y"), (4, "e.png", "v"), (5, "f.png", "u")],
        [(3, "carriage return inside the row")],
    ),
    (
        "a file whose lines end with CR alone is one line, refused",
        b"a.png;x\rb.png;y\rc.png;z\r",
        ";",
        [],
        [(1, "carriage return inside the row")],
    ),
    (
        "text that is not UTF-8 is refused, row by row",
        b"a.png;caf\xe9\nb.png;\x93hi\x94\nc.png;\xc0\xaf\nd.png;\xed\xa0\x80\ne.png;\xe2\x82\n"
        + "f.png;café €\n".encode(),
        ";",
        [(6, "f.png", "café €")],
        [(line, "not valid UTF-8") for line in range(1, 6)],
    ),
    (
        "blank lines are not rows; spaces around the path go, the label keeps them",
        b"\n   \n\r\n\t\n  a.png  ; x \n   ;x\nb.png;\n",
        ";",
        [(5, "a.png", " x ")],
        [(6, "empty image path"), (7, "empty label")],
    ),
    ("an empty file", b"", ";", [], []),
    ("a file of a byte order mark", b"\xef\xbb\xbf", ";", [], []),
    (
        "Unicode line and paragraph separators are characters of the label",
        "a.png;x\u2028y\u2029z\x85\n".encode(),
        ";",
        [(1, "a.png", "x\u2028y\u2029z\x85")],
        [],
    ),
]


@pytest.mark.parametrize(
    "content, delimiter, good, bad", [case[1:] for case in CASES], ids=[case[0] for case in CASES]
)
def test_each_row_is_read_as_written_or_named_as_malformed(tmp_path, content, delimiter, good, bad):
    assert read(tmp_path, content, delimiter) == (good, bad)


def test_very_long_lines_are_read_whole(tmp_path):
    label = "ab " * 1_000_000
    path = "deep/" * 2000 + "a.png"
    content = f"{path};{label}\nb.png;{'é' * 500_000}\n".encode()
    assert read(tmp_path, content) == (
        [(1, path.replace("/", os.sep), label), (2, "b.png", "é" * 500_000)],
        [],
    )


def test_the_start_up_check_names_the_file_row_and_problem(tmp_path):
    csv = tmp_path / "data.csv"
    csv.write_bytes(b"a.png;x\rb.png;y\n")
    with pytest.raises(DataError) as error:
        check_csv_files(str(csv), tiny_params())
    assert str(error.value).startswith(f"{csv}, row 1: carriage return inside the row (byte 7;")


# --- random files --------------------------------------------------------------------------------
CLEAN_PIECES = [
    "a",
    "Zz",
    "42",
    " ",
    "  ",
    '"',
    "'",
    "é",
    "北京",
    "😀",
    "|",
    "\t",
    ",",
    "\\",
    "\u200b",
]
# Each makes the row malformed wherever it is.
DIRTY_PIECES = [b"\0", b"\r", b"\xe9", b"\x80", b"\xff\xfe", b";"]
ENDINGS = [b"\n", b"\r\n", b"\r\r\n"]
BLANK_LINES = [b"\n", b"  \n", b"\r\n", b"\t\r\r\n"]


def random_file(rng):
    """(content, {line number: (path, label)} of the rows that must be read exactly)."""

    def text(pieces):
        return "".join(rng.choice(pieces) for _ in range(rng.integers(1, 8)))

    content, clean, line, continued = b"", {}, 1, False
    if rng.random() < 0.2:
        content += b"\xef\xbb\xbf"
    for _ in range(rng.integers(1, 30)):
        if not continued and rng.random() < 0.1:
            content += BLANK_LINES[rng.integers(len(BLANK_LINES))]
            line += 1
        path = f"dir{rng.integers(3)}/{text(['x', 'y', '_', ' ', 'é', '1'])}.png"
        label = text(CLEAN_PIECES)
        row = f"{path};{label}".encode()
        dirty = rng.random() < 0.3
        if dirty:
            where = rng.integers(len(row) + 1)
            row = row[:where] + DIRTY_PIECES[rng.integers(len(DIRTY_PIECES))] + row[where:]
        if not (dirty or continued) and path.strip() and label:
            clean[line] = (path.strip(), label)
        if rng.random() < 0.05:  # a lone CR: the next row continues this line
            content += row + b"\r"
            clean.pop(line, None)
            continued = True
        else:
            content += row + ENDINGS[rng.integers(len(ENDINGS))]
            line += 1
            continued = False
    return content, clean


def test_random_files_read_clean_rows_exactly_and_account_for_every_other_line(tmp_path):
    rng = np.random.default_rng(SEED)
    files = 300
    for index in range(files):
        content, clean = random_file(rng)
        csv = tmp_path / f"random_{index}.csv"
        csv.write_bytes(content)
        read_rows = read_csv_rows(str(csv), ";")
        rows = {row.line_number: row for row in read_rows.rows}
        bad = {row.line_number: row for row in read_rows.bad_rows}
        for line, (path, label) in clean.items():
            assert rows.get(line) == Row(str(csv), line, resolve_image_path(str(csv), path), label)
        lines = content.removeprefix(b"\xef\xbb\xbf").split(b"\n")
        expected_lines = [n for n, text in enumerate(lines, start=1) if text.strip()]
        assert sorted(rows.keys() | bad.keys()) == expected_lines, index
        assert not rows.keys() & bad.keys()
        for row in rows.values():
            assert not {"\0", "\r", "\n", "\ufeff"} & set(row.image_path + row.label)
            assert row.label and row.image_path.strip() == row.image_path
        for row in bad.values():
            assert isinstance(row, BadRow) and row.kind in KINDS, (index, row)
        if bad:
            first = read_rows.bad_rows[0]
            with pytest.raises(DataError, match=f"^{csv}, row {first.line_number}: "):
                read_rows.strict()
