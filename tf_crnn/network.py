"""The CRNN network (Shi, Bai & Yao 2015, Table 1) and the geometry that follows from its layers.

images [batch, H, W, C] -> conv stack -> one feature column per time step -> stacked BiLSTM ->
logits [batch, W/4 - 1, classes]. The layer names are those of the checkpoints (``crnn/conv1/...``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import tensorflow as tf

if TYPE_CHECKING:
    from tf_crnn.config import Params

layers = tf.keras.layers

# The geometry of the conv stack below. The height is halved four times (pool1-pool4), then the
# 2x2 'valid' conv7 takes one row off: H must be a multiple of 16, and 32 leaves one feature row.
# The width is halved twice (pool1, pool2) and conv7 takes one column off: W/4 - 1 time steps.
HEIGHT_MULTIPLE = 16
MIN_HEIGHT = 32
WIDTH_DOWNSCALE = 4  # input columns per time step
MIN_WIDTH = 3 * WIDTH_DOWNSCALE  # two time steps at least


# Named networks, selectable with one flag (``--preset``); any setting given still overrides them.
PRESETS = {
    # The paper's Table 1: 4.3 GFLOP per 32 x 100 training image, the most accurate per step.
    "paper": {"conv_filters": [64, 128, 256, 256, 512, 512, 512], "rnn_units": 256},
    # A quarter of the filters and 96 LSTM units: several times faster on a CPU, and what the demo
    # trains; it learns far more per CPU minute than the paper's network.
    "small": {"conv_filters": [16, 32, 64, 64, 128, 128, 128], "rnn_units": 96},
}


def input_shape_problem(height: int, width: int) -> str | None:
    """Why the network cannot take [height, width] images, or None when it can."""
    if height < MIN_HEIGHT or height % HEIGHT_MULTIPLE:
        return (
            f"height must be a multiple of {HEIGHT_MULTIPLE}, at least {MIN_HEIGHT}: the conv "
            "stack halves it 4 times, then a 2x2 valid conv"
        )
    if width < MIN_WIDTH:
        return f"width must be at least {MIN_WIDTH} so that at least 2 time steps remain"
    return None


def time_steps(width):
    """CTC time steps of an image whose content is ``width`` columns wide: width // 4 - 1, at least
    1.

    The one formula for the start-up check (Python ints) and the model's sequence lengths (int
    tensors). At least 1: content narrower than 8 columns still reaches the first feature column,
    and CTC needs a step to emit anything.
    """
    steps = width // WIDTH_DOWNSCALE - 1
    return tf.maximum(steps, 1) if isinstance(steps, tf.Tensor) else max(steps, 1)


def required_time_steps(codes):
    """The CTC time steps a label needs: one per unit, plus a blank between each pair of equal
    adjacent units. One formula for Python sequences (the start-up check) and 1-D int tensors
    (the input pipeline), like :func:`time_steps`."""
    if isinstance(codes, tf.Tensor):
        repeats = tf.reduce_sum(tf.cast(tf.equal(codes[1:], codes[:-1]), tf.int32))
        return tf.size(codes) + repeats
    return len(codes) + sum(1 for a, b in zip(codes, codes[1:]) if a == b)


def _conv(filters, name, policy, kernel=3, padding="same", batch_norm=False):
    """A conv layer; one followed by batch norm has no bias and gets its ReLU after the norm."""
    activation = None if batch_norm else "relu"
    return layers.Conv2D(
        filters, kernel, padding=padding, activation=activation, use_bias=not batch_norm,
        name=name, dtype=policy,
    )  # fmt: skip


class CRNN(tf.keras.Model):
    """images [batch, H, W, C] -> logits [batch, W/4 - 1, num_classes] (CTC blank last)."""

    def __init__(self, params: Params, num_classes: int, policy="float32"):
        """``policy``: the Keras dtype policy of every layer but the last, which outputs float32
        logits (see ``precision.py``)."""
        super().__init__(name="crnn")
        f = params.conv_filters  # the paper's: 64, 128, 256, 256, 512, 512, 512
        momentum = params.batch_norm_momentum
        p = policy
        # Output shapes for an input of 32 x W (height x width x channels).
        self.conv_stack = [
            _conv(f[0], "conv1", p),  # 32 x W x 64
            layers.MaxPool2D(2, name="pool1", dtype=p),  # 16 x W/2
            _conv(f[1], "conv2", p),  # 16 x W/2 x 128
            layers.MaxPool2D(2, name="pool2", dtype=p),  # 8 x W/4
            _conv(f[2], "conv3", p),  # 8 x W/4 x 256
            _conv(f[3], "conv4", p),  # 8 x W/4 x 256
            layers.MaxPool2D((2, 1), name="pool3", dtype=p),  # 4 x W/4
            _conv(f[4], "conv5", p, batch_norm=True),  # 4 x W/4 x 512
            layers.BatchNormalization(momentum=momentum, name="bn5", dtype=p),
            layers.ReLU(name="relu5", dtype=p),
            _conv(f[5], "conv6", p, batch_norm=True),  # 4 x W/4 x 512
            layers.BatchNormalization(momentum=momentum, name="bn6", dtype=p),
            layers.ReLU(name="relu6", dtype=p),
            layers.MaxPool2D((2, 1), name="pool4", dtype=p),  # 2 x W/4
            _conv(f[6], "conv7", p, kernel=2, padding="valid"),  # 1 x W/4 - 1 x 512
        ]
        self.batch_norms = [
            layer for layer in self.conv_stack if isinstance(layer, layers.BatchNormalization)
        ]
        # Sequence of W/4 - 1 steps x 512 features -> 2 BiLSTM of rnn_units per direction.
        rate, units = params.dropout_rate, params.rnn_units
        self.rnn_dropouts = [layers.Dropout(rate, dtype=p) for _ in range(params.rnn_layers)]
        self.rnns = [
            layers.Bidirectional(
                layers.LSTM(units, return_sequences=True, dtype=p), name=f"bilstm{i + 1}", dtype=p
            )
            for i in range(params.rnn_layers)
        ]
        self.output_dropout = layers.Dropout(rate, dtype=p)
        # W/4 - 1 x num_classes, in float32 whatever the policy: CTC and softmax need the range.
        self.classifier = layers.Dense(num_classes, name="logits", dtype="float32")

    def call(self, images: tf.Tensor, sequence_lengths: tf.Tensor, training: bool = False):
        x = images
        for layer in self.conv_stack:
            x = layer(x, training=training)
        # Map-to-sequence: each column of the feature map becomes one time step.
        x = tf.transpose(x, [0, 2, 1, 3])
        x = tf.reshape(x, [tf.shape(x)[0], tf.shape(x)[1], x.shape[2] * x.shape[3]])
        mask = tf.sequence_mask(sequence_lengths, tf.shape(x)[1])
        for dropout, rnn in zip(self.rnn_dropouts, self.rnns):
            x = rnn(dropout(x, training=training), mask=mask, training=training)
        return self.classifier(self.output_dropout(x, training=training))
