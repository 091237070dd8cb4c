"""hlp.csv_path_convertor: relative paths become absolute, every other byte stays; --check finds
missing images."""

import os
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest

from hlp import csv_path_convertor as conv

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def dataset(tmp_path):
    """data/lines.csv listing images under data/img/ plus one absolute path elsewhere."""
    data = tmp_path / "data"
    (data / "img").mkdir(parents=True)
    for name in ("a.png", "b.png", "c d.png", "é.png"):
        (data / "img" / name).write_bytes(b"png")
    elsewhere = tmp_path / "elsewhere.png"
    elsewhere.write_bytes(b"png")
    return data, str(elsewhere)


def abs_bytes(data, name):
    return os.path.join(str(data), "img", name).encode("utf-8")


def test_relative_paths_made_absolute_rest_byte_identical(dataset):
    data, elsewhere = dataset
    labels = [
        "  Bonjour  l'été ".encode(),  # leading, trailing and double spaces
        "中文 العربية\t!".encode(),  # CJK, Arabic, a tab
        b"a|b|c",
        "e\u0301 ﬁ x".encode(),  # combining accent, ligature: not normalised
    ]
    content = b"".join(
        [
            b"img/a.png;" + labels[0] + b"\n",
            b"img/c d.png;" + labels[1] + b"\n",
            b"\n",  # blank line kept
            elsewhere.encode() + b";" + labels[2] + b"\n",
            "img/é.png;".encode() + labels[3] + b"\n",
        ]
    )
    csv = data / "lines.csv"
    csv.write_bytes(content)

    assert conv.main([str(csv)]) == 0
    out = data / "lines_abs.csv"  # the documented default
    assert out.read_bytes() == b"".join(
        [
            abs_bytes(data, "a.png") + b";" + labels[0] + b"\n",
            abs_bytes(data, "c d.png") + b";" + labels[1] + b"\n",
            b"\n",
            elsewhere.encode() + b";" + labels[2] + b"\n",
            abs_bytes(data, "é.png") + b";" + labels[3] + b"\n",
        ]
    )
    assert csv.read_bytes() == content  # input untouched

    # The converted file is read by tf_crnn to the same images and labels from any folder.
    from tf_crnn.csv_rows import read_csv_rows

    moved = data.parent / "moved.csv"
    moved.write_bytes(out.read_bytes())
    assert [(r.image_path, r.label) for r in read_csv_rows(str(moved), ";").rows] == [
        (r.image_path, r.label) for r in read_csv_rows(str(csv), ";").rows
    ]


def test_crlf_bom_no_final_newline_and_other_delimiter(dataset, tmp_path):
    data, _ = dataset
    csv = data / "win.csv"
    csv.write_bytes(b"\xef\xbb\xbfimg/a.png\tAB C \r\nimg/b.png\t;x;\r\n\r\nimg/a.png\tlast")
    target = tmp_path / "out" / "converted.csv"
    target.parent.mkdir()
    assert conv.main([str(csv), "--delimiter", "\t", "--output", str(target)]) == 0
    assert target.read_bytes() == b"".join(
        [
            b"\xef\xbb\xbf" + abs_bytes(data, "a.png") + b"\tAB C \r\n",
            abs_bytes(data, "b.png") + b"\t;x;\r\n\r\n",
            abs_bytes(data, "a.png") + b"\tlast",
        ]
    )


def test_check_reports_missing_rows_with_numbers(dataset, capsys):
    data, elsewhere = dataset
    csv = data / "lines.csv"
    csv.write_bytes(
        b"img/a.png;one\nimg/missing.png;two\n\nimg/b.png;three\n/no/such/file.png;four\n"
    )
    assert conv.main([str(csv), "--check"]) == 1
    out = capsys.readouterr().out
    missing = os.path.join(str(data), "img", "missing.png")
    assert f"{csv}, row 2: {missing} not found" in out
    assert f"{csv}, row 5: /no/such/file.png not found" in out
    assert "row 1" not in out and "row 4" not in out
    assert "2 of 4 image file(s) not found" in out
    assert sorted(os.listdir(data)) == ["img", "lines.csv"]  # nothing written

    good = data / "good.csv"
    good.write_bytes(b"img/a.png;one\r\n" + elsewhere.encode() + b";two\r\n")
    assert conv.main([str(good), "--check"]) == 0
    assert "all 2 image file(s) found" in capsys.readouterr().out
    assert not (data / "good_abs.csv").exists()


def test_malformed_row_named_with_its_row(dataset, capsys):
    data, _ = dataset
    csv = data / "bad.csv"
    csv.write_bytes(b"img/a.png;ok\nimg/b.png no delimiter\n")
    assert conv.main([str(csv)]) == 2
    assert f"{csv}, row 2" in capsys.readouterr().err
    assert not (data / "bad_abs.csv").exists()

    assert conv.main([str(csv), "--check"]) == 1
    assert f"{csv}, row 2: no ';' delimiter" in capsys.readouterr().out


def test_output_to_stdout(dataset, capsysbinary):
    data, _ = dataset
    csv = data / "lines.csv"
    csv.write_bytes("img/é.png;ça va\r\nimg/missing.png;x\r\n".encode())
    assert conv.main([str(csv), "--output", "-"]) == 0
    assert capsysbinary.readouterr().out == b"".join(
        [
            abs_bytes(data, "é.png") + ";ça va".encode() + b"\r\n",
            abs_bytes(data, "missing.png") + b";x\r\n",
        ]
    )
    assert sorted(os.listdir(data)) == ["img", "lines.csv"]


def test_command_line_check_exit_status(dataset):
    data, _ = dataset
    csv = data / "lines.csv"
    csv.write_bytes("img/é.png;ça va\r\nimg/missing.png;x\r\n".encode())
    check = subprocess.run(
        [sys.executable, "-m", "hlp.csv_path_convertor", str(csv), "--check"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert check.returncode == 1, check.stderr
    assert f"{csv}, row 2: " in check.stdout and "missing.png not found" in check.stdout
    assert "row 1" not in check.stdout


def test_url_csv_is_read_checked_and_written_through_gfile(ram_root, tmp_path, monkeypatch, capsys):
    """A CSV at a URL (ram:// standing in for gs://): its relative paths resolve inside the URL, and
    the converted copy is written there too, nothing locally."""
    import tensorflow as tf

    monkeypatch.chdir(tmp_path)
    data = f"{ram_root}/data"
    tf.io.gfile.makedirs(f"{data}/img")
    with tf.io.gfile.GFile(f"{data}/img/a.png", "wb") as f:
        f.write(b"png")
    csv = f"{data}/lines.csv"
    with tf.io.gfile.GFile(csv, "wb") as f:
        f.write("img/a.png;ça va\r\nimg/missing.png; x \r\n".encode())

    assert conv.main([csv, "--check"]) == 1
    out = capsys.readouterr().out
    assert f"{csv}, row 2: {data}/img/missing.png not found" in out and "row 1" not in out

    assert conv.main([csv]) == 0
    with tf.io.gfile.GFile(f"{data}/lines_abs.csv", "rb") as f:
        converted = f.read()
    assert converted == f"{data}/img/a.png;ça va\r\n{data}/img/missing.png; x \r\n".encode()
    assert os.listdir(tmp_path) == []  # no local "ram:" folder
