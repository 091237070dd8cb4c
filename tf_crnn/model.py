"""The CRNN network (Shi, Bai & Yao 2015, Table 1) and ``crnn_fn``, the Estimator's ``model_fn``.

conv stack -> map-to-sequence -> stacked BiLSTM -> per-time-step class logits (CTC blank last).
TRAIN computes the CTC loss and the train op and never decodes; EVAL decodes greedily and reports
CER / WER / word accuracy; PREDICT runs beam search and returns batch-major outputs.
"""
from __future__ import annotations

from typing import Dict, List

import numpy as np
import tensorflow as tf

from tf_crnn import decoding, metrics, visualize
from tf_crnn.alphabet import Alphabet
from tf_crnn.config import Params

ModeKeys = tf.estimator.ModeKeys
layers = tf.keras.layers
# Images shown per TensorBoard image summary.
SUMMARY_IMAGES = 4
# The batch loss, for hooks that report it.
LOSS_TENSOR_NAME = "crnn_loss:0"


class CRNN(tf.keras.Model):
    """images [batch, H, W, C] -> logits [batch, W/4 - 1, num_classes]."""

    def __init__(self, params: Params):
        super().__init__(name="crnn")
        f = params.conv_filters
        conv = lambda filters, name, **kw: layers.Conv2D(filters, kw.pop("kernel", 3), padding=kw.pop("padding", "same"),
                                                         activation=kw.pop("activation", "relu"), name=name, **kw)
        bn = lambda name: layers.BatchNormalization(momentum=params.batch_norm_momentum, name=name)
        self.conv_stack: List[layers.Layer] = [
            conv(f[0], "conv1"), layers.MaxPool2D(2, name="pool1"),
            conv(f[1], "conv2"), layers.MaxPool2D(2, name="pool2"),
            conv(f[2], "conv3"), conv(f[3], "conv4"), layers.MaxPool2D((2, 1), name="pool3"),
            conv(f[4], "conv5", activation=None, use_bias=False), bn("bn5"), layers.ReLU(name="relu5"),
            conv(f[5], "conv6", activation=None, use_bias=False), bn("bn6"), layers.ReLU(name="relu6"),
            layers.MaxPool2D((2, 1), name="pool4"),
            conv(f[6], "conv7", kernel=2, padding="valid"),
        ]
        self.batch_norms = [layer for layer in self.conv_stack if isinstance(layer, layers.BatchNormalization)]
        self.rnn_dropouts = [layers.Dropout(params.dropout_rate) for _ in range(params.rnn_layers)]
        self.rnns = [layers.Bidirectional(layers.LSTM(params.rnn_units, return_sequences=True), name=f"bilstm{i + 1}")
                     for i in range(params.rnn_layers)]
        self.output_dropout = layers.Dropout(params.dropout_rate)
        self.classifier = layers.Dense(params.num_classes, name="logits")

    def call(self, images: tf.Tensor, sequence_lengths: tf.Tensor, training: bool = False) -> tf.Tensor:
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


