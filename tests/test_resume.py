"""tf_crnn/resume.py: which settings a job directory's checkpoints depend on."""

import pytest

from tf_crnn.config import Params, ParamsError
from tf_crnn.resume import check_resumable


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


def test_check_resumable_accepts_training_only_changes():
    saved = Params(alphabet_units=list("abc"))
    current = saved.with_overrides(
        {
            "learning_rate": 0.5,
            "train_steps": 99,
            "train_batch_size": 3,
            "data_augmentation": False,
            "optimizer": "momentum",
        }
    )
    check_resumable(saved, current, "params.json")
    check_resumable(saved, saved, "params.json")
