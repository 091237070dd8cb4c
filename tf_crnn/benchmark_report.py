"""The report of ``python -m tf_crnn.benchmark``: the machine (``cpu_info``), the analytic FLOPs
(``forward_flops``), the figures derived from the phases' results (``make_report``), and the table
(``format_table``).
"""

from __future__ import annotations

import os
import platform

from tf_crnn.benchmark_phases import PHASES

PHASE_TITLES = {
    "pipeline": "1 input pipeline",
    "train": "2 Estimator training",
    "bare": "3 bare tf.function training",
    "infer": "4 SavedModel inference",
    "memory": "5 peak memory (RSS)",
    "flops": "6 FLOPs",
}
CPU_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16")


# --- the machine ---------------------------------------------------------------------------------
def cpu_info() -> dict:
    """CPU model name, the CPU_FLAGS it has, and how many CPUs this process may use."""
    model, flags = "", set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name" and not model:
                    model = value.strip()
                elif key == "flags" and not flags:
                    flags = set(value.split())
    except OSError:  # not Linux
        model = platform.processor() or platform.machine()
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "model": model or "unknown",
        "flags": {flag: flag in flags for flag in CPU_FLAGS},
        "cpus": cpus,
    }


# --- analytic FLOPs ------------------------------------------------------------------------------
def forward_flops(
    input_shape, channels: int, conv_filters, rnn_units: int, rnn_layers: int, num_classes: int
) -> dict[str, float]:
    """Forward FLOPs per image (multiply-adds x 2) of network.CRNN, by part.

    Follows the layers of network.py: 3x3 'same' convs, 2x2 pools (floor), (2, 1) pools, a 2x2
    'valid' conv7; then every LSTM direction runs over all W/4 - 1 columns (padding included).
    """
    height, width = input_shape
    f = list(conv_filters)
    macs_conv = 0
    h, w, c = height, width, channels

    def conv(filters, kernel=3, valid=False):
        nonlocal h, w, c, macs_conv
        if valid:
            h, w = h - kernel + 1, w - kernel + 1
        macs_conv += h * w * kernel * kernel * c * filters
        c = filters

    conv(f[0])
    h, w = h // 2, w // 2  # pool1
    conv(f[1])
    h, w = h // 2, w // 2  # pool2
    conv(f[2])
    conv(f[3])
    h //= 2  # pool3
    conv(f[4])
    conv(f[5])
    h //= 2  # pool4
    conv(f[6], kernel=2, valid=True)
    steps, features = w, h * c
    macs_rnn = 0
    for _ in range(rnn_layers):
        # 4 gates, each a matmul of [input, previous output] by [units]; 2 directions.
        macs_rnn += 2 * steps * 4 * rnn_units * (features + rnn_units)
        features = 2 * rnn_units
    macs_dense = steps * features * num_classes
    parts = {"conv": 2.0 * macs_conv, "lstm": 2.0 * macs_rnn, "dense": 2.0 * macs_dense}
    parts["total"] = sum(parts.values())
    parts["time_steps"] = steps
    return parts


# --- the figures ----------------------------------------------------------------------------------
def compute_dtype(precision: str) -> str:
    """The dtype of the matrix products under a Keras policy: mixed_bfloat16 -> bfloat16."""
    return precision.split("_", 1)[1] if precision.startswith("mixed_") else precision


