"""Shared fixtures: CSV files and text-line images on disk, and one trained job for the serving
tests.

Plain helper functions are in helpers.py.
"""

import json
import os
import uuid

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import cv2
import numpy as np
import pytest
import tensorflow as tf
from helpers import (
    DIGIT_READER,
    FORMATS,
    Job,
    Lines,
    job_args,
    tiny_flags,
    write_digit_csv,
    write_image,
)

from tf_crnn import data_handler, export_model, model, predict, task
from tf_crnn.config import Params
from tf_crnn.csv_rows import read_csv_rows
from tf_crnn.demo import render_text_line

# Steps of the shared job. Training order varies from run to run (parallel loading lets fast rows
# overtake), and so does the CTC plateau before the model starts to read: most runs read every
# evaluation image by step 200, but one fresh-clone run was still at loss 3.8 and 12.5% word
# accuracy at step 300. 500 steps leave room for such a run.
JOB_TRAIN_STEPS = 500


# Fixtures that need the trained job (directly or through another fixture).
TRAINED_JOB_FIXTURES = {"job", "served", "predictor", "expected"}


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items):
    """Under ``pytest -n`` (``make test``), every test of the trained job runs in one worker,
    which trains it once; the other tests are spread over the workers one by one.

    ``tryfirst``: pytest-xdist reads the group markers in a hook of its own, which otherwise runs
    first and finds none of ours, and the job would be trained in both workers."""
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        # Parametrize arguments are listed too: an argument named "expected" is not the fixture.
        fixtures -= set(getattr(getattr(item, "callspec", None), "params", {}))
        if TRAINED_JOB_FIXTURES & fixtures:
            item.add_marker(pytest.mark.xdist_group("trained_job"))


def pytest_collection_finish(session):
    """Stops a ``make test`` whose pytest-xdist would not keep the trained-job tests together: the
    suite would still pass, but train the shared job in both workers and run a minute longer."""
    grouped = [item for item in session.items if item.get_closest_marker("xdist_group")]
    if session.config.getoption("loadgroup", False) and grouped:
        if not all(item.nodeid.endswith("@trained_job") for item in grouped):
            pytest.exit(
                "pytest-xdist did not group the trained-job tests (pytest-xdist#1386): "
                "install the pytest version setup.py's test extra asks for",
                returncode=4,
            )


@pytest.fixture
def write_csv():
    """``write_csv(path, lines)``: writes ``lines`` (str, or bytes for exact content) joined by
    '\\n'; returns str(path)."""

    def write(path, lines):
        content = b"".join(
            (line if isinstance(line, bytes) else line.encode("utf-8")) + b"\n" for line in lines
        )
        with open(path, "wb") as f:
            f.write(content)
        return str(path)

    return write


@pytest.fixture
def text_line_csv(tmp_path, write_csv):
    """``text_line_csv(labels, name='data.csv')``: renders each label with the demo renderer into
    ``tmp_path/images`` and writes a CSV of relative paths ``images/<name>_<i>.png;<label>``.

    The same labels give the same pixels (one seeded generator per image).
    """

    def make(labels, name="data.csv"):
        os.makedirs(tmp_path / "images", exist_ok=True)
        stem = os.path.splitext(name)[0]
        lines = []
        for index, label in enumerate(labels):
            image_name = f"{stem}_{index}.png"
            image = render_text_line(label, np.random.default_rng(index))
            assert cv2.imwrite(str(tmp_path / "images" / image_name), image)
            lines.append(f"images/{image_name};{label}")
        return write_csv(tmp_path / name, lines)

    return make


@pytest.fixture
def good_image(tmp_path):
    """images/good.png (relative to tmp_path): a 32x64 gray image that fits any short label."""
    write_image(tmp_path / "images" / "good.png", np.full((32, 64), 200, np.uint8))
    return "images/good.png"


# --- one trained job, shared by test_export_model.py, test_predict.py and test_reporting.py ------
@pytest.fixture(scope="session")
def job(tmp_path_factory) -> Job:
    """A model trained with ``python -m tf_crnn.task``'s ``main`` on printed digit strings, which
    it learns to read, in every image format."""
    data = tmp_path_factory.mktemp("digits")
    train_csv = write_digit_csv(data, "train", 240, seed=0, formats=FORMATS)
    # No GIF in the evaluation set, as when these steps were tuned (samples.png was then drawn
    # with OpenCV, which cannot read GIF).
    eval_formats = [f for f in FORMATS if f != "gif"]
    eval_csv = write_digit_csv(data, "eval", 32, seed=1, formats=eval_formats)
    job_dir = str(tmp_path_factory.mktemp("job"))
    flags = tiny_flags(
        **DIGIT_READER,
        train_batch_size=32,
        train_steps=JOB_TRAIN_STEPS,
        save_interval=JOB_TRAIN_STEPS,
        log_step_count_steps=1000,
    )
    args = job_args(job_dir, train_csv, eval_csv)
    assert task.main([*args, *flags]) == 0
    checkpoint = tf.train.latest_checkpoint(job_dir)
    assert checkpoint.endswith(f"model.ckpt-{JOB_TRAIN_STEPS}")
    export = predict.find_saved_model(job_dir)
    with open(os.path.join(export, "assets.extra", export_model.EVAL_RESULT_FILE)) as f:
        assert json.load(f)["global_step"] == JOB_TRAIN_STEPS
    params = Params.from_json(os.path.join(job_dir, "params.json"))
    return Job(job_dir, params, checkpoint, export)


@pytest.fixture(scope="session")
def lines(tmp_path_factory) -> Lines:
    """72 labelled digit lines, in every format, that the job was not trained on."""
    folder = tmp_path_factory.mktemp("lines")
    csv_file = write_digit_csv(folder, "lines", 72, seed=2, formats=FORMATS)
    rows = read_csv_rows(csv_file, ";").strict()
    paths = [row.image_path for row in rows]
    contents = []
    for path in paths:
        with open(path, "rb") as f:
            contents.append(f.read())
    return Lines(csv_file, paths, contents, [row.label for row in rows])


@pytest.fixture(scope="session")
def served(job):
    """The job's newest export, loaded."""
    return tf.saved_model.load(job.export)


@pytest.fixture(scope="session")
def predictor(job) -> predict.Predictor:
    return predict.Predictor(job.job_dir)


@pytest.fixture(scope="session")
def expected(job, lines) -> dict:
    """``Estimator.predict`` on ``lines``: what every serving path must reproduce."""
    estimator = tf.estimator.Estimator(model.crnn_fn, model_dir=job.job_dir, params=job.params)
    results = list(
        estimator.predict(
            lambda: data_handler.input_fn([lines.csv], job.params, "eval"),
            checkpoint_path=job.checkpoint,
        )
    )
    assert [result["filenames"].decode() for result in results] == lines.paths
    return {
        key: np.stack([result[key] for result in results])
        for key in ("words", "top_words", "scores")
    }


@pytest.fixture
def ram_root():
    """A fresh folder on TensorFlow's in-memory filesystem (``ram://``, standing in for gs://),
    removed afterwards."""
    root = f"ram://test_{uuid.uuid4().hex}"
    yield root
    if tf.io.gfile.exists(root):
        tf.io.gfile.rmtree(root)
