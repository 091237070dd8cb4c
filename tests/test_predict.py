"""tf_crnn.predict: finding a SavedModel, ``Predictor`` on paths, bytes and arrays, error reasons,
and ``python -m tf_crnn.predict``.

The model is the ``job`` trained once per session (conftest.py); ``expected`` is what
``Estimator.predict`` gives for the same images.
"""

import os

import cv2
import numpy as np
import pytest
import tensorflow as tf
from helpers import encode

from tf_crnn import metrics, predict
from tf_crnn.alphabet import Alphabet

# A label far from any prediction, so that its row heads the CLI's list of worst predictions.
WRONG_LABEL = "0000000000"


def test_find_saved_model_and_export_names(tmp_path):
    def saved_model(*parts):
        folder = tmp_path.joinpath(*parts)
        folder.mkdir(parents=True)
        (folder / "saved_model.pb").write_bytes(b"")
        return str(folder)

    job_dir = tmp_path / "job"
    saved_model("job", "export", "latest", "100")
    newest = saved_model("job", "export", "best", "200")
    (job_dir / "export" / "best" / "temp-300").mkdir()  # an export still being written
    assert predict.export_names(str(job_dir / "export" / "best")) == ["200"]
    assert predict.export_names(str(tmp_path / "nowhere")) == []
    assert predict.find_saved_model(str(job_dir)) == newest
    assert predict.find_saved_model(str(job_dir / "export" / "latest")).endswith("100")
    assert predict.find_saved_model(newest) == newest
    with pytest.raises(FileNotFoundError, match="neither a SavedModel"):
        predict.find_saved_model(str(tmp_path / "nowhere"))


def test_error_reason_is_the_cause_without_graph_frames():
    error = tf.errors.InvalidArgumentError(
        None,
        None,
        "Graph execution error:\n\nDetected at node x\nInput is empty.\n\t [[{{node D}}]]",
    )
    assert predict.error_reason(error) == "Input is empty."
    assert (
        predict.error_reason(tf.errors.NotFoundError(None, None, "no such file")) == "no such file"
    )
    assert predict.error_reason(OSError("disk gone")) == "disk gone"


def test_the_command_names_an_image_problem_without_tensorflows_wrapper():
    def reason(message):
        error = tf.errors.InvalidArgumentError(None, None, f"{message}\n\t [[{{{{node a}}}}]]")
        return predict.one_image_reason(error)

    assert reason("assertion failed: [image_bytes[0]: empty (0 bytes)]") == "empty (0 bytes)"
    assert (
        reason("assertion failed: [image_bytes[0]: GIF of 3 frames: more than the [1, 2] allowed]")
        == "GIF of 3 frames: more than the [1, 2] allowed"
    )
    assert reason("Invalid PNG data, size 60") == "Invalid PNG data, size 60"


def test_batches_of_1_7_and_64_give_the_same_predictions(lines, expected, predictor, monkeypatch):
    for batch_size in (1, 7, 64):
        monkeypatch.setattr(predictor, "batch_size", batch_size)
        predictions = predictor.predict_bytes(lines.contents)
        assert [p.text for p in predictions] == [w.decode() for w in expected["words"]], batch_size
        scores = [p.scores for p in predictions]
        np.testing.assert_allclose(scores, expected["scores"], rtol=1e-4, atol=1e-3)


def test_predictor_loads_a_job_directory_and_reads_paths_bytes_and_arrays(
    job, lines, expected, predictor
):
    assert predictor.path == job.export
    assert predictor.batch_size == job.params.eval_batch_size  # the model's own setting by default
    # A folder of versions, as TF Serving is pointed at, means its newest version.
    best = os.path.join(job.job_dir, "export", "best")
    newest = os.path.join(best, max(predict.export_names(best), key=int))
    assert predict.find_saved_model(best) == newest
    words = [w.decode() for w in expected["words"]]
    assert [p.text for p in predictor.predict_files(lines.paths)] == words
    assert [p.source for p in predictor.predict_files(lines.paths)] == lines.paths
    assert [p.text for p in predictor.predict_bytes(lines.contents)] == words
    # Arrays as an application holds them: gray [h, w], RGB and RGBA (OpenCV reads BGR).
    chosen = [
        i for i, path in enumerate(lines.paths) if path.endswith((".png", ".png_rgba", ".bmp"))
    ]
    arrays = []
    for i in chosen[:9]:
        image = cv2.imread(lines.paths[i], cv2.IMREAD_UNCHANGED)
        if image.ndim == 3:
            to_rgb = cv2.COLOR_BGRA2RGBA if image.shape[2] == 4 else cv2.COLOR_BGR2RGB
            image = cv2.cvtColor(image, to_rgb)
        arrays.append(image)
    assert {array.ndim if array.ndim == 2 else array.shape[2] for array in arrays} == {2, 3, 4}
    assert [p.text for p in predictor.predict_arrays(arrays)] == [words[i] for i in chosen[:9]]


