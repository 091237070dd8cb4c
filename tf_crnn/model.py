"""``crnn_fn``, the Estimator's ``model_fn``: the CRNN network (``network.py``) in three modes.

TRAIN computes the CTC loss and the train op and never decodes; EVAL decodes greedily and reports
CER / WER / word accuracy; PREDICT decodes as ``Params.decoder`` says (beam search by default) and
returns batch-major outputs.
"""

from __future__ import annotations

import tensorflow as tf

from tf_crnn import constants, decoding, metrics, network, precision, visualize
from tf_crnn.alphabet import Alphabet
from tf_crnn.config import Params

ModeKeys = tf.estimator.ModeKeys
# The file names of the training batch, for a hook that names them when the loss is not finite.
BATCH_FILENAMES_TENSOR_NAME = "crnn_batch_filenames:0"


def crnn_fn(features, labels, mode: str, params: Params, config) -> tf.estimator.EstimatorSpec:
    """The Estimator ``model_fn``: one network, three modes.

    Args:
        features: ``images`` float32 [batch, H, W, C], ``images_widths`` int [batch] and
            ``filenames`` string [batch], as ``data_handler.input_fn`` gives them.
        labels: int32 SparseTensor [batch, units] of codes (TRAIN and EVAL), else None.
        mode: a ``tf.estimator.ModeKeys``.
        params: the run's settings, alphabet resolved.
        config: the Estimator's RunConfig (EVAL writes its image summaries to
            ``model_dir/eval``); None outside an Estimator.

    Returns:
        An EstimatorSpec: TRAIN with loss and train op; EVAL with loss and the ``cer``, ``wer``
        and ``word_accuracy`` metrics; PREDICT with the serving outputs and ``filenames``.
    """
    alphabet = Alphabet.from_params(params)
    training = mode == ModeKeys.TRAIN
    images = features[constants.IMAGES]
    widths = tf.cast(features[constants.IMAGES_WIDTHS], tf.int32)
    sequence_lengths = network.time_steps(widths)

    in_cluster = config is not None and bool(config.cluster_spec.as_dict())
    policy = precision.keras_policy(params.precision, in_cluster)
    model = network.CRNN(params, alphabet.num_classes, policy)
    logits = model(images, sequence_lengths, training=training)
    logits_time_major = tf.transpose(logits, [1, 0, 2])

    if mode == ModeKeys.PREDICT:
        return _predict_spec(logits_time_major, sequence_lengths, features, alphabet, params)

    per_image_loss = tf.nn.ctc_loss(
        labels=tf.cast(labels, tf.int32),
        logits=logits_time_major,
        label_length=None,
        logit_length=sequence_lengths,
        logits_time_major=True,
        blank_index=alphabet.blank_code,
    )
    loss = tf.reduce_mean(per_image_loss, name=constants.LOSS_TENSOR_NAME.split(":")[0])

    if training:
        tf.identity(features[constants.FILENAMES], name=BATCH_FILENAMES_TENSOR_NAME.split(":")[0])
        # Keras layers used inside a model_fn do not register their moving-average updates.
        for batch_norm in model.batch_norms:
            for update in batch_norm.updates:
                tf.compat.v1.add_to_collection(tf.compat.v1.GraphKeys.UPDATE_OPS, update)
        tf.compat.v1.summary.image("input_images", images, max_outputs=visualize.SUMMARY_IMAGES)
        return tf.estimator.EstimatorSpec(mode, loss=loss, train_op=_train_op(loss, params, policy))

    predicted_codes = decoding.greedy_decode(logits_time_major, sequence_lengths)
    true_codes = tf.sparse.to_dense(tf.cast(labels, tf.int32), default_value=constants.PADDING_CODE)
    eval_metrics = metrics.eval_metric_ops(predicted_codes, true_codes, alphabet.code_of(" "))
    summary = visualize.predictions_summary(
        images, widths, alphabet.tf_decode(predicted_codes), alphabet.tf_decode(true_codes)
    )
    hooks = []
    if config is not None:  # in an Estimator
        summary_dir = f"{config.model_dir}/{constants.EVAL_DIR}"
        hooks.append(
            tf.estimator.SummarySaverHook(save_steps=1, output_dir=summary_dir, summary_op=summary)
        )
    return tf.estimator.EstimatorSpec(
        mode, loss=loss, eval_metric_ops=eval_metrics, evaluation_hooks=hooks
    )


def _predict_spec(logits_time_major, sequence_lengths, features, alphabet: Alphabet, params):
    if params.decoder == "greedy":
        top_codes, scores = decoding.best_path_decode(logits_time_major, sequence_lengths)
    else:
        top_codes, scores = decoding.beam_search_decode(
            logits_time_major, sequence_lengths, params.beam_width, params.num_beam_paths
        )
    top_words = alphabet.tf_decode(top_codes)
    predictions = {
        constants.WORDS: top_words[:, 0],
        constants.TOP_WORDS: top_words,
        constants.SCORES: scores,
        constants.CODES: top_codes[:, 0],
        constants.SEQUENCE_LENGTHS: sequence_lengths,
        # Batch-major, float32 like the logits under every precision policy (network.py).
        constants.FRAME_LOG_PROBS: tf.nn.log_softmax(tf.transpose(logits_time_major, [1, 0, 2])),
        constants.FILENAMES: features[constants.FILENAMES],
    }
    # No export_outputs: SavedModels are built by export_model.py, with signatures of their own.
    return tf.estimator.EstimatorSpec(ModeKeys.PREDICT, predictions=predictions)


def learning_rate(params: Params, global_step: tf.Tensor) -> tf.Tensor:
    """The learning rate at ``global_step``: schedule from Params, then linear warm-up."""
    step = tf.cast(global_step, tf.float32)
    decay_steps = params.learning_decay_steps or params.train_steps
    if params.learning_rate_schedule == "exponential":
        rate = tf.compat.v1.train.exponential_decay(
            params.learning_rate,
            global_step,
            decay_steps,
            params.learning_decay_rate,
            staircase=params.learning_decay_staircase,
        )
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


def _train_op(loss: tf.Tensor, params: Params, policy) -> tf.Operation:
    global_step = tf.compat.v1.train.get_or_create_global_step()
    rate = learning_rate(params, global_step)
    optimizer = make_optimizer(params, rate)
    if policy.name == precision.MIXED_FLOAT16:
        # float16 gradients underflow: scale the loss up, and skip steps whose gradients overflow.
        optimizer = tf.compat.v1.mixed_precision.MixedPrecisionLossScaleOptimizer(
            optimizer, "dynamic"
        )
    # GATE_NONE, as tf.GradientTape does: the default GATE_OP makes each op's input gradients wait
    # for one another, which cost 4 to 9% of a paper-network training step. Safe with resource
    # variables: an update copies a variable whose old value backprop still reads.
    gradients, variables = zip(
        *optimizer.compute_gradients(loss, gate_gradients=optimizer.GATE_NONE)
    )
    gradient_norm = tf.linalg.global_norm(gradients)
    if params.gradient_clip_norm:
        gradients, _ = tf.clip_by_global_norm(
            gradients, params.gradient_clip_norm, use_norm=gradient_norm
        )
    tf.compat.v1.summary.scalar("learning_rate", rate)
    tf.compat.v1.summary.scalar("gradient_norm", gradient_norm)
    with tf.control_dependencies(tf.compat.v1.get_collection(tf.compat.v1.GraphKeys.UPDATE_OPS)):
        return optimizer.apply_gradients(zip(gradients, variables), global_step=global_step)