def _figures(phases: dict, flops: dict, peaks: dict[str, float]) -> dict[str, float]:
    """The flat figures of one checkout's phases (those that ran).

    Fractions of peak are of the matmul peak in the dtype that checkout's network computes in.
    """
    figures = {}

    def peak(phase: str) -> float:
        return peaks.get(compute_dtype(phases[phase]["precision"]), peaks["float32"])

    forward, train_flops = flops["total"], 3 * flops["total"]
    if "pipeline" in phases:
        figures["pipeline_augmented_images_per_s"] = phases["pipeline"]["augmented_images_per_s"]
        figures["pipeline_plain_images_per_s"] = phases["pipeline"]["plain_images_per_s"]
    if "train" in phases:
        ips = phases["train"]["images_per_s"]
        figures["train_estimator_images_per_s"] = ips
        figures["train_estimator_startup_s"] = phases["train"]["startup_and_warmup_s"]
        figures["train_estimator_gflops"] = ips * train_flops / 1e9
        figures["train_estimator_fraction_of_peak"] = ips * train_flops / 1e9 / peak("train")
    if "bare" in phases:
        ips = phases["bare"]["images_per_s"]
        figures["train_bare_images_per_s"] = ips
        figures["train_bare_gflops"] = ips * train_flops / 1e9
        figures["train_bare_fraction_of_peak"] = ips * train_flops / 1e9 / peak("bare")
        fed = phases["bare"].get("fed_images_per_s")  # absent in a compared older checkout
        if fed is not None:
            figures["train_bare_fed_images_per_s"] = fed
        if "train" in phases:
            figures["estimator_over_bare"] = phases["train"]["images_per_s"] / ips
            if fed is not None:
                figures["estimator_over_bare_fed"] = phases["train"]["images_per_s"] / fed
    if "infer" in phases:
        infer = phases["infer"]
        figures["infer_bytes_images_per_s"] = infer["bytes_images_per_s"]
        figures["infer_float_images_per_s"] = infer["float_images_per_s"]
        figures["infer_direct_images_per_s"] = infer["direct_images_per_s"]
        figures["latency_batch1_median_ms"] = infer["latency_median_ms"]
        figures["latency_batch1_p90_ms"] = infer["latency_p90_ms"]
        # Cost ratios (time per image): how much slower the first is than the second.
        figures["float_signature_over_direct"] = (
            infer["direct_images_per_s"] / infer["float_images_per_s"]
        )
        figures["bytes_over_float"] = infer["float_images_per_s"] / infer["bytes_images_per_s"]
        figures["infer_float_gflops"] = infer["float_images_per_s"] * forward / 1e9
        figures["infer_direct_gflops"] = infer["direct_images_per_s"] * forward / 1e9
        figures["infer_direct_fraction_of_peak"] = figures["infer_direct_gflops"] / peak("infer")
        if "greedy_images_per_s" in infer:
            figures["infer_greedy_images_per_s"] = infer["greedy_images_per_s"]
            figures["greedy_latency_batch1_median_ms"] = infer["greedy_latency_median_ms"]
            figures["greedy_latency_batch1_p90_ms"] = infer["greedy_latency_p90_ms"]
            figures["greedy_signature_over_direct"] = (
                infer["direct_images_per_s"] / infer["greedy_images_per_s"]
            )
        figures["export_s"] = infer["export_s"]
        figures["savedmodel_load_s"] = infer["load_s"]
    for phase in PHASES:
        if phase in phases:
            figures[f"peak_rss_mb_{phase}"] = phases[phase]["peak_rss_mb"]
    return figures


def _round(value: float) -> float:
    return float(f"{value:.4g}")


