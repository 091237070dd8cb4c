"""tf_crnn.csv_rows: the rows of a CSV file, good and malformed, and where their image paths point.

Each malformed row is tested twice: as read_csv_rows reports it, and as the start-up check
(checks.check_csv_files) stops the run with the file, the row and the problem.
"""

import os

import numpy as np
import pytest
from helpers import batches, concatenated, tiny_params, write_image

from tf_crnn.alphabet import Alphabet
from tf_crnn.checks import check_csv_files
from tf_crnn.csv_rows import BadRow, DataError, Row, read_csv_rows, resolve_image_path
from tf_crnn.data_handler import input_fn


def load_error(csv):
    with pytest.raises(DataError) as error:
        check_csv_files(csv, tiny_params())
    return str(error.value)


def the_bad_row(csv) -> BadRow:
    content = read_csv_rows(csv, ";")
    (bad,) = content.bad_rows
    with pytest.raises(DataError) as error:
        content.strict()
    assert str(error.value) == f"{bad.where}: {bad.problem}"
    return bad


# --- good rows ------------------------------------------------------------------------------------
def test_rows_in_file_order_with_line_numbers_and_resolved_paths(tmp_path, write_csv):
    csv = write_csv(
        tmp_path / "data.csv", ["a.png;ab", "", "  ", "sub/b.png; c d ", "/abs/c.png;x"]
    )
    content = read_csv_rows(csv, ";")
    assert content.bad_rows == []
    assert (
        content.strict()
        == content.rows
        == [
            Row(csv, 1, str(tmp_path / "a.png"), "ab"),
            Row(csv, 4, str(tmp_path / "sub" / "b.png"), " c d "),  # labels are kept as written
            Row(csv, 5, "/abs/c.png", "x"),
        ]
    )
    assert content.rows[1].where == f"{csv}, row 4"


def test_unicode_labels_bom_and_windows_line_endings(tmp_path, good_image):
    labels = ("café", "北京", "سلام")
    content = "\ufeff" + "".join(f"{good_image};{label}\r\n" for label in labels)
    (tmp_path / "data.csv").write_bytes(content.encode("utf-8"))
    csv = str(tmp_path / "data.csv")
    assert [row.label for row in read_csv_rows(csv, ";").strict()] == list(labels)
    params = tiny_params(alphabet_units=list("café北京سلام"))
    features, codes = zip(*batches(input_fn(csv, params, "eval", batch_size=3)))
    alphabet = Alphabet.from_params(params)
    assert [alphabet.decode(row) for row in codes[0]] == ["café", "北京", "سلام"]
    assert features[0]["filenames"][0].decode() == str(tmp_path / good_image)


def test_labels_optional_rows_of_image_paths_only(tmp_path, write_csv):
    csv = write_csv(tmp_path / "data.csv", ["a.png", "b.png;", "c.png;cc"])
    content = read_csv_rows(csv, ";", labels_optional=True)
    assert [(row.image_path, row.label) for row in content.strict()] == [
        (str(tmp_path / "a.png"), ""),
        (str(tmp_path / "b.png"), ""),
        (str(tmp_path / "c.png"), "cc"),
    ]
    assert [bad.problem for bad in read_csv_rows(csv, ";").bad_rows] == [
        "no ';' delimiter between image path and label",
        "empty label",
    ]


# --- image paths ----------------------------------------------------------------------------------
def test_resolve_image_path():
    assert resolve_image_path("/data/set.csv", "imgs/a.png") == "/data/imgs/a.png"
    assert resolve_image_path("/data/set.csv", "/elsewhere/a.png") == "/elsewhere/a.png"
    assert (
        resolve_image_path("gs://bucket/data/set.csv", "imgs/a.png")
        == "gs://bucket/data/imgs/a.png"
    )
    assert resolve_image_path("gs://bucket/set.csv", "gs://other/a.png") == "gs://other/a.png"
    assert resolve_image_path("/data/set.csv", "ram://x/a.png") == "ram://x/a.png"
    relative = resolve_image_path(os.path.join("data", "set.csv"), "a.png")
    assert relative == os.path.join(os.getcwd(), "data", "a.png")


