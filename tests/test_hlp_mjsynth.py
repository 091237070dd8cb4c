"""hlp.mjsynth: MJSynth annotation files and lexicon to one CSV per split, labels from the file
names checked against the lexicon, bad lines reported by file and line, everything streamed."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest
from helpers import write_image

from hlp import dataset_csv, mjsynth
from tf_crnn.csv_rows import read_csv_rows

LEXICON = ["heretical", "senoritas", "remodelers", "café", "a;b", "chronographs"]


@pytest.fixture
def root(tmp_path):
    """mnt/ramdisk/max/90kDICT32px as in the archive: three annotation files, the lexicon, and
    the images the good lines name (tiny grey JPGs)."""
    folder = tmp_path / "90kDICT32px"
    folder.mkdir()
    (folder / "lexicon.txt").write_text("\n".join(LEXICON) + "\n", encoding="utf-8")
    annotations = {
        "train": "./2911/6/77_heretical_0.jpg 0\n./1/2/5_SENORITAS_1.jpg 1\n",
        "val": "./3000/7/180_Chronographs_5.jpg 5\r\n",
        "test": "./1/1/9_CAFÉ_3.jpg 3\n\n",
    }
    for split, content in annotations.items():
        (folder / f"annotation_{split}.txt").write_bytes(content.encode("utf-8"))
        for line in content.splitlines():
            if line:
                write_image(folder / line.split(" ")[0], np.full((32, 100), 128, np.uint8))
    return folder


def rows(csv_path, delimiter=";"):
    """(image path, label) as tf_crnn reads them, the paths normalised ('csv/../x' is 'x')."""
    return [
        (os.path.normpath(row.image_path), row.label)
        for row in read_csv_rows(str(csv_path), delimiter).strict()
    ]


def test_one_csv_per_split_with_the_file_name_words(root, tmp_path):
    out = tmp_path / "csv"
    assert mjsynth.main([str(root), "--output", str(out)]) == 0
    assert (out / "train.csv").read_bytes() == (
        b"../90kDICT32px/2911/6/77_heretical_0.jpg;heretical\n"
        b"../90kDICT32px/1/2/5_SENORITAS_1.jpg;SENORITAS\n"
    )
    assert (out / "val.csv").read_bytes() == (
        b"../90kDICT32px/3000/7/180_Chronographs_5.jpg;Chronographs\n"
    )
    assert (out / "test.csv").read_bytes() == "../90kDICT32px/1/1/9_CAFÉ_3.jpg;CAFÉ\n".encode()
    assert sorted(os.listdir(out)) == ["test.csv", "train.csv", "val.csv"]  # no .partial left
    # tf_crnn reads them to the images on disk, the labels as the file names spell them.
    assert rows(out / "train.csv") == [
        (str(root / "2911/6/77_heretical_0.jpg"), "heretical"),
        (str(root / "1/2/5_SENORITAS_1.jpg"), "SENORITAS"),
    ]
    assert all(os.path.exists(path) for path, _ in rows(out / "val.csv") + rows(out / "test.csv"))

    # Written into ROOT itself, the paths are those of the annotation files.
    assert mjsynth.main([str(root), "--output", str(root), "--splits", "val"]) == 0
    assert (root / "val.csv").read_bytes() == b"3000/7/180_Chronographs_5.jpg;Chronographs\n"
    assert not (root / "train.csv").exists()


def test_bad_lines_reported_by_file_and_line_and_left_out(root, tmp_path, capsys):
    annotation = root / "annotation_train.txt"
    annotation.write_bytes(
        b"./1/1/1_heretical_0.jpg 0\n"
        b"./1/1/2_hello_0.jpg 0\n"  # 2: not the lexicon word
        b"./1/1/3_heretical_0.jpg 99\n"  # 3: index out of range
        b"./1/1/4_heretical_0.jpg\n"  # 4: no index
        b"./1/1/5_heretical_0.jpg zero\n"  # 5: index not a number
        b"./1/1/noword.jpg 0\n"  # 6: no word in the file name
        b"./1/1/7_caf\xe9_3.jpg 3\n"  # 7: Latin-1, not UTF-8
        b"./1/1/8_a;b_4.jpg 4\n"  # 8: the label holds the delimiter
        b"./1/1/9_REMODELERS_2.jpg 2\n"
    )
    out = tmp_path / "csv"
    assert mjsynth.main([str(root), "--output", str(out), "--splits", "train"]) == 1
    err = capsys.readouterr().err
    expected = {
        2: "file name word differs from its lexicon word ('hello'; "
        f"{root / 'lexicon.txt'} line 1: 'heretical')",
        3: f"lexicon index out of range (99; {root / 'lexicon.txt'} has 6 lines)",
        4: "expected 'IMAGE_PATH LEXICON_INDEX' ('./1/1/4_heretical_0.jpg')",
        5: "lexicon index is not a number ('zero')",
        6: "file name is not NUMBER_WORD_INDEX.jpg ('./1/1/noword.jpg')",
        7: "not valid UTF-8 (byte 11)",
        8: "image path contains the delimiter ';' (image path '1/1/8_a;b_4.jpg'; the CSV has "
        "no quoting: choose another --delimiter)",
    }
    for line, problem in expected.items():
        assert f"{annotation}, line {line}: {problem}\n" in err
    assert "7 problem(s)" in err and "1 x image path contains the delimiter ';'" in err
    assert rows(out / "train.csv") == [
        (str(root / "1/1/1_heretical_0.jpg"), "heretical"),
        (str(root / "1/1/9_REMODELERS_2.jpg"), "REMODELERS"),
    ]

    # Another delimiter holds that label, byte for byte.
    assert mjsynth.main([str(root), "-o", str(out), "--splits", "train", "--delimiter", "\t"]) == 1
    assert rows(out / "train.csv", "\t")[1] == (str(root / "1/1/8_a;b_4.jpg"), "a;b")


def test_missing_annotation_file_stops_before_anything_is_written(root, tmp_path, capsys):
    (root / "annotation_test.txt").unlink()
    out = tmp_path / "csv"
    assert mjsynth.main([str(root), "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"error: {root / 'annotation_test.txt'}: file not found" in err
    assert not out.exists()


def test_streams_blocks_and_rows_exactly(root, tmp_path, monkeypatch):
    """Lines cut across read blocks and rows written in many small batches give the same CSV."""
    monkeypatch.setattr(dataset_csv, "READ_BLOCK_BYTES", 7)
    monkeypatch.setattr(dataset_csv, "ROWS_PER_WRITE", 3)
    lines = [f"./{i}/0/{i}_{LEXICON[i % 3].upper()}_{i % 3}.jpg {i % 3}" for i in range(50)]
    (root / "annotation_train.txt").write_text("\r\n".join(lines), encoding="utf-8")  # no last EOL
    out = tmp_path / "csv"
    assert mjsynth.main([str(root), "--output", str(out), "--splits", "train"]) == 0
    assert (out / "train.csv").read_text(encoding="utf-8").splitlines() == [
        f"../90kDICT32px/{i}/0/{i}_{LEXICON[i % 3].upper()}_{i % 3}.jpg;{LEXICON[i % 3].upper()}"
        for i in range(50)
    ]
