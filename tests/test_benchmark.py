"""``make bench`` runs and reports: ``python -m tf_crnn.benchmark --quick`` end to end.

Only that every figure is there and positive, and that the table names each phase and the CPU:
speeds depend on the machine and on what else runs on it, so none is asserted.
"""

import json
import math
import os
import subprocess
import sys

from tf_crnn import benchmark, benchmark_report

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

FIGURES = [
    # 1 input pipeline
    "pipeline_augmented_images_per_s",
    "pipeline_plain_images_per_s",
    # 2 Estimator training
    "train_estimator_images_per_s",
    "train_estimator_startup_s",
    # 3 bare tf.function training, and the ratio to the Estimator
    "train_bare_images_per_s",
    "estimator_over_bare",
    "train_bare_fed_images_per_s",
    "estimator_over_bare_fed",
    # 4 SavedModel inference
    "infer_bytes_images_per_s",
    "infer_float_images_per_s",
    "infer_direct_images_per_s",
    "latency_batch1_median_ms",
    "latency_batch1_p90_ms",
    "float_signature_over_direct",
    "infer_greedy_images_per_s",
    "greedy_signature_over_direct",
    "greedy_latency_batch1_median_ms",
    "greedy_latency_batch1_p90_ms",
    "bytes_over_float",
    "export_s",
    "savedmodel_load_s",
    # 5 peak memory of each phase's process
    "peak_rss_mb_pipeline",
    "peak_rss_mb_train",
    "peak_rss_mb_bare",
    "peak_rss_mb_infer",
    # 6 FLOPs and what was achieved against the matmul peak
    "forward_gflop_per_image",
    "train_gflop_per_image",
    "matmul_peak_gflops",
    "matmul_lowest_gflops",
    "train_estimator_gflops",
    "train_estimator_fraction_of_peak",
    "train_bare_gflops",
    "train_bare_fraction_of_peak",
    "infer_float_gflops",
    "infer_direct_gflops",
    "infer_direct_fraction_of_peak",
]
TABLE_NAMES = [
    "input pipeline",
    "Estimator training",
    "bare tf.function training",
    "SavedModel inference",
    "peak memory",
    "FLOPs",
    "matmul float32 best",
    "Counts:",
    "TensorFlow",
]


def test_quick_benchmark_prints_a_table_then_every_figure_as_json(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "tf_crnn.benchmark", "--quick", "--workdir", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    *table_lines, json_line = result.stdout.rstrip("\n").split("\n")
    report = json.loads(json_line)

    figures = report["figures"]
    for name in FIGURES:
        value = figures.get(name)
        assert isinstance(value, (int, float)) and not isinstance(value, bool), name
        assert math.isfinite(value) and value > 0, f"{name} = {value}"
    assert report["cpu"]["model"].strip()
    assert set(report["cpu"]["flags"]) >= {"avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16"}
    assert report["cpu"]["cpus"] >= 1
    assert report["tensorflow"].count(".") >= 1
    assert report["compare"] is None

    table = "\n".join(table_lines)
    for name in TABLE_NAMES:
        assert name in table, f"the table does not name {name!r}"
    assert report["cpu"]["model"] in table
    assert report["tensorflow"] in table


def test_flops_of_the_paper_network_at_32x100():
    # Multiply-adds counted by hand, layer by layer (output positions x kernel x in x out).
    conv = (
        32 * 100 * 9 * 1 * 64  # conv1
        + 16 * 50 * 9 * 64 * 128  # conv2, after pool1
        + 8 * 25 * 9 * 128 * 256  # conv3, after pool2
        + 8 * 25 * 9 * 256 * 256  # conv4
        + 4 * 25 * 9 * 256 * 512  # conv5, after pool3 (2, 1)
        + 4 * 25 * 9 * 512 * 512  # conv6
        + 1 * 24 * 4 * 512 * 512  # conv7: 2x2 valid after pool4 (2, 1)
    )
    lstm = 2 * (2 * 24 * 4 * 256 * (512 + 256))  # 2 layers, 2 directions, 24 steps, 4 gates
    dense = 24 * 512 * 37
    flops = benchmark_report.forward_flops(
        [32, 100], 1, [64, 128, 256, 256, 512, 512, 512], 256, 2, 37
    )
    assert flops["time_steps"] == 24
    assert flops["conv"] == 2 * conv and flops["lstm"] == 2 * lstm and flops["dense"] == 2 * dense
    assert flops["total"] == 2 * (conv + lstm + dense)


def test_training_phases_take_turns_round_by_round_before_inference():
    assert benchmark.phase_runs(2, "/old") == [
        ("pipeline", None),
        ("train", None),
        ("bare", None),
        ("train", "/old"),
        ("train", None),
        ("bare", None),
        ("train", "/old"),
        ("infer", None),
        ("infer", "/old"),
    ]
    assert benchmark.phase_runs(1, None) == [
        ("pipeline", None),
        ("train", None),
        ("bare", None),
        ("infer", None),
    ]


def test_each_rate_is_the_best_of_its_rounds_and_memory_the_highest():
    first = {"images_per_s": 90.0, "fed_images_per_s": 80.0, "startup_and_warmup_s": 20.0}
    second = {"images_per_s": 70.0, "fed_images_per_s": 85.0, "startup_and_warmup_s": 25.0}
    first["peak_rss_mb"], second["peak_rss_mb"] = 1200.0, 1300.0
    assert benchmark.best_of_rounds(None, first) == first
    assert benchmark.best_of_rounds(first, second) == {
        "images_per_s": 90.0,
        "fed_images_per_s": 85.0,
        "startup_and_warmup_s": 20.0,
        "peak_rss_mb": 1300.0,
    }
