"""Where the Estimator runs: the cluster in ``TF_CONFIG``, the distribution strategy, the session
and the RunConfig, and the Estimator built from them.

``tf.estimator.RunConfig`` reads ``TF_CONFIG`` from the environment by itself; this module reads it
too, for what RunConfig does not decide: which strategy applies, who is chief, which tasks a session
may talk to.
"""

from __future__ import annotations

import json
import os

import tensorflow as tf

from tf_crnn import model
from tf_crnn.config import Params, ParamsError
from tf_crnn.csv_dataset import Shard

TF_CONFIG_ENV = "TF_CONFIG"


def read_tf_config() -> dict:
    """The cluster and task that a cloud service (or you) set in $TF_CONFIG; {} when training
    alone."""
    try:
        return json.loads(os.environ.get(TF_CONFIG_ENV) or "{}")
    except json.JSONDecodeError as error:
        raise ParamsError(f"{TF_CONFIG_ENV} is not valid JSON: {error}") from None


def is_chief(tf_config: dict) -> bool:
    """Whether this process reports and writes the run's files: the chief, or a process alone.

    Read from TF_CONFIG, because under MultiWorkerMirroredStrategy every worker's RunConfig says
    chief.
    """
    task = tf_config.get("task", {})
    if not task:
        return True
    if task.get("type") == "chief":
        return True
    has_chief = bool(tf_config.get("cluster", {}).get("chief"))
    return task.get("type") == "worker" and task.get("index", 0) == 0 and not has_chief


def build_strategy(params: Params, tf_config: dict) -> tf.distribute.Strategy | None:
    """The strategy ``params.distribution`` asks for, or an error saying why it cannot apply.

    Call it before any TensorFlow op runs: MultiWorkerMirroredStrategy configures the runtime.
    """
    cluster = tf_config.get("cluster", {})
    task_type = tf_config.get("task", {}).get("type")
    machines = len(cluster.get("chief", [])) + len(cluster.get("worker", []))
    if params.distribution == "none":
        return None
    if params.distribution == "mirrored":
        if machines > 1:
            raise ParamsError(
                f"distribution: 'mirrored' uses the GPUs of one machine, but {TF_CONFIG_ENV} names "
                f"{machines} training machines; use multi_worker_mirrored or parameter_server"
            )
        return tf.distribute.MirroredStrategy(devices=params.mirrored_devices or None)
    if params.distribution == "multi_worker_mirrored" and not machines:
        raise ParamsError(
            f"distribution: 'multi_worker_mirrored' needs {TF_CONFIG_ENV} with a cluster of "
            "chief/worker tasks (set by the cloud service, or by you: see the README)"
        )
    if params.distribution == "parameter_server" and not cluster.get("ps"):
        raise ParamsError(f"distribution: 'parameter_server' needs {TF_CONFIG_ENV} with 'ps' tasks")
    if task_type == "evaluator":
        # The evaluator evaluates alone; a MultiWorkerMirroredStrategy built there fails (KeyError).
        return None
    if params.distribution == "multi_worker_mirrored":
        return tf.distribute.MultiWorkerMirroredStrategy()
    # TF2's ParameterServerStrategy does not work with Estimator; the compat.v1 one does.
    return tf.compat.v1.distribute.experimental.ParameterServerStrategy()


def data_shard(tf_config: dict, strategy: tf.distribute.Strategy | None) -> Shard | None:
    """This task's share of the training data when no strategy gives one.

    Under a strategy the Estimator hands input_fn an ``InputContext`` that says it. Between-graph
    training without one (``distribution: none`` in a cluster) would otherwise have every worker
    read the same data in the same order: the chief takes share 0, worker i share i + 1.
    """
    cluster, task = tf_config.get("cluster", {}), tf_config.get("task", {})
    chiefs, workers = len(cluster.get("chief", [])), len(cluster.get("worker", []))
    if strategy is not None or chiefs + workers < 2 or task.get("type") not in ("chief", "worker"):
        return None
    index = task.get("index", 0) + (chiefs if task["type"] == "worker" else 0)
    return Shard(chiefs + workers, index)


def check_batch_split(params: Params, strategy: tf.distribute.Strategy | None) -> None:
    """train_batch_size is global: it must split evenly over the replicas that train in sync."""
    replicas = strategy.num_replicas_in_sync if strategy is not None else 1
    if params.train_batch_size % replicas:
        raise ParamsError(
            f"train_batch_size: {params.train_batch_size} images do not split evenly over the "
            f"{replicas} replicas of distribution '{params.distribution}'"
        )


def session_config_for(params: Params, tf_config: dict) -> tf.compat.v1.ConfigProto:
    """The session config: ours replaces the Estimator's default, so it must carry what that one
    did."""
    config = tf.compat.v1.ConfigProto(allow_soft_placement=True)
    if params.distribution == "mirrored":
        # Sessions see one CPU unless told otherwise, so mirroring over logical CPUs would hang.
        config.device_count["CPU"] = len(tf.config.list_logical_devices("CPU"))
    task = tf_config.get("task", {})
    if tf_config.get("cluster", {}).get("ps") and task.get("type") in ("chief", "worker"):
        # Talk only to the parameter servers and ourselves: without this filter a session waits for
        # every task of the cluster, and the chief's final prediction hangs once workers are done.
        own_task = f"/job:{task['type']}/task:{task.get('index', 0)}"
        config.device_filters.extend(["/job:ps", own_task])
    return config


def build_estimator(
    params: Params,
    job_dir: str,
    strategy: tf.distribute.Strategy | None = None,
    tf_config: dict | None = None,
    warm_start: tf.estimator.WarmStartSettings | None = None,
) -> tf.estimator.Estimator:
    """The Estimator of ``job_dir``, with the RunConfig it really uses.

    (tf-crnn built its RunConfig with ``replace()`` and threw the result away.)

    ``warm_start`` (``resume.prepare_checkpoints``): weights to start from while ``job_dir`` has no
    checkpoint; the Estimator ignores it once it has one.
    """
    config = tf.estimator.RunConfig(
        model_dir=job_dir,
        tf_random_seed=params.random_seed,
        save_checkpoints_steps=params.save_interval,
        keep_checkpoint_max=params.keep_checkpoint_max,
        save_summary_steps=params.save_summary_steps,
        log_step_count_steps=params.log_step_count_steps,
        session_config=session_config_for(params, tf_config or {}),
        train_distribute=strategy,
    )
    return tf.estimator.Estimator(
        model.crnn_fn, config=config, params=params, warm_start_from=warm_start
    )


def single_process_estimator(params: Params, job_dir: str) -> tf.estimator.Estimator:
    """An Estimator of ``job_dir`` that runs in this process alone, whatever TF_CONFIG says.

    For the chief's closing predictions: in a cluster they must not wait for tasks that may
    already have finished. (RunConfig reads TF_CONFIG from the environment, hence the swap.)
    """
    tf_config = os.environ.pop(TF_CONFIG_ENV, None)
    try:
        return build_estimator(params, job_dir)
    finally:
        if tf_config is not None:
            os.environ[TF_CONFIG_ENV] = tf_config
