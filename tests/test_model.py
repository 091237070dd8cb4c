"""The network, the model_fn in its three modes, decoding and metrics."""
import math
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import cv2
import numpy as np
import pytest
import tensorflow as tf

from conftest import digit_line
from tf_crnn import data_handler, decoding, metrics, model, network
from tf_crnn.alphabet import with_resolved_alphabet
from tf_crnn.config import Params
from tf_crnn.demo import DEMO_ALPHABET, generate_demo_dataset

TINY = {"conv_filters": [8, 16, 16, 16, 32, 32, 32], "rnn_units": 24, "alphabet_string": DEMO_ALPHABET,
        "train_batch_size": 16, "eval_batch_size": 32, "dropout_rate": 0.0, "data_augmentation": False}


def tiny_params(**overrides) -> Params:
    params = Params().with_overrides({**TINY, **overrides})
    return with_resolved_alphabet(params, [])


def graph_ops(spec_fn):
    with tf.Graph().as_default() as graph:
        spec_fn()
        return {op.type for op in graph.get_operations()}


@pytest.fixture(scope="module")
def demo_data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("demo")
    return generate_demo_dataset(str(folder), num_train=256, num_eval=64, seed=3, progress=False)


@pytest.fixture(scope="module")
def easy_digits(tmp_path_factory):
    """Printed digit strings in one clean font: learnable by a tiny model in a few hundred steps."""
    folder = tmp_path_factory.mktemp("digits")
    rng = np.random.default_rng(0)
    rows = []
    for i in range(200):
        text = "".join(rng.choice(list("0123456789"), rng.integers(3, 6)))
        cv2.imwrite(str(folder / f"{i}.png"), digit_line(text))
        rows.append(f"{i}.png;{text}")
    (folder / "digits.csv").write_text("\n".join(rows) + "\n")
    return str(folder / "digits.csv")