def make_report(spec, params, flops, matmuls, results, compare, wall_s) -> dict:
    import tensorflow as tf

    # The peak is the best of the run: a busy CPU only ever lowers a measurement.
    dtypes = next(iter(matmuls.values()))
    peaks = {dtype: max(rates[dtype] for rates in matmuls.values()) for dtype in dtypes}
    figures = _figures(results["new"], flops, peaks)
    figures["forward_gflop_per_image"] = flops["total"] / 1e9
    figures["train_gflop_per_image"] = 3 * flops["total"] / 1e9
    figures["matmul_peak_gflops"] = peaks["float32"]
    figures["matmul_lowest_gflops"] = min(rates["float32"] for rates in matmuls.values())
    for dtype, peak in peaks.items():
        if dtype != "float32":
            figures[f"matmul_peak_{dtype}_gflops"] = peak
    report = {
        "benchmark": "tf_crnn",
        "tensorflow": tf.__version__,
        "cpu": cpu_info(),
        "preset": spec["preset"],
        "network": {
            "input_shape": params.input_shape,
            "input_channels": params.input_channels,
            "conv_filters": params.conv_filters,
            "rnn_units": params.rnn_units,
            "rnn_layers": params.rnn_layers,
            "num_classes": len(params.alphabet_units) + 1,
            "time_steps": flops["time_steps"],
            "batch_size": params.train_batch_size,
            "precision": results["new"]["train"]["precision"],
            "serving_precision": results["new"].get("infer", {}).get("precision"),
        },
        "counts": spec["counts"],
        "figures": {key: _round(value) for key, value in figures.items()},
        "flops_per_image": {k: _round(v) for k, v in flops.items() if k != "time_steps"},
        "matmul_gflops": {
            moment: {dtype: _round(rate) for dtype, rate in rates.items()}
            for moment, rates in matmuls.items()
        },
        "wall_s": _round(wall_s),
        "compare": None,
    }
    if compare:
        old = _figures(results["old"], flops, peaks)
        report["compare"] = {
            "path": os.path.abspath(compare),
            "tf_crnn_file": results["old"]["train"]["tf_crnn_file"],
            "precision": results["old"]["train"]["precision"],
            "ignored_settings": results["old"]["train"]["ignored_settings"],
            "old": {key: _round(value) for key, value in old.items()},
            "new_over_old": {key: _round(figures[key] / value) for key, value in old.items()},
        }
    return report


# --- the table -----------------------------------------------------------------------------------
# (phase, label, figure key, format): the rows of the table, in order.
ROWS = [
    ("pipeline", "augmented, images/s", "pipeline_augmented_images_per_s", ".0f"),
    ("pipeline", "not augmented, images/s", "pipeline_plain_images_per_s", ".0f"),
    ("train", "images/s after warm-up", "train_estimator_images_per_s", ".1f"),
    ("train", "GFLOP/s achieved", "train_estimator_gflops", ".1f"),
    ("train", "fraction of matmul peak", "train_estimator_fraction_of_peak", ".1%"),
    ("train", "start-up + warm-up, s", "train_estimator_startup_s", ".1f"),
    ("bare", "images/s after warm-up", "train_bare_images_per_s", ".1f"),
    ("bare", "GFLOP/s achieved", "train_bare_gflops", ".1f"),
    ("bare", "fraction of matmul peak", "train_bare_fraction_of_peak", ".1%"),
    ("bare", "Estimator / bare (throughput)", "estimator_over_bare", ".2f"),
    ("bare", "fed by input_fn, images/s", "train_bare_fed_images_per_s", ".1f"),
    ("bare", "Estimator / bare fed by input_fn", "estimator_over_bare_fed", ".2f"),
    ("infer", "bytes signature, images/s", "infer_bytes_images_per_s", ".1f"),
    ("infer", "float signature, images/s", "infer_float_images_per_s", ".1f"),
    ("infer", "network alone (direct), images/s", "infer_direct_images_per_s", ".1f"),
    ("infer", "float sig. / direct (time)", "float_signature_over_direct", ".2f"),
    ("infer", "greedy export, float sig., images/s", "infer_greedy_images_per_s", ".1f"),
    ("infer", "greedy float sig. / direct (time)", "greedy_signature_over_direct", ".2f"),
    ("infer", "bytes / float sig. (time)", "bytes_over_float", ".2f"),
    ("infer", "batch-1 latency median, ms", "latency_batch1_median_ms", ".1f"),
    ("infer", "batch-1 latency p90, ms", "latency_batch1_p90_ms", ".1f"),
    ("infer", "greedy export, latency median, ms", "greedy_latency_batch1_median_ms", ".1f"),
    ("infer", "greedy export, latency p90, ms", "greedy_latency_batch1_p90_ms", ".1f"),
    ("infer", "direct GFLOP/s achieved", "infer_direct_gflops", ".1f"),
    ("infer", "direct, fraction of peak", "infer_direct_fraction_of_peak", ".1%"),
    ("infer", "export, s", "export_s", ".1f"),
    ("infer", "SavedModel load, s", "savedmodel_load_s", ".1f"),
    ("memory", "input pipeline, MB", "peak_rss_mb_pipeline", ".0f"),
    ("memory", "Estimator training, MB", "peak_rss_mb_train", ".0f"),
    ("memory", "bare training, MB", "peak_rss_mb_bare", ".0f"),
    ("memory", "SavedModel inference, MB", "peak_rss_mb_infer", ".0f"),
    ("flops", "forward, GFLOP/image", "forward_gflop_per_image", ".3f"),
    ("flops", "training (3x), GFLOP/image", "train_gflop_per_image", ".3f"),
    ("flops", "matmul float32 best, GFLOP/s", "matmul_peak_gflops", ".1f"),
    ("flops", "matmul float32 lowest, GFLOP/s", "matmul_lowest_gflops", ".1f"),
    ("flops", "matmul bfloat16 best, GFLOP/s", "matmul_peak_bfloat16_gflops", ".1f"),
    ("flops", "matmul float16 best, GFLOP/s", "matmul_peak_float16_gflops", ".1f"),
]


