"""tf_crnn.config.Params: defaults, JSON and command-line round trips, validation, derived values,
resuming."""

import json

import pytest

from tf_crnn.config import Params, ParamsError


def test_defaults_are_valid():
    params = Params()
    params.validate()
    assert params.input_shape == [32, 128]
    assert params.input_channels == 1
    assert params.csv_delimiter == ";"
    assert params.alphabet_units == []


def test_list_defaults_are_not_shared_between_instances():
    first = Params()
    first.conv_filters[0] = 1
    assert Params().conv_filters[0] == 64


def test_json_round_trip(tmp_path):
    params = Params(
        input_shape=[48, 256],
        train_batch_size=8,
        learning_rate=0.05,
        data_augmentation=False,
        optimizer="rmsprop",
        string_split_delimiter="|",
        alphabet_units=["a", "é", "中", "ق", "ch"],
    )
    path = str(tmp_path / "params.json")
    params.to_json(path)
    loaded = Params.from_json(path)
    assert loaded == params
    with open(path, encoding="utf-8") as f:
        saved = json.load(f)
    assert saved["alphabet_units"] == ["a", "é", "中", "ق", "ch"]
    assert set(saved) == set(Params.field_names())


def test_from_json_with_only_some_keys_keeps_the_other_defaults(tmp_path):
    path = tmp_path / "partial.json"
    path.write_text('{"train_batch_size": 16, "input_shape": [64, 512]}', encoding="utf-8")
    params = Params.from_json(str(path))
    assert params.train_batch_size == 16 and params.input_shape == [64, 512]
    assert params.eval_batch_size == Params().eval_batch_size


def test_from_json_missing_file_and_invalid_json(tmp_path):
    with pytest.raises(ParamsError, match="does not exist"):
        Params.from_json(str(tmp_path / "nope.json"))
    bad = tmp_path / "bad.json"
    bad.write_text("{train_batch_size: 3", encoding="utf-8")
    with pytest.raises(ParamsError, match="not valid JSON") as error:
        Params.from_json(str(bad))
    assert str(bad) in str(error.value)


@pytest.mark.parametrize(
    "pair, key, expected",
    [
        ("train_batch_size=8", "train_batch_size", 8),
        ("learning_rate=0.01", "learning_rate", 0.01),
        ("learning_rate=1e-4", "learning_rate", 1e-4),
        ("n_epochs=3", "n_epochs", 3.0),
        ("data_augmentation=false", "data_augmentation", False),
        ("skip_bad_samples=True", "skip_bad_samples", True),
        ("alphabet_case_fold=1", "alphabet_case_fold", True),
        ("input_shape=64,512", "input_shape", [64, 512]),
        ("input_shape=[48, 256]", "input_shape", [48, 256]),
        ("conv_filters=8,8,16,16,32,32,32", "conv_filters", [8, 8, 16, 16, 32, 32, 32]),
        ("alphabet_units=a,b,c", "alphabet_units", ["a", "b", "c"]),
        ('alphabet_units=["a", ",", " "]', "alphabet_units", ["a", ",", " "]),
        ("optimizer=rmsprop", "optimizer", "rmsprop"),
        ("alphabet=digits", "alphabet", "digits"),
        ("csv_delimiter==", "csv_delimiter", "="),
        ("string_split_delimiter=|", "string_split_delimiter", "|"),
    ],
)
def test_with_key_values(pair, key, expected):
    params = Params().with_key_values([pair])
    value = getattr(params, key)
    assert value == expected and type(value) is type(expected)


def test_with_key_values_round_trips_through_json(tmp_path):
    params = Params().with_key_values(
        [
            "train_batch_size=8",
            "learning_rate=0.5",
            "data_augmentation=no",
            "input_shape=64,256",
            "optimizer=adadelta",
        ]
    )
    path = str(tmp_path / "params.json")
    params.to_json(path)
    assert Params.from_json(path) == params
    assert Params().to_dict() != params.to_dict()


def test_overrides_leave_the_original_unchanged():
    params = Params()
    params.with_key_values(["train_batch_size=8"])
    assert params.train_batch_size == 64


@pytest.mark.parametrize("pair", ["train_batch_size", "=3", "train_batch_size 8"])
def test_with_key_values_rejects_pairs_without_key_or_equals(pair):
    with pytest.raises(ParamsError, match="key=value"):
        Params().with_key_values([pair])


def test_unknown_key_lists_the_valid_keys(tmp_path):
    for make in (
        lambda: Params.from_dict({"batch_size": 3}),
        lambda: Params().with_key_values(["batch_size=3"]),
    ):
        with pytest.raises(ParamsError) as error:
            make()
        message = str(error.value)
        assert "batch_size" in message
        for valid in (
            "train_batch_size",
            "eval_batch_size",
            "learning_rate",
            "input_shape",
            "random_seed",
        ):
            assert valid in message
    path = tmp_path / "params.json"
    path.write_text('{"lerning_rate": 0.1}', encoding="utf-8")
    with pytest.raises(ParamsError, match="lerning_rate") as error:
        Params.from_json(str(path))
    assert str(path) in str(error.value) and "learning_rate" in str(error.value)


