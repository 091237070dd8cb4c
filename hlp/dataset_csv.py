"""What every converter of a standard data set to tf_crnn's CSV format shares (hlp.mjsynth,
hlp.iiit5k, hlp.svt, hlp.icdar_words, hlp.iam_lines); not a command of its own.

Why one place: each converter must keep labels byte for byte yet refuse the ones the CSV cannot
hold, since it has no quoting (a label with the delimiter or a line break would become a malformed
or a wrong row); must say where each refused sample came from (file and line); must stream
annotation files of millions of lines; and must write through ``tf.io.gfile`` so that ``gs://``
works. Getting that right once keeps the five converters to what differs: how each set is laid out.
"""

from __future__ import annotations

import argparse
import os
import posixpath
import sys
from collections import Counter
from collections.abc import Iterator, Sequence

from hlp import HelpFormatter

DEFAULT_DELIMITER = ";"
# Delimiters that cannot work: paths hold '/', lexicon files separate words by spaces.
FORBIDDEN_DELIMITERS = " /\r\n"
# Rows buffered before a write: gfile calls have a cost of their own (a round trip on gs://).
ROWS_PER_WRITE = 65536
READ_BLOCK_BYTES = 1 << 22
UTF8_BOM = b"\xef\xbb\xbf"

EPILOG = """\
Every sample is checked before it is written: an empty label, a label or image path that holds the
delimiter or a line break (the CSV has no quoting), or an entry the converter cannot read is left
out and reported on standard error as 'FILE, line N: problem' (or 'FILE, entry N' where the source
has no lines), and counted by kind at the end. Image paths are written relative to the CSV's
folder when both are local, so the output folder can sit anywhere; labels are written exactly as
the source spells them (UTF-8). Files are written under a '.partial' name and renamed when complete,
so an interrupted run leaves no CSV that looks finished. All paths may be local or URLs that
tf.io.gfile reads and writes, such as gs://bucket/data.

Exit status: 0 all converted, 1 some samples left out (each reported), 2 bad arguments or an input
file missing or unreadable as a whole.
"""


class ConversionError(Exception):
    """A problem that stops the conversion (an input file missing or unreadable as a whole); the
    message names the file."""


def gfile():
    """``tf.io.gfile``, imported on first use so that ``--help`` and usage errors stay fast."""
    import tensorflow as tf

    return tf.io.gfile


def is_url(path: str) -> bool:
    return "://" in path


def folder_of(path: str) -> str:
    """The folder of a file path: absolute when local, as written for a URL."""
    return posixpath.dirname(path) if is_url(path) else os.path.dirname(os.path.abspath(path))


def require_file(path: str) -> None:
    """A :class:`ConversionError` unless ``path`` is a file."""
    if not gfile().exists(path) or gfile().isdir(path):
        raise ConversionError(f"{path}: file not found")


def read_bytes(path: str) -> bytes:
    """The content of ``path``, or a :class:`ConversionError` saying it is missing."""
    require_file(path)
    with gfile().GFile(path, "rb") as f:
        return f.read()


# ----------------------------------------------------------------------------------------------
# Problems: samples left out, reported where they come from
# ----------------------------------------------------------------------------------------------
class Problems:
    """The samples left out: each reported as ``WHERE: PROBLEM`` on ``stream`` when met (the first
    ``shown`` of them, so that a systematic fault in a 9-million-line file does not flood the
    terminal), and all counted by kind for the closing summary.

    A problem's kind is its text before any `` (`` details, as for tf_crnn.csv_rows.BadRow.
    """

    def __init__(self, shown: int, stream=None):
        self.shown = shown
        self.stream = stream if stream is not None else sys.stderr
        self.kinds: Counter[str] = Counter()

    @property
    def count(self) -> int:
        return sum(self.kinds.values())

    def report(self, where: str, problem: str) -> None:
        if self.count < self.shown:
            print(f"{where}: {problem}", file=self.stream)
        self.kinds[problem.split(" (")[0]] += 1

    def summary(self) -> str:
        lines = [f"{self.count} problem(s); the samples concerned are not in the output:"]
        lines += [f"  {count} x {kind}" for kind, count in self.kinds.most_common()]
        if self.count > self.shown:
            lines.append(f"  (the first {self.shown} are listed above; --show-problems shows more)")
        return "\n".join(lines)


