"""``python -m tf_crnn.benchmark`` (``make bench``): where the time and memory of a CRNN go on this
machine, from the input pipeline to a served SavedModel.

By default it measures the paper network (``Params`` defaults: conv filters 64..512, 2 BiLSTM of
256 units) at input 32x100, batch 64, on demo images (``tf_crnn.demo``) written as PNG files into a
temporary folder. ``--preset small`` (the demo's network, ``network.PRESETS``) or ``--param
KEY=VALUE`` benchmark another network; ``--quick``
runs tiny sizes in well under a minute (the test runs it). It prints a table, then, as its last
line, one JSON object with every figure. Nothing is asserted about speed: the figures are for
reading, and for comparing two checkouts in one run (``--compare``).

What is measured, why, and how:

1. **Input pipeline** (``data_handler.input_fn``, TRAIN): can reading, decoding, resizing and
   augmenting PNG files keep up with training? Images/s over a fixed number of batches after a
   warm-up (which fills the shuffle buffer), with ``data_augmentation`` on and off.
2. **Estimator training**: what training really costs per image, as ``tf_crnn.task`` runs it (the
   Estimator from ``cluster.build_estimator`` on the same CSV, augmentation on, its checkpoint and
   summary hooks included). Images/s from the global-step counter, read by a SessionRunHook after
   the warm-up steps, so graph building, session start-up and the first steps are excluded.
   ``--train-rounds N`` measures training in N rounds: Estimator, bare loop (and the compared
   checkout's Estimator) by turns, each round from step 0, and each rate is the best of its
   rounds. The phases of a round run a minute or more apart; on a shared machine a load that
   comes in between moves a one-round ratio by 10% or more, and a load only ever slows a run.
3. **Bare training loop**: the same network and CTC loss (``network.CRNN``, ``tf.nn.ctc_loss``,
   gradient clipping, Adam) in a ``tf.function``, first on one in-memory random batch (the
   arithmetic alone), then fed by the same ``input_fn`` as the Estimator. On 2 CPUs the input
   pipeline takes its share of them, so "Estimator / bare fed by input_fn" is what the
   Estimator's session, hooks and graph cost, and "Estimator / bare" adds the pipeline's share.
4. **SavedModel inference**: what serving costs. A checkpoint of the training phase, exported
   with ``export_saved_model`` (``decoder`` beam, the default) and loaded with
   ``tf.saved_model.load``, and a second export with ``decoder`` greedy. Images/s of full batches
   through the bytes signature (``serving_default``, PNG bytes: decoding and preprocessing
   included), through the float signature (``images``, preprocessed pixels) of each export, and
   of the network alone (``CRNN`` in the export's precision, called in a ``tf.function`` on the
   same float batch: no decoding, no signature). The ways take turns batch by batch and each rate
   is from its median batch, so a passing load hits them alike. float/direct is the price of the
   signature (decoding and the exported graph), bytes/float that of decoding and preprocessing
   the PNG bytes in the graph. Then the latency of one image through the bytes signature of each
   export, by turns: median and 90th percentile of many calls.
5. **Peak memory**: each phase runs in a subprocess of its own
   (``python -m tf_crnn.benchmark --phase NAME --spec FILE``, which prints one JSON line), and its
   peak resident set size is the ``ru_maxrss`` that ``os.wait4`` returns for that child. It
   includes TensorFlow itself (several hundred MB before any model exists).
6. **FLOPs**: forward multiply-adds x 2 per image, counted from Params and the input shape (every
   conv layer, the 4 gates of each LSTM direction over all time steps, the output layer; pooling,
   batch norm and activations left out); training counts 3x forward (forward, and a backward pass
   of about twice its cost). Achieved GFLOP/s of training and inference are compared with a
   ``tf.linalg.matmul`` of two 2048x2048 matrices in a ``tf.function``, best of several, with the
   same (default) thread pools: a practical peak of this CPU. The parent process measures it at
   the start and again before each phase (it is idle while a child runs); the peak is the best of
   the run, since a busy CPU only lowers a measurement, and the lowest is reported too: far below
   the best, it says that other work shared the CPU. It is measured in float32 and, when the
   ``precision`` setting makes the network compute in bfloat16 or float16, in that dtype too;
   each fraction is of the peak of the dtype the network computes in (the bare loop and the
   direct call build the network in that precision, as crnn_fn does). oneDNN's convolutions can
   run faster than TensorFlow's matmul, so a fraction above 100% is possible.
7. **The machine**: the CPU model and the flags that decide TensorFlow's kernels (AVX2, AVX-512,
   AVX-512 BF16, AMX) from /proc/cpuinfo, the number of CPUs and the TensorFlow version.
8. **--compare PATH**: PATH is another checkout of this repository (e.g. ``git worktree add
   /tmp/tf_crnn_base 25787d7``). The Estimator-training and SavedModel-inference phases also run
   with that checkout's ``tf_crnn`` (a subprocess with ``PYTHONPATH=PATH``, started outside this
   checkout; the child reports ``tf_crnn.__file__``, which is checked), on the same data in the
   same run, and the table gives new/old ratios. Older checkouts lack some modules; the phase code
   uses the API both share, and ``benchmark_phases.Api`` adapts the rest in one place.

The machine may be busy with other work: repeat a run before trusting a small difference.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

from tf_crnn import benchmark_phases
from tf_crnn.benchmark_phases import PHASES, Api, matmul_peak_gflops, quiet_tensorflow, run_phase
from tf_crnn.benchmark_report import (
    PHASE_TITLES,
    compute_dtype,
    format_table,
    forward_flops,
    make_report,
)

# Networks: tf_crnn.network.PRESETS (paper, the Params default; small, the demo's), and a tiny one.
QUICK_NETWORK = {"conv_filters": [8, 8, 16, 16, 16, 16, 16], "rnn_units": 16}
# Sizes and counts: the default paper-network run takes about 3 minutes on 2 CPUs of AVX-512 BF16
# (a training step of 64 images about 1.3 s in bfloat16, 3 s in float32), so it stays under 10
# minutes in float32 or with --compare; --quick takes under a minute.
FULL_COUNTS = {
    "input_shape": [32, 100],
    "batch_size": 64,
    "train_images": 1024,
    "pipeline_warmup": 5,
    "pipeline_batches": 100,
    # A session-run graph (the Estimator's) runs its first ten or so steps about 15% slower than
    # later ones; a tf.function loop does not. Both are timed after the same warm-up.
    "train_warmup": 10,
    "train_steps": 30,
    # The training phases run this many times, by turns, and each rate is the best of its rounds.
    # One by default: a round of the paper network in float32 on AVX2 takes about 3.5 minutes.
    "train_rounds": 1,
    "infer_warmup": 2,
    "infer_batches": 15,
    "latency_warmup": 5,
    "latency_calls": 100,
    "matmul_size": 2048,
    "matmul_repeats": 10,
}
QUICK_COUNTS = {
    "input_shape": [32, 64],
    "batch_size": 8,
    "train_images": 64,
    "pipeline_warmup": 2,
    "pipeline_batches": 5,
    "train_warmup": 2,
    "train_steps": 3,
    "train_rounds": 1,
    "infer_warmup": 1,
    "infer_batches": 2,
    "latency_warmup": 2,
    "latency_calls": 5,
    "matmul_size": 512,
    "matmul_repeats": 3,
}
# A compared checkout's child imports the phases module from its file, so that a checkout without
# tf_crnn/benchmark_phases.py still runs this code (with that checkout's tf_crnn on PYTHONPATH).
_CHILD_LOADER = (
    "import importlib.util, sys\n"
    "spec = importlib.util.spec_from_file_location('tf_crnn_benchmark_child', sys.argv[1])\n"
    "module = importlib.util.module_from_spec(spec)\n"
    "sys.modules[spec.name] = module\n"
    "spec.loader.exec_module(module)\n"
    "sys.exit(module.run_phase(*sys.argv[2:]))\n"
)


# --- the parent: data, matmul peak, children -----------------------------------------------------
class PhaseError(RuntimeError):
    """A child phase failed; the message has the end of its stderr."""


def run_child(phase: str, spec_path: str, workdir: str, checkout: str | None = None) -> dict:
    """Runs one phase in a subprocess; returns its JSON figures with ``peak_rss_mb`` and
    ``wall_s``.

    ``checkout``: the root of another checkout whose tf_crnn the child must import; the child is
    started in ``workdir`` (outside every checkout) with PYTHONPATH=checkout, and loads this
    checkout's benchmark_phases.py by path. Without it the child runs ``-m tf_crnn.benchmark`` of
    this package.
    """
    own_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    root = os.path.abspath(checkout) if checkout else own_root
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([root] + [p for p in [env.get("PYTHONPATH")] if p])
    if checkout:
        phases_file = os.path.abspath(benchmark_phases.__file__)
        command = [sys.executable, "-c", _CHILD_LOADER, phases_file, phase, spec_path]
    else:
        command = [sys.executable, "-m", "tf_crnn.benchmark", "--phase", phase, "--spec", spec_path]
    stderr_path = os.path.join(workdir, f"{phase}{'-compared' if checkout else ''}.stderr")
    start = time.perf_counter()
    with open(stderr_path, "wb") as stderr:
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=stderr, cwd=workdir, env=env
        )
        try:
            output = process.stdout.read().decode("utf-8", "replace")
            process.stdout.close()
            _, status, usage = os.wait4(process.pid, 0)
            process.returncode = os.waitstatus_to_exitcode(status)
        except BaseException:
            process.kill()
            process.wait()
            raise
    wall = time.perf_counter() - start
    lines = [line for line in output.splitlines() if line.startswith("{")]
    if process.returncode != 0 or not lines:
        with open(stderr_path, encoding="utf-8", errors="replace") as f:
            tail = "".join(f.readlines()[-25:])
        raise PhaseError(
            f"phase {phase!r} ({'checkout ' + root if checkout else 'this checkout'}) failed with "
            f"exit status {process.returncode}; end of its stderr:\n{tail}"
        )
    result = json.loads(lines[-1])
    # Linux reports kilobytes, macOS bytes.
    rss_bytes = usage.ru_maxrss * (1 if sys.platform == "darwin" else 1024)
    result["peak_rss_mb"] = rss_bytes / 2**20
    result["wall_s"] = wall
    imported = os.path.realpath(result["tf_crnn_file"])
    if not imported.startswith(os.path.realpath(root) + os.sep):
        raise PhaseError(f"phase {phase!r} imported {imported}, not the tf_crnn of {root}")
    return result


def phase_runs(train_rounds: int, compare: str | None) -> list[tuple[str, str | None]]:
    """(phase, checkout) in the order they run: the pipeline, the training phases by turns for
    each round (a load that comes and goes then hits the Estimator, the bare loop and the compared
    checkout alike), then inference from the last round's checkpoint."""
    runs = [("pipeline", None)]
    for _ in range(train_rounds):
        runs += [("train", None), ("bare", None)] + ([("train", compare)] if compare else [])
    return runs + [("infer", None)] + ([("infer", compare)] if compare else [])


