"""tf_crnn.model: ``crnn_fn`` in each of its three modes, learning rates, optimizers, and training
that really lowers the CER.

The per-mode tests feed ``crnn_fn`` random in-memory tensors, one test per ModeKeys, in the style
of tensorflow/models' official/r1/mnist/mnist_test.py; the others read images through input_fn.
"""

import math

import cv2
import numpy as np
import pytest
import tensorflow as tf
from helpers import DIGIT_READER, digit_line, tiny_params

from tf_crnn import constants, data_handler, model, network
from tf_crnn.alphabet import Alphabet
from tf_crnn.demo import generate_demo_dataset

ModeKeys = tf.estimator.ModeKeys
DECODERS = {"CTCGreedyDecoder", "CTCBeamSearchDecoder"}
# Content widths of the random batch: full, half, narrow, and the narrowest with 2 time steps.
WIDTHS = [128, 64, 40, 12]


def op_types(graph) -> set[str]:
    """The types of the graph's ops and of the ops in its functions (a map_fn's loop body)."""
    graph_def = graph.as_graph_def()
    bodies = [node.op for function in graph_def.library.function for node in function.node_def]
    return {op.type for op in graph.get_operations()} | set(bodies)


def graph_ops(spec_fn):
    with tf.Graph().as_default() as graph:
        spec_fn()
        return op_types(graph)


def random_features(params, widths=WIDTHS):
    """Features as input_fn gives them: random pixels in [0, 1], zero right of each width."""
    height, width = params.input_shape
    pixels = tf.random.uniform([len(widths), height, width, params.input_channels], seed=1)
    inside = tf.sequence_mask(widths, width, dtype=tf.float32)[:, tf.newaxis, :, tf.newaxis]
    return {
        constants.IMAGES: pixels * inside,
        constants.IMAGES_WIDTHS: tf.constant(widths, tf.int32),
        constants.FILENAMES: tf.constant([f"{i}.png" for i in range(len(widths))]),
    }


def random_labels(params, widths=WIDTHS, seed=0):
    """Codes as long as the time steps of each width, no unit twice in a row: the longest labels
    CTC can fit. No prediction can then be longer than its label, so the CER stays within [0, 1]."""
    rng = np.random.default_rng(seed)
    units = len(Alphabet.from_params(params))
    rows = []
    for width in widths:
        row = [int(rng.integers(units))]
        while len(row) < network.time_steps(width):
            row.append(int((row[-1] + 1 + rng.integers(units - 1)) % units))
        rows.append(row)
    dense = np.full((len(rows), max(map(len, rows))), constants.PADDING_CODE, np.int32)
    for index, row in enumerate(rows):
        dense[index, : len(row)] = row
    return data_handler.dense_codes_to_sparse(tf.constant(dense)), rows


def initialize(session):
    session.run(
        [
            tf.compat.v1.global_variables_initializer(),
            tf.compat.v1.local_variables_initializer(),
            tf.compat.v1.tables_initializer(),
        ]
    )


# --- crnn_fn, one test per mode, on random tensors ------------------------------------------------
def test_train_mode_gives_a_finite_loss_and_a_train_op_that_steps():
    params = tiny_params()
    with tf.Graph().as_default() as graph, tf.compat.v1.Session() as session:
        labels, _ = random_labels(params)
        spec = model.crnn_fn(random_features(params), labels, ModeKeys.TRAIN, params, config=None)
        assert spec.mode == ModeKeys.TRAIN
        assert spec.loss.shape == () and spec.loss.dtype == tf.float32
        # The loss is named for the hooks that report it (reporting.ProgressHook).
        assert graph.get_tensor_by_name(constants.LOSS_TENSOR_NAME) is spec.loss
        assert not op_types(graph) & DECODERS
        assert not spec.eval_metric_ops and not spec.predictions
        global_step = tf.compat.v1.train.get_global_step()
        (weights,) = [
            v for v in tf.compat.v1.global_variables() if v.name == "crnn/logits/kernel:0"
        ]
        initialize(session)
        before = session.run(weights)
        loss_before, _ = session.run([spec.loss, spec.train_op])
        assert np.isfinite(loss_before) and loss_before > 0
        assert session.run(global_step) == 1
        session.run(spec.train_op)
        assert session.run(global_step) == 2
        assert not np.allclose(before, session.run(weights))
        names = [v.name for v in tf.compat.v1.trainable_variables()]
    assert names and all(name.startswith("crnn/") for name in names)


