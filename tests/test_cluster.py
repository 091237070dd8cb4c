"""tf_crnn.cluster: TF_CONFIG, who is chief, the distribution strategies and their refusals, the
session config of a parameter-server cluster, and the Estimator built from the settings.

Nothing here starts a cluster: multi-process runs are in test_distributed.py.
"""

import json
from types import SimpleNamespace

import pytest
import tensorflow as tf
from helpers import job_args, tiny_flags, tiny_params

from tf_crnn import cluster, task
from tf_crnn.config import ParamsError
from tf_crnn.csv_dataset import Shard

CHIEF_AND_WORKER = {"chief": ["127.0.0.1:1"], "worker": ["127.0.0.1:2"]}
PS_CLUSTER = {
    "chief": ["127.0.0.1:1"],
    "worker": ["127.0.0.1:2", "127.0.0.1:3"],
    "ps": ["127.0.0.1:4"],
}


def tf_config(task_type=None, index=0, cluster_spec=PS_CLUSTER):
    if task_type is None:
        return {}
    return {"cluster": cluster_spec, "task": {"type": task_type, "index": index}}


@pytest.fixture
def no_tf_config(monkeypatch):
    monkeypatch.delenv(cluster.TF_CONFIG_ENV, raising=False)


# --- TF_CONFIG ------------------------------------------------------------------------------------
def test_read_tf_config(monkeypatch, no_tf_config):
    assert cluster.read_tf_config() == {}
    monkeypatch.setenv("TF_CONFIG", "")
    assert cluster.read_tf_config() == {}
    monkeypatch.setenv("TF_CONFIG", json.dumps(tf_config("worker", 1)))
    assert cluster.read_tf_config() == tf_config("worker", 1)


def test_invalid_tf_config_is_a_params_error_naming_it(monkeypatch):
    monkeypatch.setenv("TF_CONFIG", "{'cluster': 1")
    with pytest.raises(ParamsError, match="TF_CONFIG is not valid JSON"):
        cluster.read_tf_config()


@pytest.mark.parametrize(
    "config, chief",
    [
        ({}, True),  # training alone
        (tf_config("chief"), True),
        (tf_config("worker", 0), False),  # the cluster has a chief
        (tf_config("worker", 1), False),
        (tf_config("ps"), False),
        (tf_config("evaluator"), False),
        # Without a chief task (MultiWorkerMirroredStrategy clusters may have none), worker 0 is it.
        (tf_config("worker", 0, {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}), True),
        (tf_config("worker", 1, {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}), False),
    ],
)
def test_is_chief(config, chief):
    assert cluster.is_chief(config) is chief


@pytest.mark.parametrize(
    "config, shard",
    [
        ({}, None),  # training alone
        (tf_config("chief"), Shard(3, 0)),  # PS_CLUSTER: a chief and two workers
        (tf_config("worker", 0), Shard(3, 1)),
        (tf_config("worker", 1), Shard(3, 2)),
        (tf_config("ps"), None),
        (tf_config("evaluator"), None),
        (tf_config("worker", 1, {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}), Shard(2, 1)),
    ],
)
def test_each_worker_without_a_strategy_gets_its_own_share_of_the_data(config, shard):
    assert cluster.data_shard(config, strategy=None) == shard


def test_under_a_strategy_the_estimator_gives_the_share():
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    assert cluster.data_shard(tf_config("worker", 1), strategy) is None


# --- strategies -----------------------------------------------------------------------------------
REFUSALS = [
    ("multi_worker_mirrored", None, "needs TF_CONFIG with a cluster"),
    ("parameter_server", CHIEF_AND_WORKER, "needs TF_CONFIG with 'ps' tasks"),
    ("mirrored", CHIEF_AND_WORKER, "uses the GPUs of one machine"),
]


@pytest.mark.parametrize("distribution, cluster_spec, message", REFUSALS)
def test_distribution_that_cannot_apply_is_refused(distribution, cluster_spec, message):
    config = tf_config("chief", cluster_spec=cluster_spec) if cluster_spec else {}
    with pytest.raises(ParamsError, match=message) as error:
        cluster.build_strategy(tiny_params(distribution=distribution), config)
    assert str(error.value).startswith("distribution: ")