def test_predictor_names_the_bad_images_and_reads_the_others_of_their_batch(
    lines, expected, predictor
):
    one_pixel = encode(np.zeros((1, 1), np.uint8), "png")
    contents = [lines.contents[0], b"not an image", b"", one_pixel, lines.contents[1]]
    predictions = predictor.predict_bytes(contents)
    assert [p.error for p in predictions] == [
        None,
        "cannot decode image: Unknown image file format. One of JPEG, PNG, GIF, BMP required.",
        "cannot decode image: empty (0 bytes)",
        None,
        None,
    ]
    assert [predictions[i].text.encode() for i in (0, 4)] == list(expected["words"][:2])
    assert [p.source for p in predictions] == [f"image {i}" for i in range(5)]


# --- python -m tf_crnn.predict --------------------------------------------------------------------
def test_predict_cli_reports_cer_word_accuracy_worst_errors_and_unreadable_files(
    job, lines, expected, tmp_path, capsys
):
    (tmp_path / "broken.png").write_bytes(b"not an image")
    rows = [f"{path};{label}" for path, label in zip(lines.paths, lines.labels)]
    missing, broken = tmp_path / "missing.png", tmp_path / "broken.png"
    rows += [f"{missing};123", f"{broken};456", f"{lines.paths[0]};{WRONG_LABEL}"]
    (tmp_path / "labelled.csv").write_text("\n".join(rows) + "\n")

    code = predict.main(
        [
            "--model",
            job.job_dir,
            "--csv",
            str(tmp_path / "labelled.csv"),
            "--output",
            str(tmp_path / "out.csv"),
            "--batch-size",
            "16",
        ]
    )
    out, err = capsys.readouterr()
    assert code == 1  # some images could not be read
    assert f"{missing}: cannot read file" in err
    assert f"{broken}: cannot decode image: Unknown image file format" in err

    alphabet = Alphabet.from_params(job.params)
    words = [w.decode() for w in expected["words"]]
    counts = metrics.ErrorCounts.of(
        [alphabet.split(w) for w in words + [words[0]]],
        [alphabet.split(label) for label in lines.labels + [WRONG_LABEL]],
    )
    summary = (
        f"{len(words) + 1} labelled images: CER {counts.cer:.4f}, "
        f"word accuracy {counts.word_accuracy:.4f}"
    )
    assert summary in out
    assert counts.word_accuracy >= 0.8  # the tiny model really reads the digits, in every format
    assert f"{lines.paths[0]}  {words[0]!r}  {WRONG_LABEL!r}" in out.split("worst predictions")[1]
    written = (tmp_path / "out.csv").read_text().splitlines()
    assert len(written) == len(rows)
    assert written[0].split(";")[:2] == [lines.paths[0], words[0]]
    assert written[-3].split(";") == [str(missing), "", "", "123"]


def test_predict_cli_on_image_files(job, lines, expected, capsys):
    assert predict.main(["--model", job.export, "--images", *lines.paths[:2]]) == 0
    printed = [line.split("\t") for line in capsys.readouterr().out.splitlines()]
    assert [(path, text.encode()) for path, text, _ in printed] == list(
        zip(lines.paths[:2], expected["words"][:2])
    )


def test_predict_cli_without_a_model(tmp_path, capsys):
    assert predict.main(["--model", str(tmp_path), "--images", "a.png"]) == 2
    assert "is neither a SavedModel" in capsys.readouterr().err


def test_predictions_carry_their_units(lines, predictor):
    for prediction in predictor.predict_files(lines.paths[:8]):
        assert "".join(prediction.units) == prediction.text
        assert all(unit in predictor.alphabet.units for unit in prediction.units)


def test_accuracy_is_counted_unit_by_unit_with_a_split_delimiter(capsys):
    alphabet = Alphabet(["ch", "a", "t"], split_delimiter="|")
    readings = [
        predict.Prediction("1.png", "chat", units=["ch", "a", "t"]),
        predict.Prediction("2.png", "chat", units=["ch", "a", "t"]),
    ]
    predict.report_accuracy(alphabet, readings, ["ch|a|t", "ch|a|a"])
    out = capsys.readouterr().out
    assert "2 labelled images: CER 0.1667, word accuracy 0.5000" in out
    assert "1  2.png  'chat'  'ch|a|a'" in out
