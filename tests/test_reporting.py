"""tf_crnn.reporting: what a person watching a run sees: the evaluation table, the loss lines of
ProgressHook, the evaluation listener (and its report to a tuning service), samples.png and the
closing summary."""

import io
import json
import os
import re

import cv2
import numpy as np
import pytest
import tensorflow as tf

from tf_crnn import cloud, constants, model, reporting, visualize
from tf_crnn.images import decode_image

RESULTS = {"global_step": 120, "loss": 1.23456, "cer": 0.1, "wer": 0.25, "word_accuracy": 0.5}


# --- the evaluation table -------------------------------------------------------------------------
def test_format_eval_table_layout():
    table = reporting.format_eval_table(RESULTS)
    assert table.splitlines() == [
        "step |   loss |    CER |    WER | word acc.",
        " 120 | 1.2346 | 0.1000 | 0.2500 |    0.5000",
    ]


def test_format_eval_table_keeps_its_column_order_and_skips_what_is_missing():
    shuffled = {"word_accuracy": 1.0, "other": 7.0, "cer": 0.0, "global_step": 123456}
    assert reporting.format_eval_table(shuffled).splitlines() == [
        "  step |    CER | word acc.",
        "123456 | 0.0000 |    1.0000",
    ]


# --- EvalResultsListener -------------------------------------------------------------------------
def listen(results):
    stream = io.StringIO()
    listener = reporting.EvalResultsListener(stream=stream)
    assert listener.name == "eval_results_listener"
    assert listener.export(None, "export/unused", "model.ckpt-120", results, False) is None
    return listener, stream.getvalue()


def evaluation_as_tensorflow_gives_it():
    return {
        "global_step": np.int64(120),
        "loss": np.float32(1.23456),
        "cer": np.float32(0.1),
        "wer": np.float64(0.25),
        "word_accuracy": np.float32(0.5),
    }


def test_listener_prints_the_table_keeps_the_latest_and_reports_the_cer(tmp_path, monkeypatch):
    metric_file = tmp_path / "hypertune" / "output.metrics"
    monkeypatch.delenv(cloud.TRIAL_ID_ENV, raising=False)
    monkeypatch.setenv(cloud.METRIC_FILE_ENV, str(metric_file))
    listener, printed = listen(evaluation_as_tensorflow_gives_it())
    assert printed == "evaluation:\n" + reporting.format_eval_table(RESULTS) + "\n"
    assert listener.latest == pytest.approx(RESULTS)
    assert type(listener.latest["global_step"]) is int
    assert all(
        type(value) is float for key, value in listener.latest.items() if key != "global_step"
    )
    (line,) = metric_file.read_text().splitlines()
    report = json.loads(line)
    assert (report["cer"], report["global_step"], report["trial"]) == (
        str(float(np.float32(0.1))),
        "120",
        "0",
    )

    later = {**evaluation_as_tensorflow_gives_it(), "global_step": np.int64(240)}
    listener.export(None, "export/unused", "model.ckpt-240", later, True)
    assert listener.latest["global_step"] == 240
    assert [json.loads(line)["global_step"] for line in metric_file.read_text().splitlines()] == [
        "120",
        "240",
    ]


def test_listener_writes_no_metric_file_outside_tuning(tmp_path, monkeypatch):
    monkeypatch.delenv(cloud.TRIAL_ID_ENV, raising=False)
    monkeypatch.delenv(cloud.METRIC_FILE_ENV, raising=False)
    default = tmp_path / "hypertune" / "output.metrics"
    monkeypatch.setattr(cloud, "DEFAULT_METRIC_FILE", str(default))
    listener, printed = listen(evaluation_as_tensorflow_gives_it())
    assert "word acc." in printed and listener.latest["cer"] == pytest.approx(0.1)
    assert not default.exists() and os.listdir(tmp_path) == []


# --- ProgressHook ---------------------------------------------------------------------------------
LOSS_LINE = re.compile(r"step (\d+): loss (\d+\.\d{3}), (\d+\.\d{2}) steps/s, (\d+) images/s")


def run_progress_hook(steps, every_steps, batch_size=4):
    """``steps`` training steps of a graph that has what the hook reads: a global step and a
    tensor named crnn_loss. The step is counted between runs, so the hook reads each value once."""
    stream = io.StringIO()
    hook = reporting.ProgressHook(
        max_steps=steps, every_steps=every_steps, batch_size=batch_size, stream=stream
    )
    with tf.Graph().as_default():
        global_step = tf.compat.v1.train.get_or_create_global_step()
        tf.constant(1.25, name=constants.LOSS_TENSOR_NAME.split(":")[0])
        count_step = tf.compat.v1.assign_add(global_step, 1)
        train_op = tf.no_op()
        with tf.compat.v1.train.SingularMonitoredSession(hooks=[hook]) as session:
            for _ in range(steps):
                session.run(train_op)
                session.raw_session().run(count_step)
    return hook, stream.getvalue()


