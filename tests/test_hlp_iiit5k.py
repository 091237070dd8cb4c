"""hlp.iiit5k: the struct arrays of traindata.mat / testdata.mat to CSVs and per-image lexicon side
files, row for row; bad entries reported by file and entry."""

import copy
import os
import shutil
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest
import scipy.io as scipy_io
from helpers import write_image

from hlp import iiit5k
from tf_crnn.csv_rows import read_csv_rows


def lexicon(size, first, seed):
    """``size`` distinct words, ``first`` among them (the ground truth is always in its
    lexicons)."""
    return [first] + [f"{chr(ord('A') + seed)}{index:04d}" for index in range(size - 1)]


def write_mat(path, variable, entries):
    """``entries`` (image, ground truth, 50 words, 1000 words) as MATLAB writes IIIT5K's files: a
    1xN struct array whose lexicons are cell arrays of char."""
    fields = [("ImgName", "O"), ("GroundTruth", "O"), ("smallLexi", "O"), ("mediumLexi", "O")]
    array = np.zeros((1, len(entries)), dtype=fields)
    for index, (image, truth, small, medium) in enumerate(entries):
        cells = [np.array(words, dtype=object).reshape(1, -1) for words in (small, medium)]
        array[0, index] = (image, truth, *cells)
    scipy_io.savemat(str(path), {variable: array})


def entry(image, truth, seed):
    return image, truth, lexicon(50, truth, seed), lexicon(1000, truth, seed)


@pytest.fixture(scope="module")
def mat_files(tmp_path_factory):
    """traindata.mat with two images, testdata.mat with three (one label not ASCII, one all
    digits), written once: savemat takes a while for 1,000-word cell arrays."""
    folder = tmp_path_factory.mktemp("mat")
    entries = {
        "train": [entry("train/1009_2.png", "PRIVATE", 1), entry("train/1017_1.png", "2009", 2)],
        "test": [
            entry("test/1002_1.png", "EXIT", 3),
            entry("test/1002_2.png", "Café", 4),
            entry("test/1003_1.png", "SALE", 5),
        ],
    }
    for split, split_entries in entries.items():
        write_mat(folder / f"{split}data.mat", f"{split}data", split_entries)
    return folder, entries


@pytest.fixture
def root(tmp_path, mat_files):
    """IIIT5K/ as unpacked: the two .mat files and the images they name."""
    source, entries = mat_files
    folder = tmp_path / "IIIT5K"
    for split, split_entries in entries.items():
        for image, *_ in split_entries:
            write_image(folder / image, np.full((24, 60, 3), 90, np.uint8))
        shutil.copy(source / f"{split}data.mat", folder)
    return folder, copy.deepcopy(entries)


def test_csv_and_lexicon_files_row_for_row(root, tmp_path):
    folder, entries = root
    out = tmp_path / "csv"
    assert iiit5k.main([str(folder), "--output", str(out)]) == 0
    assert sorted(os.listdir(out)) == [
        f"{split}{suffix}.csv"
        for split in ("test", "train")
        for suffix in ("", "_lexicon1k", "_lexicon50")
    ]
    for split, split_entries in entries.items():
        paths = [f"../IIIT5K/{image}" for image, *_ in split_entries]
        assert (out / f"{split}.csv").read_text(encoding="utf-8") == "".join(
            f"{path};{truth}\n" for path, (_, truth, *_) in zip(paths, split_entries)
        )
        for name, index in (("50", 2), ("1k", 3)):
            assert (out / f"{split}_lexicon{name}.csv").read_text(encoding="utf-8") == "".join(
                f"{path};{' '.join(e[index])}\n" for path, e in zip(paths, split_entries)
            )

    # tf_crnn reads the CSV to the images and labels; the side file to each image's word list.
    rows = read_csv_rows(str(out / "test.csv"), ";").strict()
    assert [(os.path.normpath(r.image_path), r.label) for r in rows] == [
        (str(folder / image), truth) for image, truth, *_ in entries["test"]
    ]
    lexicon_rows = read_csv_rows(str(out / "test_lexicon1k.csv"), ";").strict()
    assert [r.image_path for r in lexicon_rows] == [r.image_path for r in rows]
    assert [len(r.label.split(" ")) for r in lexicon_rows] == [1000] * 3
    assert lexicon_rows[1].label.split(" ")[0] == "Café"


def test_bad_entries_reported_with_file_entry_and_image(root, tmp_path, capsys):
    folder, entries = root
    test = entries["test"]
    test[0] = entry("test/1002_1.png", "A;B", 3)  # the delimiter in the label
    test[1] = ("test/1002_2.png", "OK", ["TWO WORDS"] * 50, lexicon(1000, "OK", 4))
    test[2] = ("test/1003_1.png", np.zeros((0, 0)), lexicon(50, "X", 5), lexicon(1000, "X", 5))
    write_mat(folder / "testdata.mat", "testdata", test)
    out = tmp_path / "csv"
    assert iiit5k.main([str(folder), "--output", str(out), "--splits", "test"]) == 1
    err = capsys.readouterr().err
    mat = folder / "testdata.mat"
    assert f"{mat}, entry 1 (test/1002_1.png): label contains the delimiter ';'" in err
    assert (
        f"{mat}, entry 2 (test/1002_2.png): lexicon word contains a space "
        "(lexicon word 'TWO WORDS')"
    ) in err
    assert f"{mat}, entry 3 (test/1003_1.png): ImgName or GroundTruth is not text" in err
    assert (out / "test.csv").read_bytes() == b""
    assert not (out / "train.csv").exists()


def test_unreadable_or_wrong_mat_file_stops_with_its_name(root, tmp_path, capsys):
    folder, _ = root
    out = tmp_path / "csv"
    scipy_io.savemat(str(folder / "testdata.mat"), {"other": np.zeros(3)})
    assert iiit5k.main([str(folder), "-o", str(out), "--splits", "test"]) == 2
    assert f"{folder / 'testdata.mat'}: no variable 'testdata' (found: other)" in (
        capsys.readouterr().err
    )
    (folder / "testdata.mat").write_bytes(b"not a mat file")
    assert iiit5k.main([str(folder), "-o", str(out)]) == 2  # train.csv not written either
    assert f"{folder / 'testdata.mat'}: not a MATLAB v5 file scipy can read" in (
        capsys.readouterr().err
    )
    (folder / "traindata.mat").unlink()
    assert iiit5k.main([str(folder), "-o", str(out)]) == 2
    assert f"{folder / 'traindata.mat'}: file not found" in capsys.readouterr().err
    assert not out.exists()


def test_without_scipy_says_what_to_install(root, tmp_path, monkeypatch, capsys):
    folder, _ = root
    monkeypatch.setitem(sys.modules, "scipy.io", None)  # import scipy.io now fails
    assert iiit5k.main([str(folder), "-o", str(tmp_path / "csv")]) == 2
    assert "needs scipy: pip install 'tf_crnn[datasets]'" in capsys.readouterr().err
