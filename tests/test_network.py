"""tf_crnn.network: the CRNN's output geometry, its time steps in Python and in the graph, the
input shapes it refuses, and the variable names that checkpoints hold."""

import pytest
import tensorflow as tf
from helpers import tiny_params

from tf_crnn import network
from tf_crnn.demo import DEMO_ALPHABET


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


def test_time_steps_in_python_and_in_the_graph():
    widths = [0, 3, 7, 8, 12, 15, 16, 100, 128, 255, 256, 400]
    expected = [1, 1, 1, 1, 2, 2, 3, 24, 31, 62, 63, 99]
    assert [network.time_steps(width) for width in widths] == expected
    assert network.time_steps(tf.constant(widths)).numpy().tolist() == expected
    in_graph = network.time_steps(tf.constant(widths, tf.int64))
    assert in_graph.dtype == tf.int64 and in_graph.numpy().tolist() == expected
    assert all(type(network.time_steps(width)) is int for width in widths)


@pytest.mark.parametrize(
    "height, width, problem",
    [
        (32, 128, None),
        (48, 128, None),
        (64, 12, None),
        (16, 128, "height must be a multiple of 16, at least 32"),
        (40, 128, "height must be a multiple of 16, at least 32"),
        (33, 128, "height must be a multiple of 16, at least 32"),
        (32, 11, "width must be at least 12 so that at least 2 time steps remain"),
        (32, 8, "width must be at least 12"),
    ],
)
def test_input_shape_problem(height, width, problem):
    found = network.input_shape_problem(height, width)
    if problem is None:
        assert found is None
    else:
        assert found.startswith(problem)
    if found is None:  # an accepted shape gives the network at least 2 time steps
        assert network.time_steps(width) >= 2


def test_smallest_accepted_input_runs_through_the_network():
    params = tiny_params(input_shape=[network.MIN_HEIGHT, network.MIN_WIDTH])
    with tf.Graph().as_default(), tf.compat.v1.Session() as session:
        logits = network.CRNN(params, 5)(
            tf.zeros([1, network.MIN_HEIGHT, network.MIN_WIDTH, 1]), tf.constant([2])
        )
        session.run(tf.compat.v1.global_variables_initializer())
        assert session.run(logits).shape == (1, network.time_steps(network.MIN_WIDTH), 5)


def test_variable_names_are_those_of_the_checkpoints():
    """Renaming a layer would make every saved checkpoint unreadable: the names are pinned here."""
    params = tiny_params(conv_filters=[2, 3, 4, 5, 6, 7, 8], rnn_units=9)
    with tf.Graph().as_default():
        network.CRNN(params, 11)(tf.zeros([1, 32, 64, 1]), tf.constant([15]), training=True)
        shapes = {v.name: v.shape.as_list() for v in tf.compat.v1.global_variables()}
    lstm = {
        f"crnn/bilstm{layer}/{direction}_lstm{suffix}/lstm_cell/{part}"
        for layer, suffix in ((1, ""), (2, "_1"))
        for direction in ("forward", "backward")
        for part in ("kernel:0", "recurrent_kernel:0", "bias:0")
    }
    assert set(shapes) == {
        *(f"crnn/conv{i}/kernel:0" for i in range(1, 8)),
        *(f"crnn/conv{i}/bias:0" for i in (1, 2, 3, 4, 7)),  # conv5 and conv6 feed batch norms
        *(
            f"crnn/bn{i}/{part}:0"
            for i in (5, 6)
            for part in ("gamma", "beta", "moving_mean", "moving_variance")
        ),
        *lstm,
        "crnn/logits/kernel:0",
        "crnn/logits/bias:0",
    }
    assert shapes["crnn/conv1/kernel:0"] == [3, 3, 1, 2]
    assert shapes["crnn/conv7/kernel:0"] == [2, 2, 7, 8]
    assert shapes["crnn/bilstm1/forward_lstm/lstm_cell/kernel:0"] == [8, 4 * 9]
    assert shapes["crnn/bilstm2/backward_lstm_1/lstm_cell/kernel:0"] == [2 * 9, 4 * 9]
    assert shapes["crnn/logits/kernel:0"] == [2 * 9, 11]
