"""hlp.svt: word crops cut from the scene images of train.xml / test.xml (clipped, PNG, pixel for
pixel), their CSV and 50-word lexicon side file; bad rectangles and images reported by XML line."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import cv2
import numpy as np
import pytest
from helpers import write_image

from hlp import svt
from tf_crnn.csv_rows import read_csv_rows

TRAIN_XML = """<?xml version="1.0" encoding="utf-8"?>
<tagset>
  <image>
    <imageName>img/14_03.jpg</imageName>
    <address>1 Main Street</address>
    <lex>LIVING,ROOM, THEATERS,CAFÉ</lex>
    <Resolution x="120" y="80"/>
    <taggedRectangles>
      <taggedRectangle height="20" width="50" x="10" y="5">
        <tag>LIVING</tag>
      </taggedRectangle>
      <taggedRectangle height="30" width="40" x="100" y="60">
        <tag>ROOM</tag>
      </taggedRectangle>
      <taggedRectangle height="10" width="10" x="200" y="5">
        <tag>GONE</tag>
      </taggedRectangle>
      <taggedRectangle height="10" width="ten" x="1" y="1">
        <tag>BAD</tag>
      </taggedRectangle>
      <taggedRectangle height="10" width="10" x="-5" y="-5">
        <tag>A;B</tag>
      </taggedRectangle>
    </taggedRectangles>
  </image>
  <image>
    <imageName>img/missing.jpg</imageName>
    <lex>X,Y</lex>
    <taggedRectangles>
      <taggedRectangle height="10" width="10" x="0" y="0"><tag>X</tag></taggedRectangle>
    </taggedRectangles>
  </image>
</tagset>
"""
TEST_XML = """<?xml version="1.0" encoding="utf-8"?>
<tagset><image><imageName>img/18_01.jpg</imageName><lex>CAFÉ,BAR</lex><taggedRectangles>
<taggedRectangle height="8" width="30" x="2" y="3"><tag>Café</tag></taggedRectangle>
</taggedRectangles></image></tagset>
"""


@pytest.fixture
def root(tmp_path):
    """svt1/ with train.xml, test.xml and two noisy colour scene images (so any shift of a crop
    shows)."""
    folder = tmp_path / "svt1"
    rng = np.random.default_rng(0)
    write_image(folder / "img" / "14_03.jpg", rng.integers(0, 256, (80, 120, 3), np.uint8))
    write_image(folder / "img" / "18_01.jpg", rng.integers(0, 256, (40, 60, 3), np.uint8))
    (folder / "train.xml").write_text(TRAIN_XML, encoding="utf-8")
    (folder / "test.xml").write_text(TEST_XML, encoding="utf-8")
    return folder


def test_crops_csv_and_lexicon(root, tmp_path, capsys):
    out = tmp_path / "out"
    assert svt.main([str(root), "--output", str(out)]) == 1  # train.xml has bad entries
    assert (out / "train.csv").read_text(encoding="utf-8") == (
        "train/img/14_03_0.png;LIVING\ntrain/img/14_03_1.png;ROOM\n"
    )
    assert (out / "train_lexicon50.csv").read_text(encoding="utf-8") == (
        "train/img/14_03_0.png;LIVING ROOM THEATERS CAFÉ\n"
        "train/img/14_03_1.png;LIVING ROOM THEATERS CAFÉ\n"
    )
    assert (out / "test.csv").read_text(encoding="utf-8") == "test/img/18_01_0.png;Café\n"
    assert (out / "test_lexicon50.csv").read_text(encoding="utf-8") == (
        "test/img/18_01_0.png;CAFÉ BAR\n"
    )
    # Only the crops of written rows exist, cut from the stored pixels and clipped to the image.
    assert sorted(os.listdir(out / "train" / "img")) == ["14_03_0.png", "14_03_1.png"]
    scene = cv2.imread(str(root / "img" / "14_03.jpg"))
    living = cv2.imread(str(out / "train" / "img" / "14_03_0.png"))
    room = cv2.imread(str(out / "train" / "img" / "14_03_1.png"))
    assert living.shape == (20, 50, 3) and np.array_equal(living, scene[5:25, 10:60])
    assert room.shape == (20, 20, 3) and np.array_equal(room, scene[60:80, 100:120])
    test_scene = cv2.imread(str(root / "img" / "18_01.jpg"))
    cafe = cv2.imread(str(out / "test" / "img" / "18_01_0.png"))
    assert np.array_equal(cafe, test_scene[3:11, 2:32])

    xml = root / "train.xml"
    err = capsys.readouterr().err
    assert (
        f"{xml}, line 15: rectangle outside the image (x=200 y=5 width=10 height=10; "
        "image 120x80)"
    ) in err
    assert f"{xml}, line 18: rectangle attributes are not integers (" in err
    assert f"{xml}, line 21: label contains the delimiter ';' (label 'A;B'" in err
    assert f"{xml}, line 26: image missing or unreadable (img/missing.jpg)" in err
    assert "4 problem(s)" in err

    # tf_crnn reads both CSVs to the crops on disk.
    rows = read_csv_rows(str(out / "train.csv"), ";").strict()
    assert [(r.image_path, r.label) for r in rows] == [
        (str(out / "train/img/14_03_0.png"), "LIVING"),
        (str(out / "train/img/14_03_1.png"), "ROOM"),
    ]
    lexicon = read_csv_rows(str(out / "test_lexicon50.csv"), ";").strict()
    assert [(r.image_path, r.label.split(" ")) for r in lexicon] == [
        (str(out / "test/img/18_01_0.png"), ["CAFÉ", "BAR"])
    ]


def test_malformed_xml_stops_with_its_line(root, tmp_path, capsys):
    (root / "test.xml").write_text(TEST_XML.replace("</tag>", "</tga>"), encoding="utf-8")
    out = tmp_path / "out"
    assert svt.main([str(root), "--output", str(out), "--splits", "test"]) == 2
    assert f"{root / 'test.xml'}, line 3: not well-formed XML (mismatched tag)" in (
        capsys.readouterr().err
    )
    assert not out.exists()