def best_of_rounds(previous: dict | None, result: dict) -> dict:
    """A phase's figures over its rounds: each rate the highest and the start-up the shortest (a
    busy machine only slows a run down), the peak memory the highest."""
    if previous is None:
        return result
    best = dict(result)
    for key, value in previous.items():
        if key.endswith("images_per_s") or key == "peak_rss_mb":
            best[key] = max(value, result[key])
        elif key == "startup_and_warmup_s":
            best[key] = min(value, result[key])
    return best


def _log(message: str) -> None:
    print(f"tf_crnn.benchmark: {message}", file=sys.stderr, flush=True)


def build_spec(args: argparse.Namespace, workdir: str) -> dict:
    counts = dict(QUICK_COUNTS if args.quick else FULL_COUNTS)
    for key in ("batch_size", "train_steps", "train_rounds", "infer_batches"):
        if getattr(args, key) is not None:
            counts[key] = getattr(args, key)
    from tf_crnn.network import PRESETS

    presets = dict(PRESETS, quick=QUICK_NETWORK)
    preset = args.preset or ("quick" if args.quick else "paper")
    if preset not in presets:
        raise SystemExit(f"error: --preset {preset}: choose one of {', '.join(presets)}")
    settings = dict(presets[preset])
    settings["input_shape"] = counts["input_shape"]
    settings["train_batch_size"] = settings["eval_batch_size"] = counts["batch_size"]
    # Overrides from the command line win, batch size and input shape included.
    from tf_crnn.setting_values import parse_key_values

    settings.update(parse_key_values(args.param))
    return {
        "preset": preset,
        "settings": settings,
        "counts": counts,
        "job_dir": {
            "new": os.path.join(workdir, "job-new"),
            "old": os.path.join(workdir, "job-old"),
        },
        "checkout_key": "new",
    }


