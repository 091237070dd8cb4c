"""Convert MJSynth (Synth90k) to tf_crnn CSV files, one per split.

The data set: M. Jaderberg, K. Simonyan, A. Vedaldi, A. Zisserman, "Synthetic Data and Artificial
Neural Networks for Natural Scene Text Recognition", NIPS Deep Learning Workshop 2014
(arXiv:1406.2227); https://www.robots.ox.ac.uk/~vgg/data/text/ (mjsynth.tar.gz, about 10 GB).
About 9 million rendered word images of 90k English words, the training set of the CRNN paper.
Nothing is downloaded: point ROOT at the unpacked archive.

Layout expected, ROOT being the folder that holds the annotation files (mnt/ramdisk/max/90kDICT32px
in the archive)::

    ROOT/annotation_train.txt      lines "./2911/6/77_heretical_35885.jpg 35885"
    ROOT/annotation_val.txt
    ROOT/annotation_test.txt
    ROOT/lexicon.txt               one word a line; 35885 above is a 0-based line index into it
    ROOT/2911/6/77_heretical_35885.jpg ...

(annotation.txt, all splits together, is not read.)

Label: the word between the first and the last '_' of the file name ("heretical"). It keeps the
case the word was rendered in, which the lexicon does not: lexicon.txt holds each word once, in
lower case, and the images show it in lower case, upper case or capitalised. So the file name's
word must equal the lexicon word at the line's index except for case; any other difference, an
index out of range, or a file name without the NUMBER_WORD_INDEX.jpg shape is reported and left
out.

Output, in OUT: train.csv, val.csv and test.csv (for the splits asked for), rows
"2911/6/77_heretical_35885.jpg;heretical", image paths relative to the CSV's folder. Annotation
files are streamed: memory holds the lexicon and a block of rows, whatever the number of lines.
Image files are not opened (there are 9 million); `python -m hlp.csv_path_convertor OUT/train.csv
--check` lists missing ones, and tf_crnn's start-up check (or skip_bad_samples) the few unreadable
images the archive is known to hold.

    python -m hlp.mjsynth data/mjsynth/mnt/ramdisk/max/90kDICT32px --output data/mjsynth_csv
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from hlp import dataset_csv
from tf_crnn.demo import join_path

SPLITS = ("train", "val", "test")


def read_lexicon(path: str, problems: dataset_csv.Problems) -> list[str | None]:
    """The words of lexicon.txt by 0-based line index (None for a line that is not UTF-8)."""
    words: list[str | None] = []
    for number, word in dataset_csv.text_lines(path, problems):
        words.extend([None] * (number - 1 - len(words)))  # undecodable lines keep their index
        words.append(word)
    return words


def file_name_word(image_path: str) -> str | None:
    """The word of an MJSynth file name NUMBER_WORD_INDEX.jpg, or None if it has no such shape."""
    stem = image_path.rsplit("/", 1)[-1].rsplit(".", 1)[0]
    first, last = stem.find("_"), stem.rfind("_")
    return stem[first + 1 : last] if 0 <= first < last - 1 else None


def parse_sample(image_path: str, index_text: str, lexicon: list[str | None], lexicon_file: str):
    """(label, None) for a good annotation line, (None, its problem) otherwise."""
    word = file_name_word(image_path)
    if word is None:
        return None, f"file name is not NUMBER_WORD_INDEX.jpg ({image_path!r})"
    if not (index_text.isascii() and index_text.isdigit()):
        return None, f"lexicon index is not a number ({index_text!r})"
    index = int(index_text)
    if index >= len(lexicon):
        return (
            None,
            f"lexicon index out of range ({index}; {lexicon_file} has {len(lexicon)} lines)",
        )
    expected = lexicon[index]
    if expected is None or word.lower() != expected.lower():
        return None, (
            f"file name word differs from its lexicon word ({word!r}; {lexicon_file} "
            f"line {index + 1}: {expected!r})"
        )
    return word, None


def convert_split(annotation: str, lexicon: list[str | None], lexicon_file: str, writer) -> None:
    problems = writer.problems
    for number, line in dataset_csv.text_lines(annotation, problems):
        if not line.strip():
            continue
        where = f"{annotation}, line {number}"
        fields = line.split(" ")
        if len(fields) != 2:
            problems.report(where, f"expected 'IMAGE_PATH LEXICON_INDEX' ({line!r})")
            continue
        image_path, index_text = fields
        label, problem = parse_sample(image_path, index_text, lexicon, lexicon_file)
        if problem:
            problems.report(where, problem)
            continue
        writer.add(where, image_path[2:] if image_path.startswith("./") else image_path, label)


def convert(args, problems: dataset_csv.Problems) -> None:
    annotations = {split: join_path(args.root, f"annotation_{split}.txt") for split in args.splits}
    for annotation in annotations.values():  # all there, before any is converted
        dataset_csv.require_file(annotation)
    lexicon_file = join_path(args.root, "lexicon.txt")
    lexicon = read_lexicon(lexicon_file, problems)
    for split, annotation in annotations.items():
        csv_path = join_path(args.output, f"{split}.csv")
        with dataset_csv.CsvWriter(csv_path, args.root, args.delimiter, problems) as writer:
            convert_split(annotation, lexicon, lexicon_file, writer)


def main(argv: Sequence[str] | None = None) -> int:
    parser = dataset_csv.build_split_parser(
        "python -m hlp.mjsynth", __doc__, SPLITS, "ROOT/annotation_<SPLIT>.txt"
    )
    return dataset_csv.run(parser, convert, argv)


if __name__ == "__main__":
    sys.exit(main())