def test_eval_mode_gives_cer_wer_and_word_accuracy_within_0_and_1(tmp_path):
    params = tiny_params()
    config = tf.estimator.RunConfig(model_dir=str(tmp_path))
    with tf.Graph().as_default() as graph, tf.compat.v1.Session() as session:
        labels, _ = random_labels(params)
        spec = model.crnn_fn(random_features(params), labels, ModeKeys.EVAL, params, config)
        assert spec.mode == ModeKeys.EVAL and spec.train_op is None
        assert set(spec.eval_metric_ops) == {"cer", "wer", "word_accuracy"}
        assert "CTCGreedyDecoder" in op_types(graph)
        # Captioned images and a prediction table, written beside the Estimator's eval summaries.
        (hook,) = spec.evaluation_hooks
        assert isinstance(hook, tf.estimator.SummarySaverHook)
        initialize(session)
        updates = [update for _, update in spec.eval_metric_ops.values()]
        for _ in range(2):
            loss, _ = session.run([spec.loss, updates])
            assert np.isfinite(loss) and loss > 0
        values = session.run({name: value for name, (value, _) in spec.eval_metric_ops.items()})
    for name, value in values.items():
        assert 0.0 <= value <= 1.0, (name, value)
    assert values["word_accuracy"] == 0.0  # an untrained network reads no label of 2 to 31 units


def test_predict_mode_gives_batch_major_outputs_padded_with_minus_one():
    params = tiny_params(num_beam_paths=3, beam_width=5)
    alphabet = Alphabet.from_params(params)
    batch, paths, steps = len(WIDTHS), 3, network.time_steps(params.input_shape[1])
    with tf.Graph().as_default() as graph, tf.compat.v1.Session() as session:
        spec = model.crnn_fn(random_features(params), None, ModeKeys.PREDICT, params, config=None)
        assert spec.mode == ModeKeys.PREDICT and spec.loss is None and spec.train_op is None
        assert "CTCBeamSearchDecoder" in op_types(graph)
        initialize(session)
        out = session.run(spec.predictions)
    assert set(out) == {*constants.SERVING_OUTPUTS, constants.FRAME_LOG_PROBS, constants.FILENAMES}
    assert out["words"].shape == (batch,)
    assert out["top_words"].shape == (batch, paths) and out["scores"].shape == (batch, paths)
    assert out["codes"].shape == (batch, steps) and out["codes"].dtype == np.int32
    assert out["sequence_lengths"].tolist() == [network.time_steps(w) for w in WIDTHS]
    # Per-frame log-probabilities over every class, blank included: each step sums to 1.
    log_probs = out["frame_log_probs"]
    assert log_probs.shape == (batch, steps, alphabet.num_classes) and log_probs.dtype == np.float32
    np.testing.assert_allclose(np.exp(log_probs).sum(axis=2), 1.0, rtol=1e-5)
    assert list(out["words"]) == list(out["top_words"][:, 0])
    assert np.all(np.diff(out["scores"], axis=1) <= 1e-5)  # best path first
    for codes, length, word in zip(out["codes"], out["sequence_lengths"], out["words"]):
        valid = codes[codes >= 0]
        assert np.all(codes[len(valid) :] == -1) and len(valid) <= length
        assert np.all(valid < alphabet.blank_code)  # the blank is never output
        assert word.decode() == alphabet.decode(valid)
    assert [name.decode() for name in out["filenames"]] == [f"{i}.png" for i in range(batch)]


