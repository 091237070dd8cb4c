"""Resuming a job directory, or starting a new one from another run's weights: which settings the
checkpoints depend on, and what the Estimator is given to restore.

A checkpoint holds the network's variables, the optimizer's slot variables (Adam's two moments,
Momentum's accumulator, ...) and, under ``mixed_float16``, the loss scale. A rerun whose settings
would need other variables is refused here, naming the setting, before TensorFlow fails on a
missing variable. To keep the weights but change such a setting, a new run starts from them:
``warm_start_from`` (``--warm-start-from``) loads the network's weights into a new job directory
with a fresh optimizer, and a fresh output layer when the alphabet differs.
"""

from __future__ import annotations

import json
import logging
import os
import re
from typing import Any

import tensorflow as tf

from tf_crnn import cluster, job_files, precision
from tf_crnn.config import Params, ParamsError
from tf_crnn.constants import ASSETS_EXTRA, PARAMS_FILE
from tf_crnn.predict import find_saved_model

logger = logging.getLogger("tf_crnn")

# Settings that change the shape of the network's variables.
NETWORK_KEYS = ("input_shape", "input_channels", "conv_filters", "rnn_units", "rnn_layers")
# Settings that change the classes of the output layer, or what they mean.
ALPHABET_KEYS = ("alphabet_units", "string_split_delimiter", "alphabet_case_fold")
# Settings a job directory's checkpoints depend on: the network, its classes, and the optimizer,
# whose slot variables are saved beside the weights.
RESUME_KEYS = NETWORK_KEYS + ALPHABET_KEYS + ("optimizer",)
# The network's output layer (network.CRNN.classifier), re-initialised when the alphabet changes.
OUTPUT_LAYER_SCOPE = "crnn/logits/"
NETWORK_SCOPE = "crnn/"
# The variable mixed_float16's loss-scale optimizer adds (model._train_op).
LOSS_SCALE_VARIABLE = "current_loss_scale"


def check_resumable(saved: Params, current: Params, saved_path: str) -> None:
    """Refuses to continue a run whose saved settings would need other variables than its
    checkpoints hold: another network, alphabet or optimizer."""
    differing = [key for key in RESUME_KEYS if getattr(saved, key) != getattr(current, key)]
    if differing:
        raise ParamsError(
            f"The job directory was trained with other settings ({saved_path}); resuming with "
            "these would not fit its checkpoints. Use the saved settings, or a new --job-dir "
            "(with --warm-start-from to start it from these weights):\n"
            + _differences(saved, current, differing, "saved")
        )


def read_saved_params(job_dir: str) -> Params | None:
    """The settings saved in ``job_dir/params.json``; None for a new job directory.

    Raises:
        ParamsError: the file is damaged or invalid; the message says how to restore it from the
            newest export's copy (when there is one) or to start over.
    """
    path = os.path.join(job_dir, PARAMS_FILE)
    if not tf.io.gfile.exists(path):
        return None
    try:
        return Params.from_json(path)
    except ParamsError as error:
        try:
            copy = os.path.join(find_saved_model(job_dir), ASSETS_EXTRA, PARAMS_FILE)
        except FileNotFoundError:
            copy = None
        restore = (
            f"To continue the run, copy {copy} to {path} (the settings saved with its newest "
            "export; their precision is the export's, check it).\n"
            if copy and tf.io.gfile.exists(copy)
            else ""
        )
        problem = str(error) if path in str(error) else f"{path}: {error}"
        raise ParamsError(
            f"The settings of this job directory cannot be read: {problem}\n{restore}"
            f"To start over, use a new --job-dir (or empty {job_dir})."
        ) from None