def text_problem(text: str, what: str, delimiter: str) -> str | None:
    """Why ``text`` (a label, image path or lexicon word) cannot stand in a CSV field, or None."""
    if not text:
        return f"empty {what}"
    if delimiter in text:
        return (
            f"{what} contains the delimiter {delimiter!r} ({what} {text!r}; the CSV has no "
            "quoting: choose another --delimiter)"
        )
    if "\n" in text or "\r" in text:
        return f"{what} contains a line break ({what} {text!r})"
    return None


def lexicon_problem(words: Sequence[str], delimiter: str) -> str | None:
    """Why ``words`` cannot be written as one space-separated lexicon field, or None."""
    if not words:
        return "empty lexicon"
    for word in words:
        problem = text_problem(word, "lexicon word", delimiter)
        if problem:
            return problem
        if any(character.isspace() for character in word):
            return f"lexicon word contains a space (lexicon word {word!r})"
    return None


# ----------------------------------------------------------------------------------------------
# Reading annotation files
# ----------------------------------------------------------------------------------------------
def numbered_lines(path: str) -> Iterator[tuple[int, bytes]]:
    """(1-based line number, line without its LF or CRLF) for each line of ``path``, read in
    blocks through gfile, so that a file of millions of lines streams. A UTF-8 byte order mark at
    the start is dropped; blank lines are yielded (callers decide), a last empty line is not."""
    require_file(path)
    number, pending = 0, b""
    with gfile().GFile(path, "rb") as f:
        for block in iter(lambda: f.read(READ_BLOCK_BYTES), b""):
            if number == 0 and not pending and block.startswith(UTF8_BOM):
                block = block[len(UTF8_BOM) :]
            lines = (pending + block).split(b"\n")
            pending = lines.pop()
            for line in lines:
                number += 1
                yield number, line.removesuffix(b"\r")
    if pending:
        yield number + 1, pending.removesuffix(b"\r")


def text_lines(path: str, problems: Problems) -> Iterator[tuple[int, str]]:
    """(line number, text) for each line of ``path`` that is valid UTF-8; the others are reported
    to ``problems``. Blank lines are yielded."""
    for number, raw in numbered_lines(path):
        try:
            yield number, raw.decode("utf-8")
        except UnicodeDecodeError as error:
            problems.report(f"{path}, line {number}", f"not valid UTF-8 (byte {error.start})")


# ----------------------------------------------------------------------------------------------
# Writing a CSV and its lexicon side files
# ----------------------------------------------------------------------------------------------
def lexicon_path(csv_path: str, name: str) -> str:
    """The lexicon side file named ``name`` (such as "50") of ``csv_path``: <stem>_lexicon50.csv."""
    stem, _ = os.path.splitext(csv_path)
    return f"{stem}_lexicon{name}.csv"


def image_prefix(images_root: str, csv_folder: str) -> str:
    """What goes before a '/'-separated path relative to ``images_root`` so that tf_crnn, which
    resolves relative paths against the CSV's folder, finds the image: a relative path when both
    folders are local, the root itself when either is a URL (and differs)."""
    if is_url(images_root) or is_url(csv_folder):
        root = images_root.rstrip("/")
        return "" if root == csv_folder.rstrip("/") else root + "/"
    relative = os.path.relpath(os.path.abspath(images_root), os.path.abspath(csv_folder))
    return "" if relative == os.curdir else relative.replace(os.sep, "/") + "/"


