"""hlp.dataset_csv, what the converters of standard data sets share: they run as modules, refuse
delimiters that cannot work, cap the problem listing but count everything, never leave a
half-written CSV, and write image paths that resolve from the CSV's folder."""

import os
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest

from hlp import dataset_csv, icdar_words

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Each converter's --help names where its data set comes from and the layout it expects.
HELP_MENTIONS = {
    "mjsynth": ["robots.ox.ac.uk/~vgg/data/text", "annotation_train.txt", "lexicon.txt"],
    "iiit5k": ["cvit.iiit.ac.in", "traindata.mat", "smallLexi", "test_lexicon50.csv"],
    "svt": ["vision.ucsd.edu/~kai/svt", "<taggedRectangle", "test_lexicon50.csv", "clipped"],
    "icdar_words": ["rrc.cvc.uab.es", 'word_1.png, "Tiredness"', "Challenge4_Test_Task3_GT.txt"],
    "iam_lines": ["fki.tic.heia-fr.ch", "ascii/lines.txt", "lines/a01/a01-000u/", "--drop-err"],
}


@pytest.mark.parametrize("module", sorted(HELP_MENTIONS))
def test_converter_runs_as_a_module_and_its_help_says_source_and_layout(module):
    result = subprocess.run(
        [sys.executable, "-m", f"hlp.{module}", "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: python -m hlp.{module} ")
    assert [text for text in HELP_MENTIONS[module] if text not in result.stdout] == []
    assert "Exit status: 0 all converted, 1 some samples left out" in result.stdout


@pytest.mark.parametrize("delimiter", [" ", "/", "\n", "ab"])
def test_delimiters_that_cannot_work_are_refused(tmp_path, delimiter, capsys):
    with pytest.raises(SystemExit) as exit_status:
        icdar_words.main([str(tmp_path / "gt.txt"), "-o", "x.csv", "--delimiter", delimiter])
    assert exit_status.value.code == 2
    assert "--delimiter must be one character other than a space, '/'" in capsys.readouterr().err


def test_problem_listing_is_capped_the_count_is_not(tmp_path, capsys):
    gt = tmp_path / "gt.txt"
    gt.write_text("".join(f"word_{i}.png, unquoted\n" for i in range(1, 6)), encoding="utf-8")
    out = tmp_path / "out.csv"
    assert icdar_words.main([str(gt), "-o", str(out), "--show-problems", "2"]) == 1
    err = capsys.readouterr().err
    assert [line.split(": ")[0] for line in err.splitlines() if line.startswith(str(gt))] == [
        f"{gt}, line 1",
        f"{gt}, line 2",
    ]
    assert "5 problem(s)" in err and "5 x label is not in double quotes" in err
    assert "(the first 2 are listed above; --show-problems shows more)" in err


def test_failed_conversion_leaves_no_partial_files(tmp_path, monkeypatch):
    monkeypatch.setattr(dataset_csv, "ROWS_PER_WRITE", 1)  # rows reach the files at once
    problems = dataset_csv.Problems(shown=10)
    csv_path = str(tmp_path / "out" / "test.csv")
    with pytest.raises(KeyboardInterrupt):
        with dataset_csv.CsvWriter(csv_path, str(tmp_path), ";", problems, ["50"]) as writer:
            assert writer.add("gt.txt, line 1", "img/a.png", "A", [["A", "B"]])
            assert sorted(os.listdir(tmp_path / "out")) == [
                "test.csv.partial",
                "test_lexicon50.csv.partial",
            ]
            raise KeyboardInterrupt
    assert os.listdir(tmp_path / "out") == []


def test_image_prefix_makes_paths_resolve_from_the_csv_folder(tmp_path):
    data, out = str(tmp_path / "data"), str(tmp_path / "out" / "csv")
    assert dataset_csv.image_prefix(data, data) == ""
    assert dataset_csv.image_prefix(data, out) == "../../data/"
    assert dataset_csv.image_prefix("gs://bucket/data/", "gs://bucket/data") == ""
    assert dataset_csv.image_prefix("gs://bucket/data", "gs://bucket/csv") == "gs://bucket/data/"
    assert dataset_csv.image_prefix("gs://bucket/data", out) == "gs://bucket/data/"
