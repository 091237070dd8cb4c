"""Convert IIIT 5K-word to tf_crnn CSV files, with its per-image 50- and 1k-word lexicons.

The data set: A. Mishra, K. Alahari, C. V. Jawahar, "Scene Text Recognition using Higher Order
Language Priors", BMVC 2012;
https://cvit.iiit.ac.in/research/projects/cvit-projects/the-iiit-5k-word-dataset
(IIIT5K-Word_V3.0.tar.gz). 2,000 training and 3,000 test word images cut from scene and
born-digital images; the CRNN paper reports on the test set without a lexicon and with each
image's 50-word ("small") and 1k-word ("medium") lexicon. Nothing is downloaded: point ROOT at the
unpacked archive.

Layout expected (ROOT is the IIIT5K folder)::

    ROOT/traindata.mat    MATLAB v5 file, struct array "traindata" with fields ImgName
                          ("train/1009_2.png"), GroundTruth ("PRIVATE"), smallLexi (50 words)
                          and mediumLexi (1,000 words)
    ROOT/testdata.mat     the same, struct array "testdata"
    ROOT/train/1009_2.png ...
    ROOT/test/1002_1.png ...

(lexicon.txt, trainCharBound.mat and testCharBound.mat are not read.) Reading .mat files needs
scipy: pip install "tf_crnn[datasets]" (or pip install scipy).

Output, in OUT, for each split asked for::

    OUT/test.csv             "test/1002_1.png;PRIVATE", the label exactly as GroundTruth has it
    OUT/test_lexicon50.csv   "test/1002_1.png;word1 word2 ... word50"
    OUT/test_lexicon1k.csv   "test/1002_1.png;word1 word2 ... word1000"

A lexicon file has one row per CSV row, in the same order and with the same image path: the
delimiter, then the image's lexicon words separated by single spaces (read_csv_rows reads it as
rows whose label is the word list). Image paths are relative to the CSV's folder; image files are
not opened (`python -m hlp.csv_path_convertor OUT/test.csv --check` lists missing ones).

    python -m hlp.iiit5k data/IIIT5K --output data/iiit5k_csv
"""

from __future__ import annotations

import io
import sys
from collections.abc import Sequence

import numpy as np

from hlp import dataset_csv
from tf_crnn.demo import join_path

SPLITS = ("train", "test")
# Lexicon side file name -> the struct field that holds it.
LEXICONS = {"50": "smallLexi", "1k": "mediumLexi"}
FIELDS = ("ImgName", "GroundTruth", *LEXICONS.values())


def load_entries(path: str, variable: str) -> list[dict]:
    """The struct array ``variable`` of the .mat file at ``path``, one dict per image."""
    try:
        from scipy.io import loadmat
        from scipy.io.matlab import MatReadError
    except ImportError:
        raise dataset_csv.ConversionError(
            f"{path}: reading .mat files needs scipy: pip install 'tf_crnn[datasets]' "
            "(or pip install scipy)"
        ) from None
    try:
        content = loadmat(io.BytesIO(dataset_csv.read_bytes(path)), simplify_cells=True)
    except (MatReadError, ValueError, TypeError, NotImplementedError, OSError) as error:
        raise dataset_csv.ConversionError(
            f"{path}: not a MATLAB v5 file scipy can read ({error})"
        ) from None
    if variable not in content:
        found = ", ".join(name for name in content if not name.startswith("__")) or "none"
        raise dataset_csv.ConversionError(f"{path}: no variable {variable!r} (found: {found})")
    entries = content[variable]
    entries = [entries] if isinstance(entries, dict) else list(entries)  # one image is squeezed
    if entries and not all(isinstance(entry, dict) for entry in entries):
        raise dataset_csv.ConversionError(f"{path}: {variable} is not a struct array")
    missing = [field for field in FIELDS if entries and field not in entries[0]]
    if missing:
        raise dataset_csv.ConversionError(
            f"{path}: {variable} has no field {', '.join(missing)} (has {', '.join(entries[0])})"
        )
    return entries


def text(value) -> str | None:
    """A MATLAB char array as loaded (a str), or None for anything else (a number, an empty [])."""
    return value if isinstance(value, str) else None


def words(value) -> list[str] | None:
    """A cell array of words (or a char matrix, one word a row) as a list, or None if it is
    something else. Padding spaces of a char matrix are removed."""
    cells = [value] if isinstance(value, str) else value
    if not isinstance(cells, (list, np.ndarray)) or not all(isinstance(w, str) for w in cells):
        return None
    return [word.strip() for word in cells]


def convert_split(mat_file: str, entries: list[dict], writer) -> None:
    for number, entry in enumerate(entries, start=1):
        image = text(entry["ImgName"])
        where = f"{mat_file}, entry {number}" + (f" ({image})" if image else "")
        label = text(entry["GroundTruth"])
        lexicons = {name: words(entry[field]) for name, field in LEXICONS.items()}
        if image is None or label is None:
            writer.problems.report(where, "ImgName or GroundTruth is not text")
        elif None in lexicons.values():
            bad = [LEXICONS[name] for name, value in lexicons.items() if value is None]
            writer.problems.report(where, f"not a list of words ({', '.join(bad)})")
        else:
            writer.add(where, image, label, list(lexicons.values()))


def convert(args, problems: dataset_csv.Problems) -> None:
    mat_files = {split: join_path(args.root, f"{split}data.mat") for split in args.splits}
    # All read (a few MB each), so that an unreadable one stops the run before anything is written.
    entries = {split: load_entries(path, f"{split}data") for split, path in mat_files.items()}
    for split, mat_file in mat_files.items():
        csv_path = join_path(args.output, f"{split}.csv")
        with dataset_csv.CsvWriter(
            csv_path, args.root, args.delimiter, problems, lexicons=list(LEXICONS)
        ) as writer:
            convert_split(mat_file, entries[split], writer)


def main(argv: Sequence[str] | None = None) -> int:
    parser = dataset_csv.build_split_parser(
        "python -m hlp.iiit5k", __doc__, SPLITS, "ROOT/<SPLIT>data.mat"
    )
    return dataset_csv.run(parser, convert, argv)


if __name__ == "__main__":
    sys.exit(main())