def benchmark(args: argparse.Namespace) -> dict:
    """The parent's side: data, matmul peak and FLOPs here, every phase in a child."""
    import tensorflow as tf

    from tf_crnn import demo
    from tf_crnn.alphabet import Alphabet, with_resolved_alphabet
    from tf_crnn.config import Params

    quiet_tensorflow(tf)
    workdir = os.path.abspath(args.workdir) if args.workdir else tempfile.mkdtemp(prefix="bench-")
    os.makedirs(workdir, exist_ok=True)
    try:
        spec = build_spec(args, workdir)
        counts = spec["counts"]
        params = Params().with_overrides(spec["settings"], source="the benchmark settings")
        started = time.perf_counter()
        train_csv, eval_csv = demo.generate_demo_dataset(
            os.path.join(workdir, "data"),
            counts["train_images"],
            params.eval_batch_size,
            seed=0,
            progress=False,
        )
        spec["train_csv"], spec["eval_csv"] = train_csv, eval_csv
        params = with_resolved_alphabet(params, [train_csv])
        flops = forward_flops(
            params.input_shape,
            params.input_channels,
            params.conv_filters,
            params.rnn_units,
            params.rnn_layers,
            Alphabet.from_params(params).num_classes,
        )
        _log(f"data: {counts['train_images']} demo PNG images in {workdir}")
        # The network computes in its precision's dtype: measure that peak too, for its fractions.
        dtypes = list(dict.fromkeys(["float32", compute_dtype(Api().precision(params))]))
        matmuls = {}  # moment -> dtype -> GFLOP/s

        def measure_matmul(moment: str) -> None:
            size, repeats = counts["matmul_size"], counts["matmul_repeats"]
            matmuls[moment] = {dtype: matmul_peak_gflops(size, repeats, dtype) for dtype in dtypes}
            rates = ", ".join(f"{dtype} {rate:.0f}" for dtype, rate in matmuls[moment].items())
            _log(f"matmul GFLOP/s {moment}: {rates}")

        measure_matmul("at start")

        spec_path = os.path.join(workdir, "spec.json")
        results = {"new": {}, "old": {}}
        for phase, checkout in phase_runs(counts["train_rounds"], args.compare):
            key = "old" if checkout else "new"
            spec["checkout_key"] = key
            if phase == "train":  # from step 0 each round, and in a kept --workdir
                shutil.rmtree(spec["job_dir"][key], ignore_errors=True)
            with open(spec_path, "w", encoding="utf-8") as f:
                json.dump(spec, f)
            name = f"{PHASE_TITLES[phase][2:]}{' (compared checkout)' if checkout else ''}"
            # Between the phases (the parent is idle while a child runs): how much of the CPU is
            # free varies on a shared machine, and the spread of these shows it.
            measure_matmul(f"before {name}")
            _log(f"{name} ...")
            result = run_child(phase, spec_path, workdir, checkout)
            rates = ", ".join(
                f"{figure} {value:.1f}"
                for figure, value in result.items()
                if figure.endswith("images_per_s")
            )
            _log(f"  done in {result['wall_s']:.0f} s{': ' + rates if rates else ''}")
            results[key][phase] = best_of_rounds(results[key].get(phase), result)
        report = make_report(
            spec, params, flops, matmuls, results, args.compare, time.perf_counter() - started
        )
    finally:
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    return report