def test_progress_hook_prints_a_loss_line_every_n_steps():
    hook, printed = run_progress_hook(steps=10, every_steps=3, batch_size=4)
    lines = LOSS_LINE.findall(printed)
    assert [int(step) for step, *_ in lines] == [3, 6, 9]
    for _, loss, rate, images in lines:
        assert loss == "1.250"
        assert float(rate) > 0 and abs(int(images) - float(rate) * 4) <= 1  # 4 images a step
    assert (hook.last_step, hook.local_steps) == (10, 10)
    assert hook.train_seconds > 0
    assert re.fullmatch(r"\d+ training images/s", hook.images_per_second())


def test_progress_hook_with_nothing_to_train():
    hook = reporting.ProgressHook(max_steps=5, every_steps=1, batch_size=4, stream=io.StringIO())
    assert hook.images_per_second() == "nothing left to train"


# --- samples.png and the closing summary ----------------------------------------------------------
def test_write_samples_png_shows_the_first_evaluation_images(job, lines, tmp_path):
    estimator = tf.estimator.Estimator(model.crnn_fn, model_dir=job.job_dir, params=job.params)
    path = str(tmp_path / "samples.png")
    reporting.write_samples_png(estimator, [lines.csv], job.params, path)
    grid = cv2.imread(path)
    # Two columns of the first SAMPLES_SHOWN images, as stored (not fitted to the input shape).
    shown = [
        decode_image(tf.io.read_file(p), 3).shape for p in lines.paths[: reporting.SAMPLES_SHOWN]
    ]
    tile_height = max(shape[0] for shape in shown) + visualize.CAPTION_HEIGHT + 8
    tile_width = max(shape[1] for shape in shown) + 8
    assert grid.shape == (reporting.SAMPLES_SHOWN // 2 * tile_height, 2 * tile_width, 3)


def fake_export(job_dir, kind):
    folder = job_dir / constants.EXPORT_DIR / kind / "1700000000"
    folder.mkdir(parents=True)
    (folder / "saved_model.pb").write_bytes(b"")


def test_closing_summary_lists_the_exports_that_exist(tmp_path):
    hook, _ = run_progress_hook(steps=2, every_steps=100)
    fake_export(tmp_path, constants.EXPORT_LATEST)
    (tmp_path / constants.EXPORT_DIR / constants.EXPORT_BEST).mkdir()  # no finished export in it
    summary = reporting.closing_summary(120, hook, 42.4, RESULTS, str(tmp_path), "job/samples.png")
    lines = summary.splitlines()
    assert lines[0] == ""
    assert re.fullmatch(
        r"finished: global step 120, 2 steps trained in 42 s wall time \(\d+ training images/s\)",
        lines[1],
    )
    assert lines[2:4] == reporting.format_eval_table(RESULTS).splitlines()
    latest = os.path.join(str(tmp_path), constants.EXPORT_DIR, constants.EXPORT_LATEST)
    assert lines[4] == f"SavedModels: {latest} (newest)"
    assert lines[5] == "samples: job/samples.png"

    fake_export(tmp_path, constants.EXPORT_BEST)
    summary = reporting.closing_summary(120, hook, 42.4, RESULTS, str(tmp_path), "job/samples.png")
    best = os.path.join(str(tmp_path), constants.EXPORT_DIR, constants.EXPORT_BEST)
    assert f"SavedModels: {latest} (newest), {best} (lowest CER)" in summary


def test_closing_summary_when_no_step_ran_and_nothing_was_exported(tmp_path):
    idle = reporting.ProgressHook(max_steps=5, every_steps=1, batch_size=4, stream=io.StringIO())
    summary = reporting.closing_summary(5, idle, 3.0, RESULTS, str(tmp_path), "samples.png")
    assert (
        "finished: global step 5, 0 steps trained in 3 s wall time (nothing left to train)"
        in summary
    )
    assert "SavedModels: none (exports are made after evaluations, by the evaluator)" in summary


def test_samples_png_compares_with_the_truth_as_the_model_reads_it(
    job, lines, tmp_path, monkeypatch
):
    """With case folding, 'ABC' read as 'abc' is right: the caption must not draw it in red."""
    upper_csv = tmp_path / "upper.csv"
    rows = [f"{path};{label.upper()}" for path, label in zip(lines.paths, lines.labels)]
    upper_csv.write_text("\n".join(rows) + "\n")
    params = job.params.with_overrides({"alphabet_case_fold": True})
    shown = {}
    monkeypatch.setattr(
        visualize,
        "save_samples_png",
        lambda path, paths, predictions, truths: shown.update(zip(paths, truths)),
    )
    estimator = tf.estimator.Estimator(model.crnn_fn, model_dir=job.job_dir, params=params)
    reporting.write_samples_png(estimator, [str(upper_csv)], params, str(tmp_path / "s.png"))
    labels = dict(zip(lines.paths, lines.labels))
    assert shown and all(truth == labels[path].lower() for path, truth in shown.items())