class CsvWriter:
    """Streams the rows of one CSV, and of its lexicon side files, into place.

    Rows go out in blocks; each file is written as ``<name>.partial`` and renamed when the writer
    closes without error (deleted when it closes with one). Use as a context manager; the closing
    line on standard output says how many rows went where.

    A lexicon side file has one row per CSV row, in the same order: the same image path, the
    delimiter, then the lexicon's words separated by single spaces. ``read_csv_rows`` reads it as
    rows whose label is the word list.
    """

    def __init__(
        self,
        csv_path: str,
        images_root: str,
        delimiter: str,
        problems: Problems,
        lexicons: Sequence[str] = (),
    ):
        self.csv_path = csv_path
        self.delimiter = delimiter
        self.problems = problems
        self.rows = 0
        self.lexicon_paths = [lexicon_path(csv_path, name) for name in lexicons]
        self._prefix = image_prefix(images_root, folder_of(csv_path))
        self._problems_before = problems.count
        self._paths = [csv_path, *self.lexicon_paths]
        self._buffers: list[list[str]] = [[] for _ in self._paths]
        self._files = []

    def __enter__(self) -> CsvWriter:
        gfile().makedirs(folder_of(self.csv_path))
        self._files = [gfile().GFile(path + ".partial", "wb") for path in self._paths]
        return self

    def add(
        self, where: str, image: str, label: str, lexicons: Sequence[Sequence[str]] = ()
    ) -> bool:
        """Writes one sample, ``image`` being '/'-separated and relative to the images root, with
        one word list per lexicon side file; or reports it (at ``where``) and returns False if the
        CSV cannot hold it."""
        problem = text_problem(image, "image path", self.delimiter) or text_problem(
            label, "label", self.delimiter
        )
        for words in lexicons:
            problem = problem or lexicon_problem(words, self.delimiter)
        if problem:
            self.problems.report(where, problem)
            return False
        path = self._prefix + image
        self._buffers[0].append(f"{path}{self.delimiter}{label}\n")
        for buffer, words in zip(self._buffers[1:], lexicons):
            buffer.append(f"{path}{self.delimiter}{' '.join(words)}\n")
        self.rows += 1
        if len(self._buffers[0]) >= ROWS_PER_WRITE:
            self._flush()
        return True

    def _flush(self) -> None:
        for file, buffer in zip(self._files, self._buffers):
            file.write("".join(buffer).encode("utf-8"))
            buffer.clear()

    def __exit__(self, error_type, error, traceback) -> None:
        if error_type is None:
            self._flush()
        for file in self._files:
            file.close()
        for path in self._paths:
            if error_type is None:
                gfile().rename(path + ".partial", path, overwrite=True)
            elif gfile().exists(path + ".partial"):  # gfile creates a file on its first write
                gfile().remove(path + ".partial")
        if error_type is None:
            left_out = self.problems.count - self._problems_before
            written = ", ".join(self._paths)
            print(f"{written}: {self.rows} row(s) written, {left_out} problem(s)")


# ----------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------
def build_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """A converter's parser with the options every converter has."""
    parser = argparse.ArgumentParser(
        prog=prog, description=description, epilog=EPILOG, formatter_class=HelpFormatter
    )
    parser.add_argument(
        "--delimiter",
        default=DEFAULT_DELIMITER,
        metavar="CHAR",
        help="Delimiter between image path and label (one character; set tf_crnn's "
        "csv_delimiter to the same). Not a space, '/' or a line break.",
    )
    parser.add_argument(
        "--show-problems",
        type=int,
        default=100,
        metavar="N",
        help="List at most N problems on standard error (all are counted in the summary).",
    )
    return parser


def build_split_parser(prog: str, description: str, splits, files: str):
    """The parser of a converter that writes OUT/<split>.csv for each split of the data set in
    ROOT: the common options, ROOT, --output OUT and --splits; ``files`` names a split's input,
    such as "ROOT/<SPLIT>data.mat"."""
    parser = build_parser(prog, description)
    parser.add_argument("root", metavar="ROOT", help="The data set's folder, laid out as above.")
    parser.add_argument(
        "--output",
        "-o",
        required=True,
        metavar="OUT",
        help="Folder to write <SPLIT>.csv (and its side files) into; created if needed.",
    )
    parser.add_argument(
        "--splits",
        nargs="+",
        choices=splits,
        default=list(splits),
        metavar="SPLIT",
        help=f"Which splits to convert, of {', '.join(splits)} (the files {files}).",
    )
    return parser


def run(parser: argparse.ArgumentParser, convert, argv: Sequence[str] | None) -> int:
    """Parses ``argv``, runs ``convert(args, problems)`` and turns the outcome into the exit
    status documented in :data:`EPILOG`."""
    args = parser.parse_args(argv)
    if len(args.delimiter) != 1 or args.delimiter in FORBIDDEN_DELIMITERS:
        parser.error(
            f"--delimiter must be one character other than a space, '/' or a line break "
            f"(got {args.delimiter!r})"
        )
    if args.show_problems < 0:
        parser.error("--show-problems must be >= 0")
    problems = Problems(shown=args.show_problems)
    try:
        convert(args, problems)
    except ConversionError as error:
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        return 2
    if problems.count:
        print(problems.summary(), file=sys.stderr)
        return 1
    return 0