def sequence_lengths_for(widths: tf.Tensor, params: Params) -> tf.Tensor:
    """CTC time steps per image from its true width (``Params.time_steps`` in the graph), at least 1."""
    return tf.maximum(widths // params.downscale_factor - 1, 1)


def crnn_fn(features: Dict[str, tf.Tensor], labels, mode: str, params: Params, config) -> tf.estimator.EstimatorSpec:
    """The Estimator ``model_fn``: one network, three modes."""
    alphabet = Alphabet.from_params(params)
    training = mode == ModeKeys.TRAIN
    images = features["images"]
    sequence_lengths = sequence_lengths_for(tf.cast(features["images_widths"], tf.int32), params)

    network = CRNN(params)
    logits = network(images, sequence_lengths, training=training)
    logits_time_major = tf.transpose(logits, [1, 0, 2])

    if mode == ModeKeys.PREDICT:
        return _predict_spec(logits_time_major, sequence_lengths, features, alphabet, params)

    loss = tf.reduce_mean(tf.nn.ctc_loss(
        labels=tf.cast(labels, tf.int32), logits=logits_time_major, label_length=None,
        logit_length=sequence_lengths, logits_time_major=True, blank_index=params.num_classes - 1),
        name=LOSS_TENSOR_NAME.split(":")[0])

    if training:
        # Keras layers used inside a model_fn do not register their moving-average updates.
        for batch_norm in network.batch_norms:
            for update in batch_norm.updates:
                tf.compat.v1.add_to_collection(tf.compat.v1.GraphKeys.UPDATE_OPS, update)
        tf.compat.v1.summary.image("input_images", images, max_outputs=SUMMARY_IMAGES)
        return tf.estimator.EstimatorSpec(mode, loss=loss, train_op=_train_op(loss, params))

    predicted_codes = decoding.greedy_decode(logits_time_major, sequence_lengths)
    true_codes = tf.sparse.to_dense(tf.cast(labels, tf.int32), default_value=decoding.PADDING_CODE)
    eval_metrics = metrics.eval_metric_ops(predicted_codes, true_codes, alphabet.code_of(" "))
    summary = _annotated_images_summary(images, features["images_widths"], alphabet.tf_decode(predicted_codes),
                                        alphabet.tf_decode(true_codes))
    hooks = [tf.estimator.SummarySaverHook(save_steps=1, output_dir=config.model_dir + "/eval", summary_op=summary)]
    return tf.estimator.EstimatorSpec(mode, loss=loss, eval_metric_ops=eval_metrics, evaluation_hooks=hooks)


def _predict_spec(logits_time_major, sequence_lengths, features, alphabet: Alphabet, params: Params):
    top_codes, scores = decoding.beam_search_decode(logits_time_major, sequence_lengths, params.beam_width,
                                                    params.num_beam_paths)
    top_words = alphabet.tf_decode(top_codes)
    predictions = {
        "words": top_words[:, 0],
        "top_words": top_words,
        "scores": scores,
        "codes": top_codes[:, 0],
        "sequence_lengths": sequence_lengths,
        "filenames": features["filenames"],
    }
    # No export_outputs: SavedModels are built by export_model.py, with signatures of their own.
    return tf.estimator.EstimatorSpec(ModeKeys.PREDICT, predictions=predictions)


def learning_rate(params: Params, global_step: tf.Tensor) -> tf.Tensor:
    """The learning rate at ``global_step``: schedule from Params, then linear warm-up."""
    step = tf.cast(global_step, tf.float32)
    decay_steps = params.learning_decay_steps or params.train_steps
    if params.learning_rate_schedule == "exponential":
        rate = tf.compat.v1.train.exponential_decay(params.learning_rate, global_step, decay_steps,
                                                    params.learning_decay_rate, staircase=params.learning_decay_staircase)
    elif params.learning_rate_schedule == "cosine":
        rate = tf.compat.v1.train.cosine_decay(params.learning_rate, global_step, decay_steps)
    else:
        rate = tf.constant(params.learning_rate, tf.float32)
    if params.warmup_steps:
        rate *= tf.minimum(1.0, (step + 1) / params.warmup_steps)
    return rate


def make_optimizer(params: Params, rate: tf.Tensor) -> tf.compat.v1.train.Optimizer:
    if params.optimizer == "adam":
        return tf.compat.v1.train.AdamOptimizer(rate)
    if params.optimizer == "adadelta":
        return tf.compat.v1.train.AdadeltaOptimizer(rate)
    if params.optimizer == "rmsprop":
        return tf.compat.v1.train.RMSPropOptimizer(rate, momentum=params.momentum)
    return tf.compat.v1.train.MomentumOptimizer(rate, momentum=params.momentum)


def _train_op(loss: tf.Tensor, params: Params) -> tf.Operation:
    global_step = tf.compat.v1.train.get_or_create_global_step()
    rate = learning_rate(params, global_step)
    optimizer = make_optimizer(params, rate)
    gradients, variables = zip(*optimizer.compute_gradients(loss))
    gradient_norm = tf.linalg.global_norm(gradients)
    if params.gradient_clip_norm:
        gradients, _ = tf.clip_by_global_norm(gradients, params.gradient_clip_norm, use_norm=gradient_norm)
    tf.compat.v1.summary.scalar("learning_rate", rate)
    tf.compat.v1.summary.scalar("gradient_norm", gradient_norm)
    with tf.control_dependencies(tf.compat.v1.get_collection(tf.compat.v1.GraphKeys.UPDATE_OPS)):
        return optimizer.apply_gradients(zip(gradients, variables), global_step=global_step)


def _annotated_images_summary(images, widths, predicted_texts, true_texts) -> tf.Tensor:
    """Image summary of the first images of a batch, captioned with prediction and truth."""
    def draw(images, widths, predicted, truth):
        pictures = [visualize.captioned(image[:, :max(int(w), 1)], p.decode("utf-8"), t.decode("utf-8"),
                                        width=images.shape[2])
                    for image, w, p, t in zip(images.numpy(), widths.numpy(), predicted.numpy(), truth.numpy())]
        return np.stack(pictures)[..., ::-1]  # BGR -> RGB

    count = tf.minimum(tf.shape(images)[0], SUMMARY_IMAGES)
    pictures = tf.py_function(draw, [images[:count], widths[:count], predicted_texts[:count], true_texts[:count]],
                              tf.uint8)
    rows = tf.strings.join(["| ", predicted_texts, " | ", true_texts, " |"])
    return tf.compat.v1.summary.merge([
        tf.compat.v1.summary.image("predictions", pictures, max_outputs=SUMMARY_IMAGES),
        tf.compat.v1.summary.text("predictions_vs_truth",
                                  tf.strings.reduce_join(tf.concat([["| prediction | truth |", "|---|---|"], rows], 0),
                                                         separator="\n")),
    ])