def prepare_checkpoints(
    params: Params, job_dir: str, tf_config: dict
) -> tf.estimator.WarmStartSettings | None:
    """Before the Estimator restores: the job directory's newest valid checkpoint, checked against
    ``params``; or, for a job directory with no checkpoint yet and ``params.warm_start_from``, the
    warm start that gives the Estimator the network's weights of that run.

    Only the chief checks and repairs the checkpoints (``job_files.newest_valid_checkpoint``): the
    other tasks of a cluster wait for it to restore them.

    Raises:
        ParamsError: a setting does not fit the checkpoint, or the warm start source.
        JobDirError: no checkpoint of the job directory can be restored.
    """
    if cluster.is_chief(tf_config):
        checkpoint = job_files.newest_valid_checkpoint(job_dir)
    else:
        checkpoint = tf.train.latest_checkpoint(job_dir)
    if checkpoint is not None:
        check_precision_fits(checkpoint, params, in_cluster=bool(tf_config.get("cluster")))
        if params.warm_start_from:
            logger.info(
                "resuming %s; warm_start_from (%s) applies to a job directory's first start only",
                checkpoint, params.warm_start_from,
            )  # fmt: skip
        return None
    if not params.warm_start_from:
        return None
    return warm_start_settings(params, job_dir)


def check_precision_fits(checkpoint: str, params: Params, in_cluster: bool) -> None:
    """Refuses a precision that needs variables ``checkpoint`` lacks.

    float32 and mixed_bfloat16 have the same variables; mixed_float16 adds a loss scale. So a
    checkpoint made without it cannot resume in mixed_float16 (the other way round works: the
    loss scale is ignored). ``auto`` counts as what it picks on this machine.
    """
    policy, reason = precision.resolve(params.precision, in_cluster=in_cluster)
    if policy != precision.MIXED_FLOAT16:
        return
    names = tf.compat.v1.train.NewCheckpointReader(checkpoint).get_variable_to_shape_map()
    if LOSS_SCALE_VARIABLE not in names:
        picked = "" if params.precision == policy else f" ({reason})"
        raise ParamsError(
            f"precision: {policy}{picked} adds a loss-scale variable that the checkpoint "
            f"{checkpoint} lacks (it was trained in float32 or mixed_bfloat16). Resume with "
            "--precision float32 or mixed_bfloat16, or start a new --job-dir from these weights "
            "with --warm-start-from"
        )


def warm_start_settings(params: Params, job_dir: str) -> tf.estimator.WarmStartSettings:
    """The network's weights of ``params.warm_start_from`` (a job directory, a checkpoint or a
    SavedModel) for the first start of ``job_dir``.

    Only the network's variables (``crnn/``, its batch-norm statistics included) are loaded: the
    optimizer, its slots, the loss scale and the global step start afresh, so every optimizer and
    precision may be chosen. When the alphabet differs from the source's, the output layer starts
    from fresh weights too (its classes are other ones): fine-tuning on a new alphabet.

    Raises:
        ParamsError: the source is not found or not valid, is this job directory, or has another
            network.
    """
    source = params.warm_start_from
    if _same_folder(source, job_dir):
        raise ParamsError(
            f"warm_start_from: {source} is this job directory; to continue it, leave "
            "--warm-start-from out"
        )
    checkpoint, source_params_path = _warm_start_source(source)
    if not tf.io.gfile.exists(source_params_path):
        raise ParamsError(
            f"warm_start_from: {source_params_path} not found: the settings of {checkpoint} are "
            "needed to check that its network fits (give a tf_crnn job directory, one of its "
            "checkpoints or one of its exports)"
        )
    source_params = Params.from_json(source_params_path)
    network_differs = [
        key
        for key in NETWORK_KEYS
        if _network_value(source_params, key) != _network_value(params, key)
    ]
    if network_differs:
        raise ParamsError(
            f"warm_start_from: the network of {checkpoint} ({source_params_path}) differs from "
            "this run's, so its weights cannot be loaded. Set these as the source has them:\n"
            + _differences(source_params, params, network_differs, "source")
        )
    names = tf.compat.v1.train.NewCheckpointReader(checkpoint).get_variable_to_shape_map()
    weights = _network_weights(names)
    if any(getattr(source_params, key) != getattr(params, key) for key in ALPHABET_KEYS):
        weights = [name for name in weights if not name.startswith(OUTPUT_LAYER_SCOPE)]
        logger.info(
            "warm start: the alphabet differs from the source's (%d units, now %d), so the output "
            "layer starts from fresh weights",
            len(source_params.alphabet_units), len(params.alphabet_units),
        )  # fmt: skip
    logger.info(
        "warm start: %d network variables from %s; the optimizer starts afresh",
        len(weights), checkpoint,
    )  # fmt: skip
    # One exact name each (get_collection matches regular expressions from the start of the name).
    return tf.estimator.WarmStartSettings(
        ckpt_to_initialize_from=checkpoint,
        vars_to_warm_start=[f"{re.escape(name)}:0$" for name in weights],
    )