# --- crnn_fn on images read by input_fn -----------------------------------------------------------
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


def test_ctc_loss_is_finite_and_falls_on_a_fixed_batch(demo_data):
    params = tiny_params(learning_rate=3e-3)
    with tf.Graph().as_default(), tf.compat.v1.Session() as session:
        dataset = data_handler.input_fn([demo_data[0]], params, "eval").take(1).cache().repeat()
        features, labels = tf.compat.v1.data.make_one_shot_iterator(dataset).get_next()
        spec = model.crnn_fn(features, labels, "train", params, config=None)
        initialize(session)
        losses = [session.run([spec.train_op, spec.loss])[1] for _ in range(60)]
    assert all(np.isfinite(losses))
    assert np.mean(losses[-5:]) < 0.6 * np.mean(losses[:5])


def test_train_graph_does_not_decode_but_eval_and_predict_do(demo_data):
    params = tiny_params()

    def build(mode):
        dataset = data_handler.input_fn([demo_data[1]], params, "eval")
        features, labels = tf.compat.v1.data.make_one_shot_iterator(dataset).get_next()
        config = tf.estimator.RunConfig(model_dir="/tmp/unused")
        model.crnn_fn(features, labels, mode, params, config=config)

    assert not graph_ops(lambda: build("train")) & DECODERS
    assert "CTCGreedyDecoder" in graph_ops(lambda: build("eval"))
    assert "CTCBeamSearchDecoder" in graph_ops(lambda: build("infer"))


def test_predict_outputs_are_batch_major_and_padded_with_minus_one(demo_data):
    params = tiny_params(num_beam_paths=3, beam_width=5)
    with tf.Graph().as_default(), tf.compat.v1.Session() as session:
        dataset = data_handler.input_fn([demo_data[1]], params, "eval", batch_size=5)
        features, _ = tf.compat.v1.data.make_one_shot_iterator(dataset).get_next()
        spec = model.crnn_fn(features, None, "infer", params, config=None)
        initialize(session)
        out = session.run(spec.predictions)
    assert out["words"].shape == (5,)
    assert out["top_words"].shape == (5, 3) and out["scores"].shape == (5, 3)
    assert out["codes"].shape == (5, network.time_steps(params.input_shape[1]))
    assert np.all(np.diff(out["scores"], axis=1) <= 1e-5)  # best path first
    for codes, length in zip(out["codes"], out["sequence_lengths"]):
        valid = codes[codes >= 0]
        assert np.all(codes[len(valid) :] == -1) and len(valid) <= length
    assert all(name.decode().endswith(".png") for name in out["filenames"])
    assert list(out["words"]) == list(out["top_words"][:, 0])


def test_training_lowers_cer_and_updates_batch_norm_statistics(easy_digits, tmp_path):
    train_csv = easy_digits
    params = tiny_params(**DIGIT_READER, train_batch_size=16, eval_batch_size=32)
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
    tags = {
        value.tag
        for path in eval_events
        for event in tf.compat.v1.train.summary_iterator(path)
        for value in event.summary.value
    }
    expected_tags = {"cer", "word_accuracy", "predictions/image/0", "predictions_vs_truth"}
    assert expected_tags <= {tag.split("/")[0] for tag in tags} | tags


