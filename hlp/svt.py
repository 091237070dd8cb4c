"""Convert Street View Text (SVT) to tf_crnn CSV files: word crops cut from the scene images, with
each image's 50-word lexicon.

The data set: K. Wang, B. Babenko, S. Belongie, "End-to-end Scene Text Recognition", ICCV 2011;
http://vision.ucsd.edu/~kai/svt/ (svt.zip). Google Street View images with the words on them
boxed; the CRNN paper reports on the 647 words of the test set, without a lexicon and with each
image's 50-word lexicon. Nothing is downloaded: point ROOT at the unpacked archive (svt1/).

Layout expected::

    ROOT/train.xml, ROOT/test.xml   <tagset><image>
                                      <imageName>img/14_03.jpg</imageName>
                                      <lex>LIVING,ROOM,THEATERS,...</lex>
                                      <taggedRectangles>
                                        <taggedRectangle height="75" width="236" x="375" y="253">
                                          <tag>LIVING</tag></taggedRectangle> ...
    ROOT/img/14_03.jpg ...          the scene images, at the paths imageName gives

Output, in OUT, for each split asked for::

    OUT/test/img/14_03_0.png        the word crops: rectangle 0, 1, ... of img/14_03.jpg, cut
                                    with OpenCV from the stored pixels (EXIF orientation ignored)
                                    and clipped to the image, written as PNG in colour
    OUT/test.csv                    "test/img/14_03_0.png;LIVING", the label exactly as <tag> has it
    OUT/test_lexicon50.csv          "test/img/14_03_0.png;LIVING ROOM THEATERS ..."

A lexicon file has one row per CSV row, in the same order and with the same image path: the
delimiter, then the words of the image's <lex> (split at commas, spaces around them removed)
separated by single spaces (read_csv_rows reads it as rows whose label is the word list). A
scene image that is missing or cannot be decoded, or a rectangle entirely outside its image, is
reported with the XML line of its element and left out.

    python -m hlp.svt data/svt1 --output data/svt_csv
"""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ElementTree
from collections.abc import Sequence
from xml.parsers import expat

import cv2
import numpy as np

from hlp import dataset_csv
from tf_crnn.demo import join_path, write_png

SPLITS = ("train", "test")
RECTANGLE_ATTRIBUTES = ("x", "y", "width", "height")


def parse_xml(path: str) -> tuple[ElementTree.Element, dict[ElementTree.Element, int]]:
    """The root element of the XML file at ``path`` and the line each element starts on.

    ElementTree keeps no line numbers, so the tree is built from expat's events, which do.
    """
    content = dataset_csv.read_bytes(path)
    builder, parser = ElementTree.TreeBuilder(), expat.ParserCreate()
    lines: dict[ElementTree.Element, int] = {}

    def start(tag, attributes):
        lines[builder.start(tag, attributes)] = parser.CurrentLineNumber

    parser.StartElementHandler = start
    parser.EndElementHandler = builder.end
    parser.CharacterDataHandler = builder.data
    try:
        parser.Parse(content, True)
    except expat.ExpatError as error:
        raise dataset_csv.ConversionError(
            f"{path}, line {error.lineno}: not well-formed XML ({expat.ErrorString(error.code)})"
        ) from None
    return builder.close(), lines


def read_image(path: str) -> np.ndarray | None:
    """The colour pixels of the image file at ``path`` as stored, or None if missing or not an
    image."""
    if not dataset_csv.gfile().exists(path):
        return None
    encoded = np.frombuffer(dataset_csv.read_bytes(path), np.uint8)
    return cv2.imdecode(encoded, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)


def clipped_box(rectangle: ElementTree.Element, image: np.ndarray):
    """(top, bottom, left, right) of ``rectangle`` clipped to ``image``, or (None, problem)."""
    try:
        x, y, width, height = (int(rectangle.get(name, "")) for name in RECTANGLE_ATTRIBUTES)
    except ValueError:
        values = {name: rectangle.get(name) for name in RECTANGLE_ATTRIBUTES}
        return None, f"rectangle attributes are not integers ({values})"
    rows, columns = image.shape[:2]
    top, bottom = max(y, 0), min(y + height, rows)
    left, right = max(x, 0), min(x + width, columns)
    if top >= bottom or left >= right:
        return None, (
            f"rectangle outside the image (x={x} y={y} width={width} height={height}; "
            f"image {columns}x{rows})"
        )
    return (top, bottom, left, right), None


def convert_image(xml_file: str, element, lines, root: str, output: str, split: str, writer):
    """Writes the crops of one <image> element and their rows."""
    where = f"{xml_file}, line {lines[element]}"
    name = (element.findtext("imageName") or "").strip()
    image = read_image(join_path(root, *name.split("/"))) if name else None
    if image is None:
        problem = "no <imageName>" if not name else f"image missing or unreadable ({name})"
        writer.problems.report(where, problem)
        return
    lexicon = [word.strip() for word in (element.findtext("lex") or "").split(",")]
    lexicon = [word for word in lexicon if word]
    stem = f"{split}/{name.rsplit('.', 1)[0]}"
    dataset_csv.gfile().makedirs(join_path(output, *stem.split("/")[:-1]))
    for index, rectangle in enumerate(element.iter("taggedRectangle")):
        where = f"{xml_file}, line {lines[rectangle]}"
        box, problem = clipped_box(rectangle, image)
        if problem:
            writer.problems.report(where, problem)
            continue
        crop = f"{stem}_{index}.png"
        if writer.add(where, crop, rectangle.findtext("tag") or "", [lexicon]):
            top, bottom, left, right = box
            write_png(join_path(output, *crop.split("/")), image[top:bottom, left:right])


def convert(args, problems: dataset_csv.Problems) -> None:
    xml_files = {split: join_path(args.root, f"{split}.xml") for split in args.splits}
    trees = {split: parse_xml(xml_file) for split, xml_file in xml_files.items()}
    for split, (tree, lines) in trees.items():
        csv_path = join_path(args.output, f"{split}.csv")
        with dataset_csv.CsvWriter(
            csv_path, args.output, args.delimiter, problems, lexicons=["50"]
        ) as writer:
            for element in tree.iter("image"):
                convert_image(
                    xml_files[split], element, lines, args.root, args.output, split, writer
                )


def main(argv: Sequence[str] | None = None) -> int:
    parser = dataset_csv.build_split_parser(
        "python -m hlp.svt", __doc__, SPLITS, "ROOT/<SPLIT>.xml"
    )
    return dataset_csv.run(parser, convert, argv)


if __name__ == "__main__":
    sys.exit(main())
