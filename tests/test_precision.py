"""tf_crnn/precision.py: what ``precision=auto`` picks on which hardware, and that each policy
really changes the graph while the loss stays float32. float16 and bfloat16 run here on CPU
stand-ins (emulated where the CPU lacks them); their speed is measured by ``make bench``."""

import json

import pytest
import tensorflow as tf
from helpers import job_args, tiny_flags

from tf_crnn import model, precision, task
from tf_crnn.alphabet import with_resolved_alphabet
from tf_crnn.config import Params, ParamsError
from tf_crnn.precision import Hardware

AVX2_ONLY = frozenset({"sse4_2", "avx", "avx2", "fma"})


@pytest.mark.parametrize(
    "hardware, expected",
    [
        (Hardware(AVX2_ONLY | {"amx_tile", "amx_bf16", "avx512_bf16"}, ()), "mixed_bfloat16"),
        (Hardware(AVX2_ONLY | {"avx512f", "avx512_bf16"}, ()), "mixed_bfloat16"),
        (Hardware(AVX2_ONLY | {"avx512f"}, ()), "float32"),
        (Hardware(AVX2_ONLY, ()), "float32"),
        (Hardware(AVX2_ONLY, ((8, 0), (7, 0))), "mixed_float16"),
        (Hardware(AVX2_ONLY | {"avx512_bf16"}, ((6, 1),)), "float32"),  # P100: no tensor cores
    ],
)
def test_auto_decides_from_the_hardware_and_says_why(hardware, expected):
    name, reason = precision.resolve("auto", hardware)
    assert name == expected
    assert reason.startswith("auto: ")


def test_an_explicit_precision_is_taken_as_it_is():
    hardware = Hardware(AVX2_ONLY, ())
    assert precision.resolve("mixed_bfloat16", hardware) == (
        "mixed_bfloat16",
        "set by the precision setting",
    )


def test_unknown_precision_is_refused():
    with pytest.raises(ParamsError, match="precision: must be one of auto, float32"):
        Params(precision="float8")


def build_train_graph(policy_name):
    params = Params(
        alphabet_string="abc",
        conv_filters=[4, 4, 8, 8, 8, 8, 8],
        rnn_units=8,
        train_batch_size=4,
        precision=policy_name,
    )
    params = with_resolved_alphabet(params, [])
    graph = tf.Graph()
    with graph.as_default():
        features = {
            "images": tf.random.uniform([4, 32, 48, 1], seed=1),
            "images_widths": tf.constant([48, 40, 30, 20]),
            "filenames": tf.fill([4], ""),
        }
        labels = tf.sparse.from_dense(tf.constant([[1, 2], [0, 1], [2, 2], [1, 0]]))
        spec = model.crnn_fn(features, labels, "train", params, config=None)
    return graph, spec


@pytest.mark.parametrize(
    "policy_name, compute_dtype",
    [("float32", "float32"), ("mixed_bfloat16", "bfloat16"), ("mixed_float16", "float16")],
)
def test_each_policy_computes_the_network_in_its_dtype_and_the_loss_in_float32(
    policy_name, compute_dtype
):
    problem = Hardware.of_this_machine().bfloat16_problem(in_cluster=False)
    if policy_name == "mixed_bfloat16" and problem:
        pytest.skip(problem)
    graph, spec = build_train_graph(policy_name)
    conv_dtypes = {op.get_attr("T").name for op in graph.get_operations() if op.type == "Conv2D"}
    assert conv_dtypes == {compute_dtype}
    assert spec.loss.dtype == tf.float32
    variable_dtypes = {v.dtype.base_dtype for v in graph.get_collection("variables")}
    assert tf.float16 not in variable_dtypes and tf.bfloat16 not in variable_dtypes
    loss_scaled = any("loss_scale" in v.name for v in graph.get_collection("variables"))
    assert loss_scaled == (policy_name == "mixed_float16")
    with graph.as_default(), tf.compat.v1.Session() as session:
        session.run(tf.compat.v1.global_variables_initializer())
        losses = [session.run([spec.loss, spec.train_op])[0] for _ in range(3)]
        step = session.run(tf.compat.v1.train.get_global_step())
    assert all(0 < loss < float("inf") for loss in losses)
    # Dynamic loss scaling skips a step whose float16 gradients overflow (and halves the scale):
    # with a random start, the first step may be one.
    assert step == 3 or (policy_name == "mixed_float16" and 1 <= step < 3)