@pytest.mark.parametrize("width", [48, 64, 100, 102, 128, 256])
def test_network_output_has_one_step_per_four_columns(width):
    params = tiny_params(input_shape=[32, width])
    with tf.Graph().as_default(), tf.compat.v1.Session() as session:
        images = tf.random.uniform([3, 32, width, 1])
        widths = tf.constant([width, width // 2, 9])
        lengths = network.time_steps(widths)
        logits = network.CRNN(params, len(DEMO_ALPHABET) + 1)(images, lengths)
        session.run(tf.compat.v1.global_variables_initializer())
        logits_value, lengths_value = session.run([logits, lengths])
    assert logits_value.shape == (3, network.time_steps(width), len(DEMO_ALPHABET) + 1)
    assert logits_value.shape[1] == width // 4 - 1
    assert list(lengths_value) == [width // 4 - 1, max((width // 2) // 4 - 1, 1), 1]


def test_ctc_loss_is_finite_and_falls_on_a_fixed_batch(demo_data):
    params = tiny_params(learning_rate=3e-3)
    with tf.Graph().as_default(), tf.compat.v1.Session() as session:
        features, labels = tf.compat.v1.data.make_one_shot_iterator(
            data_handler.input_fn([demo_data[0]], params, "eval").take(1).cache().repeat()).get_next()
        spec = model.crnn_fn(features, labels, "train", params, config=None)
        session.run([tf.compat.v1.global_variables_initializer(), tf.compat.v1.tables_initializer()])
        losses = [session.run([spec.train_op, spec.loss])[1] for _ in range(60)]
    assert all(np.isfinite(losses))
    assert np.mean(losses[-5:]) < 0.6 * np.mean(losses[:5])


def test_train_graph_does_not_decode_but_eval_and_predict_do(demo_data):
    params = tiny_params()

    def build(mode):
        features, labels = tf.compat.v1.data.make_one_shot_iterator(
            data_handler.input_fn([demo_data[1]], params, "eval")).get_next()
        model.crnn_fn(features, labels, mode, params, config=tf.estimator.RunConfig(model_dir="/tmp/unused"))

    decoders = {"CTCGreedyDecoder", "CTCBeamSearchDecoder"}
    assert not graph_ops(lambda: build("train")) & decoders
    assert "CTCGreedyDecoder" in graph_ops(lambda: build("eval"))
    assert "CTCBeamSearchDecoder" in graph_ops(lambda: build("infer"))


def test_training_lowers_cer_and_updates_batch_norm_statistics(easy_digits, tmp_path):
    train_csv = easy_digits
    params = tiny_params(learning_rate=3e-3, save_interval=1000, alphabet_string="0123456789",
                         conv_filters=[16, 32, 32, 32, 64, 64, 64], rnn_units=32)
    estimator = tf.estimator.Estimator(model.crnn_fn, model_dir=str(tmp_path), params=params)
    estimator.train(lambda: data_handler.input_fn([train_csv], params, "train"), max_steps=1)
    before = estimator.evaluate(lambda: data_handler.input_fn([train_csv], params, "eval"))
    moving_mean_before = estimator.get_variable_value("crnn/bn5/moving_mean")
    estimator.train(lambda: data_handler.input_fn([train_csv], params, "train"), max_steps=400)
    after = estimator.evaluate(lambda: data_handler.input_fn([train_csv], params, "eval"))
    moving_mean_after = estimator.get_variable_value("crnn/bn5/moving_mean")

    assert before["cer"] > 0.8
    assert after["cer"] < before["cer"] - 0.3, (before, after)
    assert after["loss"] < before["loss"]
    assert np.abs(moving_mean_after - moving_mean_before).max() > 1e-3
    # Evaluation summaries (captioned images and a text table) are written for TensorBoard.
    eval_events = tf.io.gfile.glob(str(tmp_path / "eval" / "events.out.tfevents.*"))
    tags = {value.tag for path in eval_events for event in tf.compat.v1.train.summary_iterator(path)
            for value in event.summary.value}
    assert {"cer", "word_accuracy", "predictions/image/0", "predictions_vs_truth"} <= {tag.split("/")[0] for tag in tags} | tags


def test_predict_outputs_are_batch_major_and_padded_with_minus_one(demo_data):
    params = tiny_params(num_beam_paths=3, beam_width=5)
    with tf.Graph().as_default(), tf.compat.v1.Session() as session:
        features, _ = tf.compat.v1.data.make_one_shot_iterator(
            data_handler.input_fn([demo_data[1]], params, "eval", batch_size=5)).get_next()
        spec = model.crnn_fn(features, None, "infer", params, config=None)
        session.run([tf.compat.v1.global_variables_initializer(), tf.compat.v1.tables_initializer()])
        out = session.run(spec.predictions)
    assert out["words"].shape == (5,)
    assert out["top_words"].shape == (5, 3) and out["scores"].shape == (5, 3)
    assert out["codes"].shape == (5, network.time_steps(params.input_shape[1]))
    assert np.all(np.diff(out["scores"], axis=1) <= 1e-5)  # best path first
    for codes, length in zip(out["codes"], out["sequence_lengths"]):
        valid = codes[codes >= 0]
        assert np.all(codes[len(valid):] == -1) and len(valid) <= length
    assert all(name.decode().endswith(".png") for name in out["filenames"])
    assert list(out["words"]) == list(out["top_words"][:, 0])


def test_beam_search_and_greedy_agree_on_confident_outputs():
    rng = np.random.default_rng(0)
    blank = 5
    paths = rng.integers(0, 6, size=(4, 12))
    logits = np.full((4, 12, 6), -10.0, np.float32)
    for b in range(4):
        logits[b, np.arange(12), paths[b]] = 10.0
    lengths = np.array([12, 12, 7, 3], np.int32)
    with tf.Graph().as_default(), tf.compat.v1.Session() as session:
        time_major = tf.transpose(tf.constant(logits), [1, 0, 2])
        greedy = decoding.greedy_decode(time_major, lengths)
        beam, scores = decoding.beam_search_decode(time_major, lengths, beam_width=8, top_paths=2)
        greedy_value, beam_value = session.run([greedy, beam])
    np.testing.assert_array_equal(greedy_value, beam_value[:, 0])
    for b in range(4):  # best path collapsed by hand: merge repeats, drop blanks
        expected = [c for i, c in enumerate(paths[b, :lengths[b]]) if c != blank and (i == 0 or c != paths[b, i - 1])]
        assert [c for c in greedy_value[b] if c >= 0] == expected


@pytest.mark.parametrize("optimizer", ["adam", "adadelta", "rmsprop", "momentum"])
def test_every_optimizer_trains(optimizer, demo_data):
    params = tiny_params(optimizer=optimizer, learning_rate=1.0 if optimizer == "adadelta" else 1e-3)
    with tf.Graph().as_default(), tf.compat.v1.Session() as session:
        features, labels = tf.compat.v1.data.make_one_shot_iterator(
            data_handler.input_fn([demo_data[1]], params, "eval").repeat()).get_next()
        spec = model.crnn_fn(features, labels, "train", params, config=None)
        session.run([tf.compat.v1.global_variables_initializer(), tf.compat.v1.tables_initializer()])
        weights = tf.compat.v1.trainable_variables()[0]
        before = session.run(weights)
        session.run(spec.train_op)
        assert not np.allclose(before, session.run(weights))
        assert session.run(tf.compat.v1.train.get_global_step()) == 1
        slot_names = {v.name for v in tf.compat.v1.global_variables()}
    expected_slot = {"adam": "Adam", "adadelta": "Adadelta", "rmsprop": "RMSProp", "momentum": "Momentum"}[optimizer]
    assert any(expected_slot in name for name in slot_names)


@pytest.mark.parametrize("settings, expected", [
    ({"learning_rate_schedule": "constant"}, {0: 0.1, 500: 0.1}),
    ({"learning_rate_schedule": "exponential", "learning_decay_steps": 100, "learning_decay_rate": 0.5},
     {0: 0.1, 100: 0.05, 150: 0.1 * 0.5 ** 1.5}),
    ({"learning_rate_schedule": "exponential", "learning_decay_steps": 100, "learning_decay_rate": 0.5,
      "learning_decay_staircase": True}, {150: 0.05, 200: 0.025}),
    ({"learning_rate_schedule": "cosine", "learning_decay_steps": 0, "train_steps": 1000}, {0: 0.1, 500: 0.05, 1000: 0.0}),
    # By default both decays span the whole training run.
    ({"learning_rate_schedule": "exponential", "learning_decay_rate": 0.5, "train_steps": 200}, {100: 0.1 * 0.5 ** 0.5, 200: 0.05}),
    ({"learning_rate_schedule": "cosine", "train_steps": 4000}, {1000: 0.1 * (1 + math.cos(math.pi / 4)) / 2, 3999: 0.0}),
    ({"learning_rate_schedule": "constant", "warmup_steps": 10}, {0: 0.01, 4: 0.05, 9: 0.1, 50: 0.1}),
])
def test_learning_rate_schedules(settings, expected):
    params = tiny_params(learning_rate=0.1, **settings)
    with tf.Graph().as_default(), tf.compat.v1.Session() as session:
        step = tf.compat.v1.placeholder(tf.int64, [])
        rate = model.learning_rate(params, step)
        for at, value in expected.items():
            assert session.run(rate, {step: at}) == pytest.approx(value, rel=1e-4, abs=1e-7)


def test_metrics_against_hand_computed_values():
    assert metrics.edit_distance("kitten", "sitting") == 3
    assert metrics.edit_distance("", "abc") == 3
    counts = metrics.ErrorCounts.of(["abc", "", "héllo wörld", "中文字"], ["abd", "xy", "héllo world", "中文字"])
    assert counts.char_errors == 1 + 2 + 1 + 0
    assert counts.chars == 3 + 2 + 11 + 3
    assert counts.cer == pytest.approx(4 / 19)
    assert counts.word_accuracy == pytest.approx(1 / 4)
    assert counts.words == 1 + 1 + 2 + 1 and counts.word_errors == 1 + 1 + 1 + 0
    assert counts.wer == pytest.approx(3 / 5)
    assert metrics.character_error_rate([""], [""]) == 0.0
    assert metrics.word_error_rate(["the cat sat"], ["the cat sat on"]) == pytest.approx(1 / 4)
    assert metrics.word_accuracy([[1, 2]], [[1, 2]]) == 1.0


def test_eval_metric_ops_accumulate_over_batches():
    with tf.Graph().as_default(), tf.compat.v1.Session() as session:
        predicted = tf.compat.v1.placeholder(tf.int32, [None, None])
        truth = tf.compat.v1.placeholder(tf.int32, [None, None])
        ops = metrics.eval_metric_ops(predicted, truth, space_code=9)
        session.run(tf.compat.v1.local_variables_initializer())
        update = {name: op[1] for name, op in ops.items()}
        session.run(update, {predicted: [[1, 2, -1], [0, 0, 0]], truth: [[1, 2, 3], [0, -1, -1]]})
        session.run(update, {predicted: [[0, 9, 1]], truth: [[0, 9, 1]]})
        values = session.run({name: op[0] for name, op in ops.items()})
    # Errors: 1 (missing 3) + 2 (two extra zeros) + 0, over 3 + 1 + 3 true units.
    assert values["cer"] == pytest.approx(3 / 7)
    assert values["word_accuracy"] == pytest.approx(1 / 3)
    assert values["wer"] == pytest.approx(2 / 4)
