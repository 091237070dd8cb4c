"""``python -m tf_crnn.evaluate`` end to end, with the digit reader trained once per session
(conftest.py ``job``): the raw figures, the protocol table with a per-image and a global lexicon,
and the JSON report; then bad lexicon files.

The lexicons demonstrably correct readings: half the test images have their last digit painted
out, so the model misreads them, and each lexicon holds the true word with confusable ones.
"""

import json
import shutil

import cv2
import numpy as np
import pytest
from helpers import digit_line

from tf_crnn import evaluate, metrics, predict
from tf_crnn.lexicon import normalize

# No text ends in 1: the model tends to read a 1 at the edge of an image's content.
TEXTS = ["4826", "90357", "6148", "27309", "51736", "3094"]


def hidden_last_digit(text: str) -> np.ndarray:
    """``text``'s image with its last digit painted out: white where it would be."""
    image = np.full_like(digit_line(text), 255)
    visible = digit_line(text[:-1])
    image[:, : visible.shape[1]] = visible
    return image


def confusables(text: str) -> list[str]:
    """Words like ``text`` but for one visible digit, and words far from every reading."""
    first, second = (str((int(text[i]) + 5) % 10) for i in (0, 1))
    return [first + text[1:], text[0] + second + text[2:], "88888888", "13131313"]


@pytest.fixture(scope="module")
def test_set(tmp_path_factory):
    """digits.csv: each text clean and with its last digit hidden, and a row left out of the
    protocol; lexicon5.csv, its per-image lexicons; words.txt, a global word list; other.csv, two
    images no side file lists and a missing one."""
    folder = tmp_path_factory.mktemp("test_set")
    rows, lexicon_rows = [], []
    for index, text in enumerate(TEXTS):
        for kind, image in (("clean", digit_line(text)), ("hidden", hidden_last_digit(text))):
            name = f"{kind}_{index}.png"
            assert cv2.imwrite(str(folder / name), image)
            rows.append(f"{name};{text}")
            lexicon_rows.append(f"{name};{' '.join([text, *confusables(text)])}")
    assert cv2.imwrite(str(folder / "dash.png"), digit_line("123"))
    rows.append("dash.png;#-")  # nothing left once normalised: left out of the protocol
    lexicon_rows.append("dash.png;123 456")
    (folder / "digits.csv").write_text("\n".join(rows) + "\n")
    (folder / "lexicon5.csv").write_text("\n".join(lexicon_rows) + "\n")
    (folder / "words.txt").write_text("\n".join([*TEXTS, "123", "abc"]) + "\n")
    for index in (0, 1):
        shutil.copy(folder / f"clean_{index}.png", folder / f"other_{index}.png")
    (folder / "other.csv").write_text(
        f"other_0.png;{TEXTS[0]}\nother_1.png;{TEXTS[1]}\nmissing.png;{TEXTS[2]}\n"
    )
    return folder