# --- command line --------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tf_crnn.benchmark",
        description="Measure the input pipeline, training (Estimator and bare), SavedModel "
        "inference, peak memory and FLOPs of a CRNN on this machine. Prints a table, then one "
        "JSON line with every figure.",
    )
    parser.add_argument(
        "--preset",
        default=None,
        help="Network: a preset of tf_crnn.network.PRESETS ('paper', the default; 'small', the "
        "demo's) or 'quick' (tiny, the default of --quick).",
    )
    parser.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="Override a Params setting (repeatable), e.g. rnn_units=96 or input_shape=[32,128].",
    )
    parser.add_argument(
        "--quick", action="store_true", help="Tiny network, images and counts (about 40 s)."
    )
    parser.add_argument("--batch-size", type=int, default=None, help="Batch of every phase.")
    parser.add_argument("--train-steps", type=int, default=None, help="Timed training steps.")
    parser.add_argument(
        "--train-rounds",
        type=int,
        default=None,
        help="Runs of each training phase, by turns; each rate is the best of them (default 1).",
    )
    parser.add_argument(
        "--infer-batches", type=int, default=None, help="Timed inference batches per way."
    )
    parser.add_argument(
        "--compare",
        metavar="PATH",
        default=None,
        help="Another checkout of this repository: run training and inference with its tf_crnn "
        "too and report new/old.",
    )
    parser.add_argument(
        "--workdir",
        default=None,
        help="Folder for the data, job directories and child logs (kept); default: a temporary "
        "folder, deleted at the end.",
    )
    parser.add_argument("--phase", choices=PHASES, help=argparse.SUPPRESS)
    parser.add_argument("--spec", help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.phase:
        return run_phase(args.phase, args.spec)
    if args.compare and not os.path.isdir(os.path.join(args.compare, "tf_crnn")):
        parser.error(f"--compare {args.compare}: no tf_crnn package there")
    try:
        report = benchmark(args)
    except PhaseError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(format_table(report))
    print(json.dumps(report, ensure_ascii=False), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