def format_table(report: dict) -> str:
    cpu, net, counts = report["cpu"], report["network"], report["counts"]
    flags = ", ".join(f"{flag} {'yes' if has else 'no'}" for flag, has in cpu["flags"].items())
    filters = net["conv_filters"]
    lines = [
        f"tf_crnn benchmark: {report['preset']} network (conv {filters[0]}..{max(filters)}, "
        f"{net['rnn_layers']} BiLSTM x {net['rnn_units']}), input {net['input_shape'][0]}x"
        f"{net['input_shape'][1]}x{net['input_channels']}, batch {net['batch_size']}, "
        f"{net['num_classes']} classes, {net['time_steps']} time steps, computing in "
        f"{net['precision']}, serving in {net['serving_precision'] or '-'} (fractions of the "
        "matmul peak in the dtype each computes in)",
        f"CPU: {cpu['model']} ({cpu['cpus']} CPUs; {flags})",
        f"TensorFlow {report['tensorflow']}; run took {report['wall_s']:.0f} s",
        f"Counts: pipeline {counts['pipeline_warmup']}+{counts['pipeline_batches']} batches; "
        f"training {counts['train_warmup']}+{counts['train_steps']} steps (warm-up + timed, "
        f"Estimator and bare, best of {counts['train_rounds']} rounds); inference "
        f"{counts['infer_warmup']}+{counts['infer_batches']} batches per way, latency "
        f"{counts['latency_warmup']}+{counts['latency_calls']} calls; "
        f"{counts['train_images']} training images",
        f"Matmul: {counts['matmul_size']}x{counts['matmul_size']} best of "
        f"{counts['matmul_repeats']}, at the start and before each phase; the peak is the best "
        "of the run (a lowest far below it means a busy machine)",
    ]
    compare = report["compare"]
    header = ["phase", "measure", "value"] + (["old", "new/old"] if compare else [])
    table = [header]
    for phase, label, key, fmt in ROWS:
        if key not in report["figures"]:
            continue
        row = [PHASE_TITLES[phase], label, format(report["figures"][key], fmt)]
        if compare:
            old = compare["old"].get(key)
            row += [format(old, fmt), f"{compare['new_over_old'][key]:.2f}"] if old else ["", ""]
        table.append(row)
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for index, row in enumerate(table):
        cells = [
            cell.ljust(width) if column < 2 else cell.rjust(width)
            for column, (cell, width) in enumerate(zip(row, widths))
        ]
        lines.append("  ".join(cells).rstrip())
        if index == 0:
            lines.append("  ".join("-" * width for width in widths))
    if compare:
        lines.append(
            f"old = {compare['path']} (tf_crnn from {compare['tf_crnn_file']}, computing in "
            f"{compare['precision']})"
        )
        if compare["ignored_settings"]:
            ignored = ", ".join(compare["ignored_settings"])
            lines.append(f"old: settings its Params does not have were left out: {ignored}")
    return "\n".join(lines)
