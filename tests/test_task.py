"""``python -m tf_crnn.task`` end to end on tiny data: train, evaluate, export, resume, refuse."""

import json
import os
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest
import tensorflow as tf
from helpers import TINY, job_args, tiny_flags

from tf_crnn import network, task
from tf_crnn.config import ParamsError
from tf_crnn.demo import generate_demo_dataset

# Augmentation on, as by default: the training input then runs every augmentation op inside the
# Estimator's graph.
FLAGS = tiny_flags(data_augmentation=True)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return generate_demo_dataset(
        str(tmp_path_factory.mktemp("data")), num_train=48, num_eval=16, seed=5, progress=False
    )


def run_task(job_dir, data, *extra):
    train_csv, eval_csv = data
    return task.main(job_args(job_dir, train_csv, eval_csv, *FLAGS, *extra))


def test_train_evaluate_export_then_resume(data, tmp_path, capsys):
    job_dir = tmp_path / "job"
    assert (
        run_task(
            job_dir, data, "--train-steps", "20", "--learning_rate=0.003", "--some-cloud-flag=1"
        )
        == 0
    )
    out = capsys.readouterr()
    assert "finished: global step 20" in out.out and "export/latest" in out.out
    assert "ignoring unknown arguments: --some-cloud-flag=1" in out.err
    assert "word acc." in out.err  # evaluation table

    saved = json.loads((job_dir / "params.json").read_text())
    assert saved["learning_rate"] == 0.003 and saved["train_steps"] == 20
    assert saved["rnn_units"] == TINY["rnn_units"] == 16 and saved["data_augmentation"] is True
    assert len(saved["alphabet_units"]) > 10
    assert tf.train.latest_checkpoint(str(job_dir)).endswith("model.ckpt-20")
    exports = tf.io.gfile.glob(str(job_dir / "export" / "latest" / "*" / "saved_model.pb"))
    assert len(exports) >= 1
    assert tf.io.gfile.glob(str(job_dir / "export" / "best" / "*" / "saved_model.pb"))
    assert (job_dir / "samples.png").stat().st_size > 1000
    assert tf.io.gfile.glob(str(job_dir / "eval" / "events.out.tfevents.*"))

    assert run_task(job_dir, data, "--train-steps", "30") == 0
    assert "finished: global step 30, 10 steps trained" in capsys.readouterr().out
    assert tf.train.latest_checkpoint(str(job_dir)).endswith("model.ckpt-30")

    # The same job directory without settings continues with the saved ones.
    train_csv, eval_csv = data
    assert (
        task.main(["--job-dir", str(job_dir), "--train-csv", train_csv, "--eval-csv", eval_csv])
        == 0
    )
    assert "nothing left to train" in capsys.readouterr().out
    assert json.loads((job_dir / "params.json").read_text())["learning_rate"] == 0.003


def test_resume_with_an_other_network_is_refused(data, tmp_path, capsys):
    job_dir = tmp_path / "job"
    assert run_task(job_dir, data, "--train-steps", "2") == 0
    capsys.readouterr()
    assert run_task(job_dir, data, "--train-steps", "4", "--rnn_units", "32") == 2
    err = capsys.readouterr().err
    assert "rnn_units: saved 16, now 32" in err and "--job-dir" in err
    # Momentum's slot variables are not in an Adam run's checkpoints.
    assert run_task(job_dir, data, "--optimizer", "momentum") == 2
    assert 'optimizer: saved "adam", now "momentum"' in capsys.readouterr().err
    assert tf.train.latest_checkpoint(str(job_dir)).endswith("model.ckpt-2")


def test_epochs_set_the_step_target(data, tmp_path, capsys):
    assert run_task(tmp_path / "job", data, "--num-epochs", "1") == 0
    # 48 training rows (less any too long for their image) at batch 8: at most 6 steps.
    assert TINY["train_batch_size"] == 8
    saved = json.loads((tmp_path / "job" / "params.json").read_text())
    assert 1 <= saved["train_steps"] <= 6
    assert f"finished: global step {saved['train_steps']}" in capsys.readouterr().out