@pytest.mark.parametrize(
    "values, key",
    [
        ({"input_channels": 2}, "input_channels"),
        ({"optimizer": "sgd"}, "optimizer"),
        ({"learning_rate": -1}, "learning_rate"),
        ({"learning_rate": 0}, "learning_rate"),
        ({"input_shape": [40, 128]}, "input_shape"),
        ({"input_shape": [16, 128]}, "input_shape"),
        ({"input_shape": [32, 8]}, "input_shape"),
        ({"input_shape": [32]}, "input_shape"),
        ({"num_beam_paths": 5, "beam_width": 4}, "num_beam_paths"),
        ({"alphabet_string": "abc", "lookup_alphabet_file": "lookup.json"}, "alphabet_string"),
        ({"alphabet": "digits", "alphabet_string": "abc"}, "alphabet"),
        ({"train_batch_size": 0}, "train_batch_size"),
        ({"csv_delimiter": ";;"}, "csv_delimiter"),
        ({"string_split_delimiter": ";"}, "string_split_delimiter"),
        ({"dropout_rate": 1.0}, "dropout_rate"),
        ({"aug_blur_probability": 1.5}, "aug_blur_probability"),
        ({"learning_rate_schedule": "linear"}, "learning_rate_schedule"),
        ({"conv_filters": [64, 128]}, "conv_filters"),
        ({"alphabet_units": ["a", "a"]}, "alphabet_units"),
        ({"alphabet_units": [1, 2]}, "alphabet_units"),
        ({"alphabet": "greek"}, "alphabet"),
        ({"train_steps": 0, "n_epochs": 0}, "train_steps"),
        # Settings that the chosen optimizer or schedule would ignore.
        ({"optimizer": "adam", "momentum": 0.5}, "momentum"),
        ({"learning_rate_schedule": "cosine", "learning_decay_rate": 0.5}, "learning_decay_rate"),
        ({"learning_decay_staircase": True}, "learning_decay_staircase"),
        ({"learning_decay_steps": 100}, "learning_decay_steps"),
        ({"decoder": "prefix"}, "decoder"),
        ({"decoder": "greedy", "beam_width": 20}, "beam_width"),
        ({"decoder": "greedy", "num_beam_paths": 1}, "num_beam_paths"),
    ],
)
def test_impossible_values_are_rejected_naming_the_key(values, key):
    with pytest.raises(ParamsError) as error:
        Params.from_dict(values)
    assert str(error.value).startswith(key + ":")
    with pytest.raises(ParamsError, match=key):
        Params(**values)


@pytest.mark.parametrize(
    "values, key",
    [
        ({"train_batch_size": "eight"}, "train_batch_size"),
        ({"train_batch_size": 2.5}, "train_batch_size"),
        ({"train_batch_size": True}, "train_batch_size"),
        ({"learning_rate": "fast"}, "learning_rate"),
        ({"data_augmentation": "maybe"}, "data_augmentation"),
        ({"data_augmentation": 2}, "data_augmentation"),
        ({"optimizer": 1}, "optimizer"),
        ({"input_shape": "32,wide"}, "input_shape"),
        ({"input_shape": 32}, "input_shape"),
        ({"input_shape": [32.5, 128]}, "input_shape"),
        ({"input_shape": "[32.5, 128]"}, "input_shape"),
        ({"conv_filters": [64, 128, 256, 256, 512, 512, "x"]}, "conv_filters"),
    ],
)
def test_wrong_types_are_rejected_naming_the_key(values, key):
    with pytest.raises(ParamsError) as error:
        Params.from_dict(values)
    assert str(error.value).startswith(key + ":")


def test_wrong_types_from_the_command_line_name_the_key():
    for pair, key in (
        ("train_batch_size=8.5", "train_batch_size"),
        ("learning_rate=abc", "learning_rate"),
        ("data_augmentation=perhaps", "data_augmentation"),
        ("input_shape=32,x", "input_shape"),
        ("input_channels=2", "input_channels"),
    ):
        with pytest.raises(ParamsError) as error:
            Params().with_key_values([pair])
        assert str(error.value).startswith(key + ":"), pair


def test_integral_floats_are_accepted_for_integer_settings():
    assert Params.from_dict({"train_batch_size": 8.0}).train_batch_size == 8


def test_steps_for_epochs():
    params = Params(n_epochs=2, train_batch_size=64)
    assert params.steps_for_epochs(100) == 4  # ceil(2 * 100 / 64)
    assert params.steps_for_epochs(64) == 2
    assert Params(n_epochs=0.5, train_batch_size=10).steps_for_epochs(100) == 5
    assert Params(n_epochs=1, train_batch_size=64).steps_for_epochs(1) == 1


def test_overrides_convert_to_the_settings_type_not_the_current_values():
    params = Params(n_epochs=2, learning_rate=1)  # ints given in code for float settings
    updated = params.with_key_values(["n_epochs=0.5", "learning_rate=0.25"])
    assert (updated.n_epochs, updated.learning_rate) == (0.5, 0.25)
    assert params.with_overrides({"learning_rate": 3}).learning_rate == 3.0


def test_with_decoder_greedy_drops_the_beam_settings_that_no_longer_apply():
    beam = Params.from_dict({"beam_width": 20, "num_beam_paths": 5})
    greedy = beam.with_decoder("greedy")
    assert (greedy.decoder, greedy.beam_width, greedy.num_beam_paths) == ("greedy", 10, 3)
    assert beam.with_decoder("beam") == beam
