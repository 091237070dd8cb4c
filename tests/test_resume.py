"""tf_crnn/resume.py: which settings a job directory's checkpoints depend on, and the precision a
checkpoint can resume in. Warm starts are tested end to end in test_job_dir.py."""

import os

import pytest
import tensorflow as tf

from tf_crnn import precision
from tf_crnn.config import Params, ParamsError
from tf_crnn.precision import Hardware
from tf_crnn.resume import check_precision_fits, check_resumable


def test_check_resumable_names_the_differing_keys():
    saved = Params(alphabet_units=list("abc"), rnn_units=128, input_shape=[32, 256])
    current = saved.with_overrides({"alphabet_units": list("abcd"), "rnn_units": 64})
    with pytest.raises(ParamsError) as error:
        check_resumable(saved, current, "/jobs/run1/params.json")
    message = str(error.value)
    assert "alphabet_units" in message and "rnn_units" in message
    assert "128" in message and "64" in message
    assert "/jobs/run1/params.json" in message
    assert "input_shape" not in message


@pytest.mark.parametrize("optimizer", ["momentum", "rmsprop", "adadelta"])
def test_another_optimizer_is_refused_on_resume_its_slots_are_in_the_checkpoints(optimizer):
    saved = Params(alphabet_units=list("abc"))
    with pytest.raises(ParamsError) as error:
        check_resumable(saved, saved.with_overrides({"optimizer": optimizer}), "params.json")
    assert f'optimizer: saved "adam", now "{optimizer}"' in str(error.value)
    assert "--warm-start-from" in str(error.value)


def test_check_resumable_accepts_training_only_changes():
    saved = Params(alphabet_units=list("abc"))
    current = saved.with_overrides(
        {
            "learning_rate": 0.5,
            "learning_rate_schedule": "cosine",
            "train_steps": 99,
            "train_batch_size": 3,
            "data_augmentation": False,
            "dropout_rate": 0.5,
            "precision": "mixed_bfloat16",
            "input_shape": [32, 128],
        }
    )
    check_resumable(saved, current, "params.json")
    check_resumable(saved, saved, "params.json")


def save_checkpoint(folder, loss_scaled: bool) -> str:
    """A checkpoint with a network variable, and the loss scale of mixed_float16 when asked."""
    with tf.Graph().as_default():
        tf.compat.v1.get_variable("crnn/conv1/kernel", initializer=tf.zeros([3, 3, 1, 4]))
        if loss_scaled:
            tf.compat.v1.get_variable("current_loss_scale", initializer=32768.0)
        with tf.compat.v1.Session() as session:
            session.run(tf.compat.v1.global_variables_initializer())
            return tf.compat.v1.train.Saver().save(session, os.path.join(folder, "model.ckpt-7"))


def test_mixed_float16_is_refused_for_a_checkpoint_without_its_loss_scale(tmp_path, monkeypatch):
    # Whatever this machine's oneDNN may run (test_precision covers that), bfloat16 fits here.
    monkeypatch.setattr(precision, "_onednn_isa_cap", lambda: None)
    float32_made = save_checkpoint(str(tmp_path / "float32"), loss_scaled=False)
    for fitting in ("float32", "mixed_bfloat16"):
        check_precision_fits(float32_made, Params(precision=fitting), in_cluster=False)
    with pytest.raises(ParamsError) as error:
        check_precision_fits(float32_made, Params(precision="mixed_float16"), in_cluster=False)
    assert "precision: mixed_float16 adds a loss-scale variable that the checkpoint " in str(
        error.value
    )
    assert "--precision float32 or mixed_bfloat16" in str(error.value)
    # auto counts as what it picks here: mixed_float16 on a GPU with tensor cores.
    gpu = Hardware(frozenset(), ((8, 0),))
    monkeypatch.setattr(precision.Hardware, "of_this_machine", classmethod(lambda cls: gpu))
    with pytest.raises(ParamsError, match=r"mixed_float16 \(auto: every GPU has float16"):
        check_precision_fits(float32_made, Params(precision="auto"), in_cluster=False)
    # The other way round, the loss scale is left unused.
    float16_made = save_checkpoint(str(tmp_path / "float16"), loss_scaled=True)
    for any_precision in ("auto", "float32", "mixed_float16"):
        check_precision_fits(float16_made, Params(precision=any_precision), in_cluster=False)