# --- optimizers and learning rates ----------------------------------------------------------------
@pytest.mark.parametrize("optimizer", ["adam", "adadelta", "rmsprop", "momentum"])
def test_every_optimizer_trains(optimizer, demo_data):
    rate = 1.0 if optimizer == "adadelta" else 1e-3
    params = tiny_params(optimizer=optimizer, learning_rate=rate)
    with tf.Graph().as_default(), tf.compat.v1.Session() as session:
        dataset = data_handler.input_fn([demo_data[1]], params, "eval").repeat()
        features, labels = tf.compat.v1.data.make_one_shot_iterator(dataset).get_next()
        spec = model.crnn_fn(features, labels, "train", params, config=None)
        initialize(session)
        weights = tf.compat.v1.trainable_variables()[0]
        before = session.run(weights)
        session.run(spec.train_op)
        assert not np.allclose(before, session.run(weights))
        assert session.run(tf.compat.v1.train.get_global_step()) == 1
        slot_names = {v.name for v in tf.compat.v1.global_variables()}
    expected_slot = {
        "adam": "Adam",
        "adadelta": "Adadelta",
        "rmsprop": "RMSProp",
        "momentum": "Momentum",
    }[optimizer]
    assert any(expected_slot in name for name in slot_names)


@pytest.mark.parametrize(
    "settings, kind",
    [
        ({"optimizer": "adam"}, "AdamOptimizer"),
        ({"optimizer": "adadelta"}, "AdadeltaOptimizer"),
        ({"optimizer": "rmsprop", "momentum": 0.5}, "RMSPropOptimizer"),
        ({"optimizer": "momentum", "momentum": 0.5}, "MomentumOptimizer"),
    ],
)
def test_make_optimizer_gives_the_named_optimizer_with_its_momentum(settings, kind):
    with tf.Graph().as_default():
        made = model.make_optimizer(tiny_params(**settings), tf.constant(0.1))
    assert type(made).__name__ == kind
    if "momentum" in settings:
        assert made._momentum == 0.5


@pytest.mark.parametrize(
    "settings, expected",
    [
        ({"learning_rate_schedule": "constant"}, {0: 0.1, 500: 0.1}),
        (
            {
                "learning_rate_schedule": "exponential",
                "learning_decay_steps": 100,
                "learning_decay_rate": 0.5,
            },
            {0: 0.1, 100: 0.05, 150: 0.1 * 0.5**1.5},
        ),
        (
            {
                "learning_rate_schedule": "exponential",
                "learning_decay_steps": 100,
                "learning_decay_rate": 0.5,
                "learning_decay_staircase": True,
            },
            {150: 0.05, 200: 0.025},
        ),
        (
            {"learning_rate_schedule": "cosine", "learning_decay_steps": 0, "train_steps": 1000},
            {0: 0.1, 500: 0.05, 1000: 0.0},
        ),
        # By default both decays span the whole training run.
        (
            {
                "learning_rate_schedule": "exponential",
                "learning_decay_rate": 0.5,
                "train_steps": 200,
            },
            {100: 0.1 * 0.5**0.5, 200: 0.05},
        ),
        (
            {"learning_rate_schedule": "cosine", "train_steps": 4000},
            {1000: 0.1 * (1 + math.cos(math.pi / 4)) / 2, 3999: 0.0},
        ),
        (
            {"learning_rate_schedule": "constant", "warmup_steps": 10},
            {0: 0.01, 4: 0.05, 9: 0.1, 50: 0.1},
        ),
    ],
)
def test_learning_rate_schedules(settings, expected):
    params = tiny_params(learning_rate=0.1, **settings)
    with tf.Graph().as_default(), tf.compat.v1.Session() as session:
        step = tf.compat.v1.placeholder(tf.int64, [])
        rate = model.learning_rate(params, step)
        for at, value in expected.items():
            assert session.run(rate, {step: at}) == pytest.approx(value, rel=1e-4, abs=1e-7)


def test_gradients_flow_to_the_updates_without_waiting_for_each_other():
    """GATE_NONE, as in a tf.GradientTape step: the optimizer's default (GATE_OP) adds a gate of
    control dependencies at every op, and costs 4 to 9% of a training step (make bench)."""
    params = tiny_params()
    with tf.Graph().as_default() as graph:
        labels, _ = random_labels(params)
        model.crnn_fn(random_features(params), labels, ModeKeys.TRAIN, params, config=None)
        gates = [op.name for op in graph.get_operations() if "/tuple/control_dependency" in op.name]
    assert not gates, gates[:3]
