"""tf_crnn/__init__.py: a quiet start. TensorFlow's C++ start-up lines read like errors to a user;
they are shown only with --verbosity INFO or DEBUG."""

import os
import subprocess
import sys
import warnings

import cv2
import numpy as np
import tensorflow as tf

from tf_crnn import data_handler
from tf_crnn.alphabet import with_resolved_alphabet
from tf_crnn.config import Params

# Lines TensorFlow 2.15's CPU wheel prints when it loads on a machine without CUDA.
TENSORFLOW_START_UP = ("cuda", "TensorRT", "cpu_feature_guard", "oneDNN", "tensorflow/core")


def run(*arguments, cwd):
    environ = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    return subprocess.run(
        [sys.executable, *arguments], cwd=cwd, env=environ, capture_output=True, text=True
    )


def test_help_and_errors_show_no_tensorflow_start_up_lines(tmp_path):
    result = run("-m", "tf_crnn.task", "--help", cwd=tmp_path)
    assert result.returncode == 0 and "--train-csv" in result.stdout
    assert not [word for word in TENSORFLOW_START_UP if word in result.stderr], result.stderr

    cv2.imwrite(str(tmp_path / "a.png"), np.full((32, 40), 200, np.uint8))
    (tmp_path / "train.csv").write_text("a.png;ab\nmissing.png;ba\n")
    result = run(
        "-m", "tf_crnn.task", "--job-dir", "job", "--train-csv", "train.csv",
        "--eval-csv", "train.csv", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 2
    assert "train.csv, row 2:" in result.stderr and "image file not found" in result.stderr
    assert "OP_REQUIRES" not in result.stderr and "Traceback" not in result.stderr
    assert not [word for word in TENSORFLOW_START_UP if word in result.stderr], result.stderr


def test_verbosity_info_brings_the_lines_back(tmp_path):
    result = run("-m", "tf_crnn.task", "--verbosity", "INFO", "--help", cwd=tmp_path)
    assert result.returncode == 0
    assert "tensorflow/core" in result.stderr


def test_training_input_draws_with_its_own_seeds(tmp_path):
    cv2.imwrite(str(tmp_path / "a.png"), np.full((32, 40), 200, np.uint8))
    (tmp_path / "train.csv").write_text("a.png;ab\n" * 4)
    params = with_resolved_alphabet(Params(train_batch_size=2), [str(tmp_path / "train.csv")])
    with warnings.catch_warnings(record=True) as caught, tf.Graph().as_default():
        warnings.simplefilter("always")
        tf.compat.v1.set_random_seed(params.random_seed)  # as the Estimator does
        data_handler.input_fn([str(tmp_path / "train.csv")], params, data_handler.TRAIN)
    assert not [w for w in caught if "from outer graph" in str(w.message)]