@pytest.mark.parametrize("distribution, cluster_spec, message", REFUSALS)
def test_the_task_reports_a_refused_distribution_and_exits_with_2(
    distribution, cluster_spec, message, text_line_csv, tmp_path, monkeypatch, capsys
):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    if cluster_spec:
        monkeypatch.setenv("TF_CONFIG", json.dumps(tf_config("chief", cluster_spec=cluster_spec)))
    csv = text_line_csv(["ab", "cd"])
    args = job_args(tmp_path / "job", csv, csv)
    assert task.main([*args, *tiny_flags(distribution=distribution)]) == 2
    assert message in capsys.readouterr().err


def test_strategies_that_apply(no_tf_config):
    assert cluster.build_strategy(tiny_params(), {}) is None  # distribution 'none'
    mirrored = cluster.build_strategy(
        tiny_params(distribution="mirrored", mirrored_devices=["/cpu:0"]), {}
    )
    assert isinstance(mirrored, tf.distribute.MirroredStrategy)
    assert mirrored.num_replicas_in_sync == 1
    # The evaluator evaluates alone, whatever the training tasks use.
    for distribution in ("parameter_server", "multi_worker_mirrored"):
        params = tiny_params(distribution=distribution)
        assert cluster.build_strategy(params, tf_config("evaluator")) is None


def test_global_batch_that_does_not_split_over_the_replicas_is_refused():
    two_replicas = SimpleNamespace(num_replicas_in_sync=2)
    params = tiny_params(distribution="mirrored", train_batch_size=7)
    with pytest.raises(ParamsError) as error:
        cluster.check_batch_split(params, two_replicas)
    assert str(error.value).startswith(
        "train_batch_size: 7 images do not split evenly over the 2 replicas of distribution "
        "'mirrored'"
    )
    cluster.check_batch_split(tiny_params(train_batch_size=8), two_replicas)
    cluster.check_batch_split(params, None)  # one replica takes any batch


# --- sessions and the Estimator -------------------------------------------------------------------
@pytest.mark.parametrize(
    "config, filters",
    [
        (tf_config("chief"), ["/job:ps", "/job:chief/task:0"]),
        (tf_config("worker", 1), ["/job:ps", "/job:worker/task:1"]),
        (tf_config("evaluator"), []),  # evaluates alone
        (tf_config("chief", cluster_spec=CHIEF_AND_WORKER), []),  # no parameter servers
        ({}, []),
    ],
)
def test_session_config_talks_only_to_the_parameter_servers_and_itself(config, filters):
    session_config = cluster.session_config_for(tiny_params(), config)
    assert list(session_config.device_filters) == filters
    assert session_config.allow_soft_placement


def test_mirrored_sessions_see_every_logical_cpu():
    params = tiny_params(distribution="mirrored", mirrored_devices=["/cpu:0"])
    session_config = cluster.session_config_for(params, {})
    assert session_config.device_count["CPU"] == len(tf.config.list_logical_devices("CPU"))
    assert "CPU" not in cluster.session_config_for(tiny_params(), {}).device_count


def test_build_estimator_uses_the_settings(tmp_path, no_tf_config):
    params = tiny_params(
        random_seed=7,
        save_interval=33,
        keep_checkpoint_max=2,
        save_summary_steps=11,
        log_step_count_steps=9,
    )
    estimator = cluster.build_estimator(params, str(tmp_path), None, tf_config("chief"))
    config = estimator.config
    assert config.model_dir == str(tmp_path) and estimator.params == params
    assert (config.tf_random_seed, config.save_checkpoints_steps, config.keep_checkpoint_max) == (
        7,
        33,
        2,
    )
    assert (config.save_summary_steps, config.log_step_count_steps) == (11, 9)
    assert list(config.session_config.device_filters) == ["/job:ps", "/job:chief/task:0"]
    assert config.train_distribute is None


def test_single_process_estimator_ignores_tf_config_and_restores_it(tmp_path, monkeypatch):
    value = json.dumps(tf_config("chief"))
    monkeypatch.setenv("TF_CONFIG", value)
    in_cluster = cluster.build_estimator(tiny_params(), str(tmp_path))
    assert in_cluster.config.cluster_spec.as_dict() == PS_CLUSTER
    alone = cluster.single_process_estimator(tiny_params(), str(tmp_path))
    assert alone.config.cluster_spec.as_dict() == {}
    assert alone.config.is_chief and alone.config.num_worker_replicas == 1
    assert list(alone.config.session_config.device_filters) == []
    assert cluster.read_tf_config() == json.loads(value)  # put back