def _warm_start_source(source: str) -> tuple[str, str]:
    """The checkpoint to warm-start from and the params.json that describes it, for ``source``:
    a checkpoint prefix, a SavedModel folder, or a job directory (its newest valid checkpoint)."""
    if tf.io.gfile.exists(f"{source}.index"):
        problem = job_files.checkpoint_problem(source)
        if problem:
            raise ParamsError(f"warm_start_from: the checkpoint cannot be read: {problem}")
        return source, os.path.join(os.path.dirname(source), PARAMS_FILE)
    if tf.io.gfile.exists(os.path.join(source, "saved_model.pb")):
        variables = os.path.join(source, "variables", "variables")
        problem = job_files.checkpoint_problem(variables)
        if problem:
            raise ParamsError(f"warm_start_from: the SavedModel cannot be read: {problem}")
        return variables, os.path.join(source, ASSETS_EXTRA, PARAMS_FILE)
    if tf.io.gfile.isdir(source):
        for prefix in _listed_newest_first(source):
            if job_files.checkpoint_problem(prefix) is None:
                return prefix, os.path.join(source, PARAMS_FILE)
    raise ParamsError(
        f"warm_start_from: {source} is neither a checkpoint (no {source}.index), a SavedModel, "
        "nor a job directory with a checkpoint that can be read"
    )


def _listed_newest_first(job_dir: str) -> list[str]:
    """The checkpoints another job directory's state file lists, newest first (it is only read:
    it belongs to another run)."""
    try:
        state = tf.train.get_checkpoint_state(job_dir)
    except ValueError:
        return []
    if state is None:
        return []
    return list(reversed(state.all_model_checkpoint_paths)) or [state.model_checkpoint_path]


def _network_weights(names: dict[str, Any]) -> list[str]:
    """The network's variables among a checkpoint's ``names``: those under ``crnn/`` that are not
    an optimizer's slot. A slot is named after its variable (``crnn/conv1/kernel/Adam``), which is
    how it is told apart."""
    network = [name for name in names if name.startswith(NETWORK_SCOPE)]
    return sorted(
        name for name in network if not any(name.startswith(other + "/") for other in network)
    )


def _network_value(params: Params, key: str) -> Any:
    """What of ``key`` the network's variables depend on: not the input width (the conv stack
    slides over it), only the rest."""
    return params.input_shape[0] if key == "input_shape" else getattr(params, key)


def _same_folder(source: str, job_dir: str) -> bool:
    def folder(path: str) -> str:
        path = path.rstrip("/")
        if tf.io.gfile.exists(f"{path}.index"):  # a checkpoint: its folder
            path = os.path.dirname(path)
        return path if "://" in path else os.path.realpath(path)

    return folder(source) == folder(job_dir)


def _differences(first: Params, second: Params, keys: list[str], first_name: str) -> str:
    def short(value: Any) -> str:
        text = json.dumps(value, ensure_ascii=False)
        return text if len(text) <= 60 else text[:57] + "..."

    return "\n".join(
        f"  {key}: {first_name} {short(getattr(first, key))}, now {short(getattr(second, key))}"
        for key in keys
    )