def test_relative_paths_resolve_against_the_csv_folder(tmp_path, write_csv, monkeypatch):
    write_image(tmp_path / "data" / "imgs" / "a.png", np.full((32, 40), 50, np.uint8))
    absolute = write_image(tmp_path / "elsewhere" / "b.png", np.full((32, 40), 60, np.uint8))
    write_csv(tmp_path / "data" / "set.csv", ["imgs/a.png;ab", f"{absolute};cd"])
    os.makedirs(tmp_path / "run")
    monkeypatch.chdir(tmp_path / "run")
    params = tiny_params()
    dataset = input_fn(os.path.join("..", "data", "set.csv"), params, "eval")
    features, texts = concatenated(dataset, params)
    assert [os.path.normpath(f.decode()) for f in features["filenames"]] == [
        str(tmp_path / "data" / "imgs" / "a.png"),
        absolute,
    ]
    assert texts == ["ab", "cd"]
    np.testing.assert_allclose(features["images"][0, :, :40], 50 / 255, atol=1e-6)


# --- malformed rows -------------------------------------------------------------------------------
def test_missing_csv_file(tmp_path):
    csv = str(tmp_path / "missing.csv")
    with pytest.raises(DataError, match="CSV file not found") as error:
        read_csv_rows(csv, ";")
    assert csv in str(error.value)


def test_row_without_delimiter(tmp_path, write_csv, good_image):
    lines = [f"{good_image};ab", f"{good_image};cd", f"{good_image},ef"]
    csv = write_csv(tmp_path / "data.csv", lines)
    message = load_error(csv)
    assert f"{csv}, row 3" in message and "no ';' delimiter" in message
    bad = the_bad_row(csv)
    assert (bad.line_number, bad.kind) == (3, "no ';' delimiter between image path and label")


def test_row_with_too_many_fields(tmp_path, write_csv, good_image):
    csv = write_csv(tmp_path / "data.csv", [f"{good_image};ab", f"{good_image};c;d"])
    message = load_error(csv)
    assert f"{csv}, row 2" in message and "3 fields where 2 are expected" in message
    bad = the_bad_row(csv)
    assert bad.line_number == 2 and bad.kind == "3 fields where 2 are expected"


@pytest.mark.parametrize(
    "line, problem", [(";ab", "empty image path"), ("images/good.png;", "empty label")]
)
def test_row_with_an_empty_field(tmp_path, write_csv, good_image, line, problem):
    csv = write_csv(tmp_path / "data.csv", [f"{good_image};ab", line])
    message = load_error(csv)
    assert f"{csv}, row 2" in message and problem in message
    assert the_bad_row(csv).problem == problem


def test_non_utf8_label(tmp_path, write_csv, good_image):
    latin1 = f"{good_image};caf\xe9".encode("latin-1")
    csv = write_csv(tmp_path / "data.csv", [f"{good_image};ab", latin1])
    message = load_error(csv)
    assert f"{csv}, row 2" in message and "UTF-8" in message
    bad = the_bad_row(csv)
    assert bad.problem == f"not valid UTF-8 (byte {len(good_image) + 4})"
    assert bad.kind == "not valid UTF-8"


def test_bad_rows_do_not_stop_the_reading(tmp_path, write_csv, good_image):
    lines = [f"{good_image},ab", f"{good_image};ab", f"{good_image};a;b", ";x", f"{good_image};cd"]
    csv = write_csv(tmp_path / "data.csv", lines)
    content = read_csv_rows(csv, ";")
    assert [(row.line_number, row.label) for row in content.rows] == [(2, "ab"), (5, "cd")]
    assert [(bad.line_number, bad.kind) for bad in content.bad_rows] == [
        (1, "no ';' delimiter between image path and label"),
        (3, "3 fields where 2 are expected"),
        (4, "empty image path"),
    ]
    with pytest.raises(DataError, match="row 1: no ';' delimiter"):
        content.strict()
