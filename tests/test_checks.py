"""tf_crnn.checks: the start-up check of every CSV row. Each problem stops the run with the file,
the row and the problem, or with skip_bad_samples is skipped and counted; labels too long for
their image are always skipped and reported."""

import logging
import threading

import cv2
import numpy as np
import pytest
import tensorflow as tf
from helpers import concatenated, tiny_params, write_image

from tf_crnn import checks, network
from tf_crnn.checks import check_csv_files
from tf_crnn.csv_rows import DataError
from tf_crnn.data_handler import input_fn
from tf_crnn.images import fitted_width
from tf_crnn.network import required_time_steps


def load_error(csv, params=None):
    with pytest.raises(DataError) as error:
        check_csv_files(csv, params or tiny_params())
    return str(error.value)


def truncated_png():
    noise = np.random.default_rng(0).integers(0, 255, (32, 64), dtype=np.uint8)
    content = cv2.imencode(".png", noise)[1].tobytes()
    return content[: len(content) // 2]


# --- labels CTC cannot fit ------------------------------------------------------------------------
def test_required_time_steps_count_a_blank_between_repeated_units():
    assert required_time_steps([]) == 0
    assert required_time_steps([1, 2, 3]) == 3
    assert required_time_steps([0, 0, 1, 0]) == 5
    assert required_time_steps([4, 4, 4]) == 5


def test_labels_longer_than_the_time_steps_are_dropped_and_reported(
    tmp_path, write_csv, caplog, monkeypatch
):
    # Records reach caplog through the root logger, whatever an earlier task.main configured.
    monkeypatch.setattr(logging.getLogger("tf_crnn"), "propagate", True)
    write_image(tmp_path / "narrow.png", np.full((32, 24), 200, np.uint8))  # 24 columns: 5 steps
    lines = ["narrow.png;abab", "narrow.png;aaaa", "narrow.png;aaa", "narrow.png;ababab"]
    csv = write_csv(tmp_path / "data.csv", lines)
    params = tiny_params()
    assert network.time_steps(fitted_width(32, 24, params.input_shape)) == 5
    with caplog.at_level(logging.INFO, logger="tf_crnn"):
        samples = check_csv_files(csv, params)
    assert samples.usable_rows == 2  # "abab" and "aaa": 4 and 3 + 2 repeats = 5 steps
    assert samples.skipped_count == 2
    ((problem, where),) = samples.skipped.items()
    assert problem == "label too long for the CTC time steps of its image"
    assert where == [f"{csv}, row 2 (5 steps)", f"{csv}, row 4 (5 steps)"]
    report = samples.report()
    assert "2 samples" in report and "skipped 2" in report and f"{csv}, row 2" in report
    assert report in caplog.text
    _, texts = concatenated(input_fn(csv, params, "eval"), params)
    assert texts == ["abab", "aaa"]


# --- bad input: each stops with the file, the row and the problem ---------------------------------
def test_missing_csv(tmp_path):
    csv = str(tmp_path / "missing.csv")
    message = load_error(csv)
    assert csv in message and "not found" in message
    with pytest.raises(DataError, match="not found"):
        input_fn(csv, tiny_params(), "eval")
    with pytest.raises(DataError, match="No CSV file given"):
        check_csv_files([], tiny_params())


def test_empty_csv(tmp_path, write_csv):
    for name, lines in (("empty.csv", []), ("blank.csv", ["", "  ", ""])):
        csv = write_csv(tmp_path / name, lines)
        message = load_error(csv)
        assert csv in message and "no rows" in message


def test_missing_image(tmp_path, write_csv, good_image):
    lines = [f"{good_image};ab", f"{good_image};cd", "images/gone.png;ef"]
    csv = write_csv(tmp_path / "data.csv", lines)
    message = load_error(csv)
    assert f"{csv}, row 3" in message and "gone.png" in message and "not found" in message


def test_text_file_named_png(tmp_path, write_csv, good_image):
    (tmp_path / "images" / "text.png").write_text("this is not an image\n")
    csv = write_csv(tmp_path / "data.csv", [f"{good_image};ab", "images/text.png;cd"])
    message = load_error(csv)
    assert f"{csv}, row 2" in message and "text.png" in message and "not a readable" in message


def test_truncated_png(tmp_path, write_csv, good_image):
    (tmp_path / "images" / "cut.png").write_bytes(truncated_png())
    lines = [f"{good_image};ab", f"{good_image};ab", "images/cut.png;cd"]
    csv = write_csv(tmp_path / "data.csv", lines)
    message = load_error(csv)
    assert f"{csv}, row 3" in message and "cut.png" in message and "not a readable" in message


def test_zero_byte_image(tmp_path, write_csv, good_image):
    (tmp_path / "images" / "empty.png").write_bytes(b"")
    csv = write_csv(tmp_path / "data.csv", ["images/empty.png;ab", f"{good_image};ab"])
    message = load_error(csv)
    assert f"{csv}, row 1" in message and "empty.png" in message and "0 bytes" in message


def test_label_units_not_in_the_alphabet(tmp_path, write_csv, good_image):
    labels = ["ab", "a#", "é", "b#", "c", "#", "#", "#", "#", "#"]
    csv = write_csv(tmp_path / "data.csv", [f"{good_image};{label}" for label in labels])
    message = load_error(csv)
    assert "2 label unit(s) are not in the alphabet" in message
    (hash_line,) = [line for line in message.splitlines() if "'#'" in line]
    assert hash_line.count(csv) == 5 and hash_line.endswith("...")  # the first 5 of its 7 rows
    assert f"{csv}, row 2;" in hash_line and f"{csv}, row 4;" in hash_line
    assert f"{csv}, row 9" not in hash_line
    (accent_line,) = [line for line in message.splitlines() if "'é'" in line]
    assert accent_line.strip() == f"'é': {csv}, row 3"
    with pytest.raises(DataError, match="not in the alphabet"):
        input_fn(csv, tiny_params(), "train")


# --- skip_bad_samples -----------------------------------------------------------------------------
def test_skip_bad_samples_skips_and_counts_every_bad_row(tmp_path, write_csv, good_image):
    images = tmp_path / "images"
    (images / "text.png").write_text("not an image")
    (images / "cut.png").write_bytes(truncated_png())
    (images / "empty.png").write_bytes(b"")
    write_image(images / "narrow.png", np.full((32, 24), 200, np.uint8))
    csv = write_csv(
        tmp_path / "data.csv",
        [
            f"{good_image};ab",  # 1 good
            f"{good_image},ab",  # 2 no delimiter
            f"{good_image};a;b",  # 3 too many fields
            "images/gone.png;ab",  # 4 missing image
            "images/text.png;ab",  # 5 not an image
            "images/cut.png;ab",  # 6 truncated
            "images/empty.png;ab",  # 7 zero bytes
            f"{good_image};a#",  # 8 unknown unit
            f"{good_image};caf\xe9".encode("latin-1"),  # 9 not UTF-8
            f"{good_image};cd",  # 10 good
            "images/narrow.png;aaaa",  # 11 too long for its 5 time steps
        ],
    )
    params = tiny_params(skip_bad_samples=True)
    samples = check_csv_files(csv, params)
    assert samples.usable_rows == 2
    assert samples.skipped_count == 9
    skipped = {
        where[len(csv) + 2 :].split(" (")[0]: problem
        for problem, rows in samples.skipped.items()
        for where in rows
    }
    expected_rows = [f"row {n}" for n in range(2, 10)] + ["row 11"]
    assert sorted(skipped, key=lambda where: int(where.split()[1])) == expected_rows
    for row, words in (
        (2, "delimiter"),
        (3, "fields"),
        (4, "not found"),
        (5, "not a readable"),
        (6, "not a readable"),
        (7, "empty"),
        (8, "not in the alphabet"),
        (9, "UTF-8"),
        (11, "CTC time steps"),
    ):
        assert words in skipped[f"row {row}"], row
    report = samples.report()
    assert report.startswith("2 samples") and report.count("skipped") == len(samples.skipped)
    _, texts = concatenated(input_fn(csv, params, "eval"), params)
    assert texts == ["ab", "cd"]


def test_skip_bad_samples_reports_rows_in_file_order(tmp_path, write_csv, good_image):
    labels = ["ab"] + ["#"] * 11
    csv = write_csv(tmp_path / "data.csv", [f"{good_image};{label}" for label in labels])
    samples = check_csv_files(csv, tiny_params(skip_bad_samples=True))
    expected = [f"{csv}, row {n}" for n in range(2, 13)]
    assert samples.skipped["label unit not in the alphabet"] == expected
    first_five = "; ".join(f"{csv}, row {n}" for n in range(2, 7))
    assert f"{first_five} ..." in samples.report()


def test_skip_bad_samples_still_refuses_an_empty_csv(tmp_path, write_csv, good_image):
    bad = write_csv(tmp_path / "bad.csv", [f"{good_image};ab", f"{good_image}"])
    empty = write_csv(tmp_path / "empty.csv", [])
    params = tiny_params(skip_bad_samples=True)
    for files in ([empty, bad], [bad, empty]):
        message = load_error(files, params)
        assert empty in message and "no rows" in message


def test_skip_bad_samples_with_no_usable_row(tmp_path, write_csv):
    csv = write_csv(tmp_path / "data.csv", ["gone.png;ab", "also_gone.png;cd"])
    message = load_error(csv, tiny_params(skip_bad_samples=True))
    assert "no usable rows" in message and f"{csv}, row 2" in message
    assert "skipped 2 (image file not found)" in message


# --- the cache ------------------------------------------------------------------------------------
def test_the_check_is_redone_for_a_rewritten_csv_and_for_other_settings(
    tmp_path, write_csv, good_image
):
    csv = write_csv(tmp_path / "data.csv", [f"{good_image};ab"])
    params = tiny_params()
    assert check_csv_files(csv, params).usable_rows == 1
    write_csv(tmp_path / "data.csv", [f"{good_image};ab", f"{good_image};cd", f"{good_image};#"])
    assert "not in the alphabet" in load_error(csv, params)
    skipping = check_csv_files(csv, tiny_params(skip_bad_samples=True))
    assert skipping.usable_rows == 2
    with_hash = tiny_params(alphabet_units=["a", "b", "c", "d", "#"])
    assert check_csv_files(csv, with_hash).usable_rows == 3


def test_a_restart_reads_the_check_saved_in_the_job_directory(
    tmp_path, write_csv, good_image, monkeypatch
):
    csv = write_csv(tmp_path / "data.csv", [f"{good_image};ab", "images/gone.png;cd"])
    params = tiny_params(skip_bad_samples=True)
    job_dir = str(tmp_path / "job")
    tf.io.gfile.makedirs(job_dir)
    first = check_csv_files(csv, params, job_dir)
    assert first.usable_rows == 1 and first.skipped_counts == {"image file not found": 1}
    assert (tmp_path / "job" / "data_check.json").exists()

    checks._check_cached.cache_clear()  # a new process
    monkeypatch.setattr(checks, "_check_images", lambda *args: pytest.fail("checked again"))
    assert check_csv_files(csv, params, job_dir) == first
    # A task that is not the chief reads it too.
    assert check_csv_files(csv, params, job_dir, chief=False) == first
    # A rewritten CSV is checked again.
    write_csv(tmp_path / "data.csv", [f"{good_image};ab"])
    with pytest.raises(pytest.fail.Exception, match="checked again"):
        check_csv_files(csv, params, job_dir)


def test_a_task_that_is_not_the_chief_waits_for_the_chiefs_check(
    tmp_path, write_csv, good_image, monkeypatch
):
    csv = write_csv(tmp_path / "data.csv", [f"{good_image};ab"])
    params = tiny_params()
    job_dir = str(tmp_path / "job")
    tf.io.gfile.makedirs(job_dir)
    monkeypatch.setattr(checks, "POLL_SECONDS", 0.05)
    monkeypatch.setattr(checks, "WAIT_FOR_CHIEF_SECONDS", 0.2)
    with pytest.raises(DataError, match="the chief has not saved its check"):
        check_csv_files(csv, params, job_dir, chief=False)
    monkeypatch.setattr(checks, "WAIT_FOR_CHIEF_SECONDS", 30)
    chief = threading.Timer(0.3, lambda: check_csv_files(csv, params, job_dir, chief=True))
    chief.start()
    assert check_csv_files(csv, params, job_dir, chief=False).usable_rows == 1
    chief.join()


def test_above_the_row_limit_only_a_sample_of_images_is_checked(tmp_path, write_csv, good_image):
    csv = write_csv(tmp_path / "data.csv", [f"{good_image};ab"] * 40 + ["images/gone.png;ab"] * 2)
    params = tiny_params(check_all_images_up_to=20, check_sample_size=5, skip_bad_samples=True)
    checked = check_csv_files(csv, params)
    assert checked.images_checked == 5 and not checked.all_images_checked
    assert checked.usable_rows == 42  # syntax and alphabet are checked for every row
    assert "a random sample of 5 images checked" in checked.report()
    everything = check_csv_files(csv, tiny_params(skip_bad_samples=True))
    assert everything.images_checked == 42 and everything.usable_rows == 40
