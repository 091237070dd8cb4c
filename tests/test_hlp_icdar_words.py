"""hlp.icdar_words: ICDAR 2013/2015 word recognition gt.txt to a CSV, quotes unescaped both ways,
the rest of each label byte for byte; bad lines reported by file and line; gs://-style URLs."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
from helpers import write_image

from hlp import icdar_words
from tf_crnn.csv_rows import read_csv_rows

# gt.txt as the 2013 training archive has it: a byte order mark, CRLF line ends.
GT_2013 = (
    '\ufeffword_1.png, "Tiredness"\r\n'
    'word_2.png, "\\"HOLIDAY"\r\n'  # backslash escape
    'word_3.png, "say ""cheese"""\r\n'  # doubled-quote escape
    'word_4.png, "C:\\DATA"\r\n'  # a backslash that escapes nothing stays
    'word_5.png, "Straße  "\r\n'  # spaces inside the quotes are part of the label
)
LABELS_2013 = ["Tiredness", '"HOLIDAY', 'say "cheese"', "C:\\DATA", "Straße  "]


def write_words(folder, count):
    for index in range(1, count + 1):
        write_image(folder / f"word_{index}.png", np.full((16, 40, 3), 30 * index, np.uint8))


def rows(csv_path):
    return [(r.image_path, r.label) for r in read_csv_rows(str(csv_path), ";").strict()]


def test_training_gt_beside_its_images(tmp_path):
    images = tmp_path / "Challenge2_Training_Task3_Images_GT"
    write_words(images, 5)
    (images / "gt.txt").write_bytes(GT_2013.encode("utf-8"))
    out = tmp_path / "csv" / "train.csv"
    assert icdar_words.main([str(images / "gt.txt"), "--output", str(out)]) == 0
    assert out.read_text(encoding="utf-8") == "".join(
        f"../Challenge2_Training_Task3_Images_GT/word_{index};{label}\n"
        for index, label in zip(["1.png", "2.png", "3.png", "4.png", "5.png"], LABELS_2013)
    )
    assert [(os.path.normpath(path), label) for path, label in rows(out)] == [
        (str(images / f"word_{index}.png"), label) for index, label in enumerate(LABELS_2013, 1)
    ]


def test_test_gt_in_its_own_file_with_bad_lines(tmp_path, capsys):
    images = tmp_path / "ch4_test_word_images_gt"
    write_words(images, 6)
    gt = tmp_path / "Challenge4_Test_Task3_GT.txt"
    gt.write_bytes(
        b'word_1.png, "JOINT"\n'
        b"word_2.png, JOINT\n"  # 2: no quotes
        b'word_3.png "JOINT"\n'  # 3: no comma
        b'word_4.png, "A;B"\n'  # 4: the delimiter in the label
        b'word_5.png, "\xff"\n'  # 5: not UTF-8
        b"\n"
        b'word_6.png, "Genaxis Theatre"\n'
    )
    out = tmp_path / "test.csv"
    assert icdar_words.main([str(gt), "--images", str(images), "--output", str(out)]) == 1
    err = capsys.readouterr().err
    assert f"{gt}, line 2: label is not in double quotes ('word_2.png, JOINT')" in err
    assert f"{gt}, line 3: expected 'IMAGE, \"LABEL\"' ('word_3.png \"JOINT\"')" in err
    assert f"{gt}, line 4: label contains the delimiter ';'" in err
    assert f"{gt}, line 5: not valid UTF-8 (byte 13)" in err
    assert "4 problem(s)" in err
    assert out.read_text(encoding="utf-8") == (
        "ch4_test_word_images_gt/word_1.png;JOINT\n"
        "ch4_test_word_images_gt/word_6.png;Genaxis Theatre\n"
    )


def test_urls_in_and_out(ram_root):
    """Ground truth, images and CSV on a URL file system (ram:// standing in for gs://)."""
    import tensorflow as tf

    tf.io.gfile.makedirs(f"{ram_root}/ic13")
    with tf.io.gfile.GFile(f"{ram_root}/ic13/gt.txt", "wb") as f:
        f.write(GT_2013.encode("utf-8"))
    out = f"{ram_root}/csv/train.csv"
    assert icdar_words.main([f"{ram_root}/ic13/gt.txt", "--output", out]) == 0
    assert rows(out) == [
        (f"{ram_root}/ic13/word_{index}.png", label) for index, label in enumerate(LABELS_2013, 1)
    ]
    assert tf.io.gfile.listdir(f"{ram_root}/csv") == ["train.csv"]


def test_missing_gt_file(tmp_path, capsys):
    assert icdar_words.main([str(tmp_path / "gt.txt"), "-o", str(tmp_path / "x.csv")]) == 2
    assert f"error: {tmp_path / 'gt.txt'}: file not found" in capsys.readouterr().err
    assert os.listdir(tmp_path) == []