def test_job_dir_comes_from_aip_model_dir(data, tmp_path, monkeypatch):
    monkeypatch.setenv("AIP_MODEL_DIR", str(tmp_path / "aip"))
    train_csv, eval_csv = data
    assert (
        task.main(["--train-csv", train_csv, "--eval-csv", eval_csv, *FLAGS, "--train-steps", "1"])
        == 0
    )
    assert (tmp_path / "aip" / "params.json").exists()


def test_bad_settings_are_reported_not_raised(data, tmp_path, capsys):
    assert run_task(tmp_path / "job", data, "--optimizer", "sgd") == 2
    assert "optimizer: must be one of adam, adadelta, rmsprop, momentum" in capsys.readouterr().err
    assert run_task(tmp_path / "job", data, "--param", "no_such_setting=1") == 2
    assert "Unknown setting(s) no_such_setting" in capsys.readouterr().err


def test_misspelled_setting_is_refused_not_ignored(data, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_task(tmp_path / "job", data, "--learnig_rate=0.1")
    assert exit_info.value.code == 2
    assert (
        "unknown argument --learnig_rate: did you mean --learning_rate?" in capsys.readouterr().err
    )


def test_own_data_without_a_job_directory_is_a_usage_error(data, monkeypatch, capsys):
    monkeypatch.delenv("AIP_MODEL_DIR", raising=False)
    train_csv, eval_csv = data
    with pytest.raises(SystemExit) as exit_info:
        task.main(["--train-csv", train_csv, "--eval-csv", eval_csv])
    assert exit_info.value.code == 2
    assert "--job-dir is required when training on your own data" in capsys.readouterr().err


def test_help_explains_the_arguments():
    result = subprocess.run(
        [sys.executable, "-m", "tf_crnn.task", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0
    for flag in (
        "--job-dir",
        "--train-csv",
        "--eval-csv",
        "--config",
        "--param",
        "--train-steps",
        "--num-epochs",
        "--eval-steps",
        "--eval-interval",
        "--verbosity",
        "--learning_rate",
    ):
        assert flag in result.stdout
    assert "Initial learning rate" in result.stdout


def test_tuning_trials_train_in_their_own_folders_and_report_cer(data, tmp_path, monkeypatch):
    metric_file = tmp_path / "hypertune" / "output.metrics"
    monkeypatch.setenv("CLOUD_ML_HP_METRIC_FILE", str(metric_file))
    for trial, rate in (("1", "0.01"), ("2", "0.002")):
        monkeypatch.setenv("CLOUD_ML_TRIAL_ID", trial)
        # As the tuning service passes them: --name=value, whole numbers as floats.
        assert (
            run_task(
                tmp_path / "tune",
                data,
                "--train-steps",
                "2",
                f"--learning_rate={rate}",
                "--rnn_units=16.0",
            )
            == 0
        )
        saved = json.loads((tmp_path / "tune" / trial / "params.json").read_text())
        assert saved["learning_rate"] == float(rate) and saved["rnn_units"] == 16
        report = json.loads(metric_file.read_text().splitlines()[-1])
        assert (
            report["trial"] == trial
            and report["global_step"] == "2"
            and 0 <= float(report["cer"]) <= 1
        )
    assert tf.train.latest_checkpoint(str(tmp_path / "tune" / "1")).endswith("model.ckpt-2")
    assert tf.train.latest_checkpoint(str(tmp_path / "tune" / "2")).endswith("model.ckpt-2")


def test_everything_on_a_remote_filesystem(data, capsys):
    """Job directory, CSV and images on ram://, TensorFlow's in-memory filesystem standing in for gs://."""
    remote = "ram://remote_test"
    train_csv, eval_csv = data
    for csv_path in (train_csv, eval_csv):
        name = os.path.basename(csv_path)
        tf.io.gfile.copy(csv_path, f"{remote}/data/{name}", overwrite=True)
        for line in open(csv_path).read().splitlines():
            image = line.split(";")[0]
            tf.io.gfile.makedirs(f"{remote}/data/{os.path.dirname(image)}")
            tf.io.gfile.copy(
                os.path.join(os.path.dirname(csv_path), image),
                f"{remote}/data/{image}",
                overwrite=True,
            )
    assert (
        run_task(
            f"{remote}/job",
            (f"{remote}/data/train.csv", f"{remote}/data/eval.csv"),
            "--train-steps",
            "3",
        )
        == 0
    )
    assert "finished: global step 3" in capsys.readouterr().out
    assert tf.train.latest_checkpoint(f"{remote}/job").endswith("model.ckpt-3")
    assert tf.io.gfile.exists(f"{remote}/job/params.json")
    assert tf.io.gfile.exists(f"{remote}/job/samples.png")
    assert tf.io.gfile.glob(f"{remote}/job/export/latest/*/saved_model.pb")


def settings_for(tmp_path, *arguments, train_csv=None):
    """The Params ``python -m tf_crnn.task ARGUMENTS`` would train with (nothing is trained)."""
    args, _ = task.build_parser().parse_known_args(list(arguments))
    job_dir = str(tmp_path / "new-job")
    return task.prepare_params(args, job_dir, [train_csv] if train_csv else [])


def test_presets_name_a_network_and_every_given_setting_overrides_them(tmp_path, data):
    train_csv, eval_csv = data
    own = ["--train-csv", train_csv, "--eval-csv", eval_csv]
    paper, small = network.PRESETS["paper"], network.PRESETS["small"]

    def net(params):
        return {"conv_filters": params.conv_filters, "rnn_units": params.rnn_units}

    assert net(settings_for(tmp_path, *own, train_csv=train_csv)) == paper  # the default
    assert net(settings_for(tmp_path, *own, "--preset", "small", train_csv=train_csv)) == small
    assert net(settings_for(tmp_path)) == small  # the demo config names the small preset
    assert net(settings_for(tmp_path, "--preset", "paper")) == paper
    wider = settings_for(tmp_path, "--preset", "small", "--rnn_units", "128")
    assert net(wider) == {**small, "rnn_units": 128}
    config = tmp_path / "mine.json"
    config.write_text(json.dumps({"preset": "small", "conv_filters": [8] * 7, "train_steps": 7}))
    from_file = settings_for(tmp_path, *own, "--config", str(config), train_csv=train_csv)
    assert net(from_file) == {"conv_filters": [8] * 7, "rnn_units": 96}
    assert from_file.train_steps == 7
    paper_file = settings_for(
        tmp_path, *own, "--config", str(config), "--preset", "paper", train_csv=train_csv
    )
    assert net(paper_file) == {"conv_filters": [8] * 7, "rnn_units": 256}
    config.write_text(json.dumps({"preset": "huge"}))
    with pytest.raises(ParamsError, match="preset: 'huge' is not one of paper, small"):
        settings_for(tmp_path, *own, "--config", str(config), train_csv=train_csv)


def test_an_image_broken_where_the_check_did_not_look_stops_training_naming_it(
    data, tmp_path, capsys
):
    """A sampled start-up check (check_all_images_up_to=0) decodes one image; training meets the
    broken one and stops with file, row and problem, not a TensorFlow traceback."""
    train_csv, eval_csv = data
    with open(train_csv, encoding="utf-8") as f:
        rows = f.read().splitlines()
    (tmp_path / "broken.png").write_bytes(b"\x89PNG broken")
    csv = tmp_path / "train.csv"
    folder = os.path.dirname(train_csv)
    lines = [f"{folder}/{row}" for row in rows] + [f"{tmp_path / 'broken.png'};ab"]
    csv.write_text("\n".join(lines) + "\n")
    args = job_args(tmp_path / "job", str(csv), eval_csv, *FLAGS)
    args += ["--param", "check_all_images_up_to=0", "--param", "check_sample_size=1"]
    assert task.main(args) == 2
    err = capsys.readouterr().err
    assert "a random sample of 1 images checked" in err
    assert f"{csv}, row {len(lines)}: {tmp_path / 'broken.png'}: not a readable PNG" in err
    assert "Traceback" not in err
