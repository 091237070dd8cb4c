"""hlp.iam_lines: ascii/lines.txt to a CSV of line images, '|' turned into spaces, 'err' lines kept
or dropped, a split file of line ids applied; bad lines reported by file and line."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest
from helpers import write_image

from hlp import iam_lines
from tf_crnn.csv_rows import read_csv_rows

LINES_TXT = """\
#--- lines.txt ---------------------------------------------------------------#
#
# iam database line information
#
# format: a01-000u-00 ok 154 19 408 746 1663 91 A|MOVE|to|stop|Mr.|Gaitskell|from
#
a01-000u-00 ok 154 19 408 746 1661 89 A|MOVE|to|stop|Mr.|Gaitskell|from
a01-000u-01 ok 156 19 395 932 1850 105 nominating|any|more|Labour|life|Peers
a01-000u-02 err 157 16 408 1106 1820 94 "|It|is|,|"|said|he|,
a01-000x-00 ok 154 2 408 746 1661 89 (x)|1;2
b04-000-00 ok 182 12 342 806 1806 88 He|said
"""
LABELS = {
    "a01-000u-00": "A MOVE to stop Mr. Gaitskell from",
    "a01-000u-01": "nominating any more Labour life Peers",
    "a01-000u-02": '" It is , " said he ,',
    "b04-000-00": "He said",
}


@pytest.fixture
def root(tmp_path):
    """The IAM folder: ascii/lines.txt and the line images under lines/<writer>/<form>/."""
    folder = tmp_path / "iam"
    (folder / "ascii").mkdir(parents=True)
    (folder / "ascii" / "lines.txt").write_text(LINES_TXT, encoding="utf-8")
    for line_id in [*LABELS, "a01-000x-00"]:
        writer, form, _ = line_id.split("-")
        image = folder / "lines" / writer / f"{writer}-{form}" / f"{line_id}.png"
        write_image(image, np.full((40, 200), 220, np.uint8))
    return folder


def csv_lines(line_ids):
    return "".join(f"lines/{i[:3]}/{i.rsplit('-', 1)[0]}/{i}.png;{LABELS[i]}\n" for i in line_ids)


def test_every_line_kept_by_default_err_dropped_on_request(root, capsys):
    out = root / "all.csv"
    lines_txt = root / "ascii" / "lines.txt"
    assert iam_lines.main([str(root), "--output", str(out)]) == 1
    assert out.read_text(encoding="utf-8") == csv_lines(LABELS)
    err = capsys.readouterr().err
    assert f"{lines_txt}, line 10: label contains the delimiter ';' (label '(x) 1;2'" in err
    assert "1 problem(s)" in err

    # tf_crnn reads it to the images on disk and the labels with spaces.
    rows = read_csv_rows(str(out), ";").strict()
    assert [r.label for r in rows] == list(LABELS.values())
    assert all(os.path.exists(r.image_path) for r in rows)

    assert iam_lines.main([str(root), "-o", str(out), "--drop-err", "--delimiter", "\t"]) == 0
    assert "1 line(s) flagged 'err' left out" in capsys.readouterr().out
    labels = [r.label for r in read_csv_rows(str(out), "\t").strict()]
    assert labels == [LABELS["a01-000u-00"], LABELS["a01-000u-01"], "(x) 1;2", LABELS["b04-000-00"]]


def test_split_file_of_line_ids(root, tmp_path, capsys):
    ids = tmp_path / "testset.txt"
    ids.write_text("b04-000-00\na01-000u-01\n\nz99-999-99\n", encoding="utf-8")
    out = tmp_path / "csv" / "test.csv"
    assert iam_lines.main([str(root), "--ids", str(ids), "--output", str(out)]) == 1
    assert out.read_text(encoding="utf-8") == csv_lines(["a01-000u-01", "b04-000-00"]).replace(
        "lines/", "../iam/lines/"
    )
    err = capsys.readouterr().err
    assert f"{ids}, line 4: line id not in {root / 'ascii' / 'lines.txt'} (z99-999-99)" in err
    assert "1 problem(s)" in err  # the ';' label is not in this split


def test_malformed_lines_reported(root, capsys):
    lines_txt = root / "ascii" / "lines.txt"
    lines_txt.write_text(
        "# comment\n"
        "a01-000u-00 ok 154 19 408 746 1661 89 A|MOVE\n"
        "a01-000u-01 ok 156 19 395 932 1850 105 two words\n"  # 3: ten fields
        "a01-000u-02 maybe 157 16 408 1106 1820 94 It\n"  # 4: neither ok nor err
        "a01_000u_03 ok 157 16 408 1106 1820 94 It\n",  # 5: not FORM-PART-LINE
        encoding="utf-8",
    )
    assert iam_lines.main([str(root), "--output", str(root / "out.csv")]) == 1
    err = capsys.readouterr().err
    assert f"{lines_txt}, line 3: expected 9 fields separated by single spaces, found 10" in err
    assert f"{lines_txt}, line 4: segmentation result is neither 'ok' nor 'err' ('maybe')" in err
    assert f"{lines_txt}, line 5: line id is not FORM-PART-LINE ('a01_000u_03')" in err
    assert (root / "out.csv").read_text() == "lines/a01/a01-000u/a01-000u-00.png;A MOVE\n"