def test_evaluate_reports_raw_figures_and_the_protocol_table_with_lexicons(
    job, predictor, test_set, capsys
):
    folder = test_set
    csv_rows = [line.split(";") for line in (folder / "digits.csv").read_text().splitlines()]
    readings = [p.text for p in predictor.predict_files([str(folder / f) for f, _ in csv_rows])]
    labels = [label for _, label in csv_rows]
    # What makes the test meaningful: the model reads clean digits and misreads hidden ones.
    right = {kind: [] for kind in ("clean", "hidden", "dash")}
    for (name, label), reading in zip(csv_rows, readings):
        right[name.split("_")[0].split(".")[0]].append(reading == label)
    assert not any(right["hidden"]) and sum(right["clean"]) >= 4, readings

    code = evaluate.main(
        [
            job.job_dir,
            "--csv", str(folder / "digits.csv"),
            "--csv", f"other={folder / 'other.csv'}",
            "--per-image-lexicon", str(folder / "lexicon5.csv"),
            "--lexicon", f"Full={folder / 'words.txt'}",
            "--score-all-up-to", "0",  # the paper's way: only words within 3 edits are scored
            "--json", str(folder / "report.json"),
        ]
    )  # fmt: skip
    out, err = capsys.readouterr()
    assert code == 1  # other.csv names a missing image
    assert f"{folder / 'missing.png'}: cannot read file" in err

    alphabet = predictor.alphabet
    raw = metrics.ErrorCounts.of(
        [alphabet.split(r) for r in readings], [*map(alphabet.split, labels)]
    )
    assert (
        f"13 labelled images: CER {raw.cer:.4f}, word accuracy {raw.word_accuracy:.4f}, "
        f"WER {raw.wer:.4f}" in out
    )
    assert "rows left out of the protocol (no letter or digit in the label): 1 of 13" in out
    assert "unreadable images, counted as wrong readings: 1" in out
    assert "lexicon Full: words with characters the model does not read, never chosen: 1 " in out

    lexicon_free = sum(normalize(r) == t for r, t in zip(readings, labels) if t != "#-") / 12
    assert lexicon_free < 0.75  # the hidden digits are misread...
    table = out[out.index("\ntest set ") + 1 :].splitlines()
    assert table[0].split() == ["test", "set", "images", "left", "out", "5", "Full", "None"]
    # ... and both lexicons correct them.
    assert table[1].split() == ["digits", "13", "1", "100.0", "100.0", f"{100 * lexicon_free:.1f}"]
    # other.csv: no per-image lexicon; its missing image counts as wrong.
    assert table[2].split() == ["other", "3", "0", "-", "66.7", "66.7"]

    report = json.loads((folder / "report.json").read_text())
    assert report["model"] == job.export and report["columns"] == ["5", "Full", "None"]
    digits, other = report["sets"]
    assert digits["protocol_word_accuracy"] == {"5": 1.0, "Full": 1.0, "None": lexicon_free}
    assert digits["word_accuracy"] == raw.word_accuracy and digits["left_out"] == 1
    assert digits["lexicons"]["Full"] == {"correct": 12, "fallbacks": 0, "unscorable_words": 1}
    assert other["protocol_word_accuracy"]["5"] is None and other["unreadable"] == 1


def test_bad_lexicon_files_are_named_before_any_image_is_read(job, test_set, tmp_path, capsys):
    digits_csv = str(test_set / "digits.csv")
    lexicon_rows = (test_set / "lexicon5.csv").read_text().splitlines()
    partial = tmp_path / "partial.csv"
    partial.write_text("".join(f"{test_set / row}\n" for row in lexicon_rows[:3]))
    elsewhere = tmp_path / "elsewhere.csv"  # relative paths, but not beside the images
    elsewhere.write_text("\n".join(lexicon_rows) + "\n")
    wordless = tmp_path / "wordless.csv"
    wordless.write_text(f"{test_set / 'clean_0.png'};\n")
    cases = {
        str(partial): (
            f"{partial} has no lexicon for {digits_csv}, row 4 ({test_set / 'hidden_1.png'}); "
            f"it has lexicons for 3 of that file's 13 images"
        ),
        str(wordless): f"{wordless}, row 1: no lexicon words for {test_set / 'clean_0.png'}",
        str(elsewhere): (
            f"{elsewhere} lists no image of the test sets (e.g. it lists "
            f"{tmp_path / 'clean_0.png'}): are its paths relative to its own folder?"
        ),
        str(tmp_path / "nowhere.csv"): f"{tmp_path / 'nowhere.csv'}: CSV file not found",
    }
    for side_file, message in cases.items():
        argv = [job.job_dir, "--csv", digits_csv, "--per-image-lexicon", side_file]
        assert evaluate.main(argv) == 2
        out, err = capsys.readouterr()
        assert err == f"error: {message}\n" and "labelled images" not in out
    assert evaluate.main([job.job_dir, "--csv", digits_csv, "--csv", f"digits={digits_csv}"]) == 2
    assert "two test sets are named 'digits'" in capsys.readouterr().err


def test_a_lexicon_needs_an_export_with_frame_log_probs(job, test_set, monkeypatch, capsys):
    # As if the export had been made before SavedModels had the output.
    monkeypatch.setattr(predict, "SIGNATURE_WITH_FRAMES", "frame_scores")
    argv = [job.job_dir, "--csv", str(test_set / "digits.csv")]
    assert evaluate.main([*argv, "--lexicon", str(test_set / "words.txt")]) == 2
    assert capsys.readouterr().err == (
        f"error: {job.export} has no frame_scores signature (exported by an older tf_crnn): "
        "export it again with python -m tf_crnn.export_model --job-dir JOB_DIR\n"
    )