BFLOAT16_CPU = Hardware(AVX2_ONLY | {"avx512f", "avx512_bf16"}, ())


def test_in_a_cpu_cluster_auto_stays_float32_and_bfloat16_is_refused():
    name, reason = precision.resolve("auto", BFLOAT16_CPU, in_cluster=True)
    assert name == "float32" and "TF_CONFIG cluster" in reason
    with pytest.raises(precision.PrecisionError, match="mixed_bfloat16 cannot apply"):
        precision.resolve("mixed_bfloat16", BFLOAT16_CPU, in_cluster=True)
    gpu_cluster = Hardware(AVX2_ONLY, ((8, 0),))
    assert precision.resolve("auto", gpu_cluster, in_cluster=True)[0] == "mixed_float16"


def test_task_refuses_bfloat16_in_a_cpu_cluster_before_training(
    tmp_path, monkeypatch, capsys, text_line_csv
):
    monkeypatch.setattr(
        precision.Hardware, "of_this_machine", classmethod(lambda cls: BFLOAT16_CPU)
    )
    cluster = {"chief": ["127.0.0.1:1"], "worker": ["127.0.0.1:2"]}
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster, "task": {"type": "chief"}}))
    csv = text_line_csv(["ab", "cd"])
    args = job_args(tmp_path / "job", csv, csv)
    assert task.main([*args, *tiny_flags(precision="mixed_bfloat16")]) == 2
    assert "precision: mixed_bfloat16 cannot apply" in capsys.readouterr().err
    assert not (tmp_path / "job" / "params.json").exists()


@pytest.mark.parametrize(
    "cap, expected",
    [
        ("ONEDNN_MAX_CPU_ISA=AVX2", "float32"),
        ("DNNL_MAX_CPU_ISA=avx512_core", "float32"),
        ("ONEDNN_MAX_CPU_ISA=AVX512_CORE_BF16", "mixed_bfloat16"),
        ("ONEDNN_MAX_CPU_ISA=AVX512_CORE_AMX", "mixed_bfloat16"),
    ],
)
def test_a_onednn_cap_below_bfloat16_keeps_auto_in_float32_and_refuses_bfloat16(cap, expected):
    """With oneDNN held below AVX512_CORE_BF16 (to stand in for an older CPU), a bfloat16
    convolution fails at the first training step: "could not create a primitive descriptor"."""
    hardware = Hardware(BFLOAT16_CPU.cpu_flags, (), cap)
    name, reason = precision.resolve("auto", hardware)
    assert name == expected
    if expected == "float32":
        assert cap in reason
        with pytest.raises(precision.PrecisionError, match=f"mixed_bfloat16 cannot apply: {cap}"):
            precision.resolve("mixed_bfloat16", hardware)
    else:
        assert precision.resolve("mixed_bfloat16", hardware)[0] == "mixed_bfloat16"
    # On GPUs the convolutions do not go through oneDNN.
    with_gpu = Hardware(BFLOAT16_CPU.cpu_flags, ((8, 0),), cap)
    assert precision.resolve("mixed_bfloat16", with_gpu)[0] == "mixed_bfloat16"


def test_the_onednn_cap_is_read_from_either_variable_newer_name_first(monkeypatch):
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)
    assert precision._onednn_isa_cap() is None
    monkeypatch.setenv("DNNL_MAX_CPU_ISA", "AVX2")
    assert precision._onednn_isa_cap() == "DNNL_MAX_CPU_ISA=AVX2"
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE")
    assert precision._onednn_isa_cap() == "ONEDNN_MAX_CPU_ISA=AVX512_CORE"


def test_task_refuses_bfloat16_under_a_onednn_cap_before_training(
    tmp_path, monkeypatch, capsys, text_line_csv
):
    # The cap itself is not set here: oneDNN reads it once per process, and other tests share it.
    monkeypatch.setattr(precision, "_onednn_isa_cap", lambda: "ONEDNN_MAX_CPU_ISA=AVX2")
    csv = text_line_csv(["ab", "cd"])
    args = job_args(tmp_path / "job", csv, csv)
    assert task.main([*args, *tiny_flags(precision="mixed_bfloat16")]) == 2
    err = capsys.readouterr().err
    assert "precision: mixed_bfloat16 cannot apply: ONEDNN_MAX_CPU_ISA=AVX2 keeps oneDNN" in err
    assert not (tmp_path / "job" / "params.json").exists()
