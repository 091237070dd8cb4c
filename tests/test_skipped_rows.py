"""tf_crnn.skipped_rows: a bad row met while training stops the run naming it, or is skipped,
counted once and listed in the job directory."""

import logging

import pytest
import tensorflow as tf

from tf_crnn import skipped_rows
from tf_crnn.skipped_rows import BadRowError, SkippedRows


def test_without_skipping_a_bad_row_stops_with_file_row_and_problem():
    account = SkippedRows(None)
    with pytest.raises(BadRowError) as error:
        account.handle("data.csv", 7, "image file not found", skip=False, image_path="/i/7.png")
    wrapped = tf.errors.UnknownError(None, None, f"Traceback...\n{error.value}\n  more lines")
    assert (
        skipped_rows.bad_row_message(wrapped) == "data.csv, row 7: /i/7.png: image file not found"
    )
    assert skipped_rows.bad_row_message(tf.errors.UnknownError(None, None, "other")) is None


def test_skipped_rows_are_counted_once_and_listed(tmp_path, caplog, monkeypatch):
    monkeypatch.setattr(logging.getLogger("tf_crnn"), "propagate", True)
    account = skipped_rows.for_job_dir(str(tmp_path))
    assert skipped_rows.for_job_dir(str(tmp_path)) is account  # one account per job directory
    with caplog.at_level(logging.WARNING, logger="tf_crnn"):
        for _epoch in range(2):
            account.handle("a.csv", 3, "image file not found", skip=True, image_path="x.png")
            account.handle("a.csv", 9, "not a readable image (bad)", skip=True, image_path="y.png")
    assert account.counts == {"image file not found": 1, "not a readable image": 1}
    listed = (tmp_path / "skipped_rows.csv").read_text().splitlines()
    assert listed == [
        "row;image;problem",
        "a.csv, row 3;x.png;image file not found",
        "a.csv, row 9;y.png;not a readable image (bad)",
    ]
    assert "skipped a.csv, row 9: not a readable image (bad) (2 rows skipped so far)" in caplog.text
    assert "(3 rows skipped so far)" not in caplog.text  # the second epoch adds nothing
    assert not list(tmp_path.glob("*.tmp*"))
