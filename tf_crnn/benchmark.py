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
3. **Bare training loop**: the same network and CTC loss (``network.CRNN``, ``tf.nn.ctc_loss``,
   gradient clipping, Adam) in a ``tf.function`` on one in-memory random batch: the floor that
   the framework, the input pipeline and the hooks add to. Reported as the Estimator/bare ratio.
4. **SavedModel inference**: what serving costs. A checkpoint of the training phase, exported
   with ``export_saved_model`` and loaded with ``tf.saved_model.load``. Images/s of full batches
   through the bytes signature (``serving_default``, PNG bytes: decoding and preprocessing
   included), through the float signature (``images``, preprocessed pixels), and of the network
   alone (``CRNN`` called in a ``tf.function`` on the same float batch: no beam search, no
   signature). The three take turns batch by batch and each rate is from its median batch, so a
   passing load hits all three alike. float/direct is the price of the signature (beam search and
   the exported graph), bytes/float that of decoding and preprocessing in the graph. Then the
   latency of one image through the bytes signature: median and 90th percentile of many calls.
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
   uses the API both share, and ``_Api`` adapts the rest in one place.

The machine may be busy with other work: repeat a run before trusting a small difference.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

# TensorFlow's C++ start-up lines would bury the table (tf_crnn/__init__.py does the same, but a
# compared checkout's may not).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

PHASES = ("pipeline", "train", "bare", "infer")
COMPARED_PHASES = ("train", "infer")
PHASE_TITLES = {
    "pipeline": "1 input pipeline",
    "train": "2 Estimator training",
    "bare": "3 bare tf.function training",
    "infer": "4 SavedModel inference",
    "memory": "5 peak memory (RSS)",
    "flops": "6 FLOPs",
}
CPU_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16")

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
    "train_warmup": 3,
    "train_steps": 30,
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
    "infer_warmup": 1,
    "infer_batches": 2,
    "latency_warmup": 2,
    "latency_calls": 5,
    "matmul_size": 512,
    "matmul_repeats": 3,
}
# One child imports the benchmark module from its file, so that a compared checkout without
# tf_crnn/benchmark.py still runs this code (with that checkout's tf_crnn on PYTHONPATH).
_CHILD_LOADER = (
    "import importlib.util, sys\n"
    "spec = importlib.util.spec_from_file_location('tf_crnn_benchmark_child', sys.argv[1])\n"
    "module = importlib.util.module_from_spec(spec)\n"
    "sys.modules[spec.name] = module\n"
    "spec.loader.exec_module(module)\n"
    "sys.exit(module.main(sys.argv[2:]))\n"
)


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


# --- the phases (each in a child process) --------------------------------------------------------
class _Api:
    """The tf_crnn functions the phases need, from whichever checkout is imported.

    The one place that knows older checkouts: there ``with_resolved_alphabet`` is in data_handler,
    the Estimator is built directly (no cluster.py) and the network is ``model.CRNN(params)``
    (no network.py).
    """

    def __init__(self):
        import tensorflow as tf

        import tf_crnn
        from tf_crnn import data_handler, export_model, model
        from tf_crnn.config import Params

        self.tf, self.Params, self.data_handler = tf, Params, data_handler
        self.model, self.export_model, self.file = model, export_model, tf_crnn.__file__
        try:
            from tf_crnn.alphabet import with_resolved_alphabet
        except ImportError:
            with_resolved_alphabet = data_handler.with_resolved_alphabet
        self.with_resolved_alphabet = with_resolved_alphabet
        try:
            from tf_crnn import cluster, network
        except ImportError:
            cluster = network = None
        try:
            from tf_crnn import precision
        except ImportError:
            precision = None
        self._cluster, self._network, self._precision = cluster, network, precision

    def build_estimator(self, params, job_dir):
        if self._cluster is not None:
            return self._cluster.build_estimator(params, job_dir)
        tf = self.tf
        config = tf.estimator.RunConfig(model_dir=job_dir, tf_random_seed=params.random_seed)
        return tf.estimator.Estimator(self.model.crnn_fn, config=config, params=params)

    def precision(self, params) -> str:
        """The Keras policy the model computes in: the precision setting resolved, or float32."""
        if self._precision is None or not hasattr(params, "precision"):
            return "float32"
        return self._precision.resolve(params.precision)[0]

    def network(self, params, num_classes: int):
        """network.CRNN as crnn_fn builds it (in the same precision)."""
        if self._network is None:
            return self.model.CRNN(params)
        if self._precision is None or not hasattr(params, "precision"):
            return self._network.CRNN(params, num_classes)
        policy = self._precision.keras_policy(params.precision)
        return self._network.CRNN(params, num_classes, policy)

    def time_steps(self, widths):
        if self._network is not None:
            return self._network.time_steps(widths)
        return self.tf.maximum(widths // 4 - 1, 1)


def _quiet_tensorflow(tf) -> None:
    """No Python-side INFO lines or deprecation notices (tf.estimator has dozens)."""
    from tensorflow.python.util import deprecation

    tf.get_logger().setLevel("ERROR")
    deprecation._PRINT_DEPRECATION_WARNINGS = False


def _params(api: _Api, spec: dict, **overrides):
    """The phase's Params. Settings this checkout's Params lacks (a compared older checkout) are
    left out, and named in the phase's result."""
    known = {f.name for f in dataclasses.fields(api.Params)}
    settings = dict(spec["settings"], **overrides)
    api.ignored_settings = sorted(set(settings) - known)
    settings = {key: value for key, value in settings.items() if key in known}
    return api.with_resolved_alphabet(api.Params().with_overrides(settings), [spec["train_csv"]])


def _num_classes(params) -> int:
    return len(params.alphabet_units) + 1


def phase_pipeline(api: _Api, spec: dict) -> dict:
    counts, result = spec["counts"], {}
    for name, augment in (("augmented", True), ("plain", False)):
        params = _params(api, spec, data_augmentation=augment)
        dataset = api.data_handler.input_fn([spec["train_csv"]], params, "train")
        batches = iter(dataset)
        for _ in range(counts["pipeline_warmup"]):
            next(batches)
        start, images = time.perf_counter(), 0
        for _ in range(counts["pipeline_batches"]):
            features, _labels = next(batches)
            images += int(features["images"].shape[0])
        result[f"{name}_images_per_s"] = images / (time.perf_counter() - start)
    return result


def phase_train(api: _Api, spec: dict) -> dict:
    tf, counts = api.tf, spec["counts"]
    params = _params(api, spec)
    warmup, steps = counts["train_warmup"], counts["train_steps"]

    class StepTimer(tf.estimator.SessionRunHook):
        """Time and global step after the warm-up steps and after the last step."""

        def __init__(self):
            self.runs, self.marks = 0, []

        def begin(self):
            self._global_step = tf.compat.v1.train.get_global_step()

        def before_run(self, run_context):
            return tf.estimator.SessionRunArgs(self._global_step)

        def after_run(self, run_context, run_values):
            self.runs += 1
            if self.runs == warmup or self.runs == warmup + steps:
                # The fetched value is the step before this run's update: add the run itself.
                self.marks.append((time.perf_counter(), int(run_values.results) + 1))

    timer = StepTimer()
    estimator = api.build_estimator(params, spec["job_dir"][spec["checkout_key"]])
    start = time.perf_counter()
    estimator.train(
        lambda: api.data_handler.input_fn([spec["train_csv"]], params, "train"),
        max_steps=warmup + steps,
        hooks=[timer],
    )
    total = time.perf_counter() - start
    (t0, step0), (t1, step1) = timer.marks
    batch = params.train_batch_size
    return {
        "images_per_s": (step1 - step0) * batch / (t1 - t0),
        "timed_steps": step1 - step0,
        "startup_and_warmup_s": total - (t1 - t0),
    }


def phase_bare(api: _Api, spec: dict) -> dict:
    tf, counts = api.tf, spec["counts"]
    params = _params(api, spec)
    num_classes = _num_classes(params)
    batch = params.train_batch_size
    height, width = params.input_shape
    tf.random.set_seed(params.random_seed)
    images = tf.random.uniform([batch, height, width, params.input_channels])
    widths = tf.random.uniform([batch], width // 2, width + 1, dtype=tf.int32)
    lengths = api.time_steps(widths)
    # Labels of 3-8 codes (the demo's), never longer than half an image's time steps.
    label_lengths = tf.minimum(tf.random.uniform([batch], 3, 9, dtype=tf.int32), lengths // 2)
    label_lengths = tf.maximum(label_lengths, 1)
    dense = tf.random.uniform([batch, 8], 0, num_classes - 1, dtype=tf.int32)
    mask = tf.sequence_mask(label_lengths, 8)
    labels = tf.SparseTensor(
        tf.where(mask), tf.boolean_mask(dense, mask), tf.constant([batch, 8], tf.int64)
    )

    network = api.network(params, num_classes)
    network(images, lengths, training=False)  # builds the variables
    optimizer = tf.keras.optimizers.Adam(params.learning_rate)
    optimizer.build(network.trainable_variables)

    @tf.function
    def train_step(images, lengths, labels):
        with tf.GradientTape() as tape:
            logits = network(images, lengths, training=True)
            loss = tf.reduce_mean(
                tf.nn.ctc_loss(
                    labels=labels,
                    logits=tf.transpose(logits, [1, 0, 2]),
                    label_length=None,
                    logit_length=lengths,
                    logits_time_major=True,
                    blank_index=num_classes - 1,
                )
            )
        variables = network.trainable_variables
        gradients = tape.gradient(loss, variables)
        if params.gradient_clip_norm:
            gradients, _ = tf.clip_by_global_norm(gradients, params.gradient_clip_norm)
        optimizer.apply_gradients(zip(gradients, variables))
        return loss

    start = time.perf_counter()
    for _ in range(counts["train_warmup"]):
        train_step(images, lengths, labels).numpy()
    warm = time.perf_counter()
    for _ in range(counts["train_steps"]):
        train_step(images, lengths, labels).numpy()
    end = time.perf_counter()
    return {
        "images_per_s": counts["train_steps"] * batch / (end - warm),
        "startup_and_warmup_s": warm - start,
    }


def phase_infer(api: _Api, spec: dict) -> dict:
    tf, counts = api.tf, spec["counts"]
    params = _params(api, spec)
    job_dir = spec["job_dir"][spec["checkout_key"]]
    checkpoint = tf.train.latest_checkpoint(job_dir)
    if checkpoint is None:
        raise RuntimeError(f"no checkpoint in {job_dir}: the train phase runs first")
    start = time.perf_counter()
    export_dir = api.export_model.export_saved_model(
        checkpoint, params, os.path.join(job_dir, "export", "bench")
    )
    exported = time.perf_counter()
    loaded = tf.saved_model.load(export_dir)
    load_s = time.perf_counter() - exported
    by_bytes, by_images = loaded.signatures["serving_default"], loaded.signatures["images"]

    batch = params.eval_batch_size
    features, _labels = next(iter(api.data_handler.input_fn([spec["eval_csv"]], params, "eval")))
    images = features["images"][:batch]
    widths = tf.cast(features["images_widths"][:batch], tf.int32)
    encoded = tf.constant([tf.io.read_file(path).numpy() for path in features["filenames"][:batch]])
    one_image = encoded[:1]

    network = api.network(params, _num_classes(params))
    direct = tf.function(lambda images, widths: network(images, api.time_steps(widths)))

    # The three ways take turns, one batch each, and each way's rate is from its median batch: a
    # load that comes and goes on a shared machine then hits all three alike, and outliers not.
    ways = {
        "bytes": lambda: by_bytes(image_bytes=encoded),
        "float": lambda: by_images(images=images, images_widths=widths),
        "direct": lambda: direct(images, widths).numpy(),
    }
    seconds = {way: [] for way in ways}
    for round_ in range(counts["infer_warmup"] + counts["infer_batches"]):
        for way, call in ways.items():
            begin = time.perf_counter()
            call()
            if round_ >= counts["infer_warmup"]:
                seconds[way].append(time.perf_counter() - begin)
    result = {"export_s": exported - start, "load_s": load_s}
    for way, times in seconds.items():
        result[f"{way}_images_per_s"] = int(images.shape[0]) / statistics.median(times)
    for _ in range(counts["latency_warmup"]):
        by_bytes(image_bytes=one_image)
    latencies = []
    for _ in range(counts["latency_calls"]):
        start = time.perf_counter()
        by_bytes(image_bytes=one_image)["words"].numpy()
        latencies.append(1000 * (time.perf_counter() - start))
    result["latency_median_ms"] = statistics.median(latencies)
    result["latency_p90_ms"] = _percentile(latencies, 90)
    return result


def _percentile(values, percent: float) -> float:
    """Linear-interpolated percentile (numpy's default), without numpy."""
    ordered = sorted(values)
    position = (len(ordered) - 1) * percent / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


PHASE_FUNCTIONS = {
    "pipeline": phase_pipeline,
    "train": phase_train,
    "bare": phase_bare,
    "infer": phase_infer,
}


def run_phase(phase: str, spec_path: str) -> int:
    """The child's side: run one phase and print its figures as one JSON line."""
    with open(spec_path, encoding="utf-8") as f:
        spec = json.load(f)
    api = _Api()
    _quiet_tensorflow(api.tf)
    result = PHASE_FUNCTIONS[phase](api, spec)
    result["tf_crnn_file"] = api.file
    result["precision"] = api.precision(_params(api, spec))
    result["ignored_settings"] = api.ignored_settings
    print(json.dumps(result), flush=True)
    return 0


# --- the parent: data, matmul peak, children -----------------------------------------------------
def matmul_peak_gflops(size: int, repeats: int, dtype: str = "float32") -> float:
    """Best GFLOP/s of a size x size matmul in a tf.function, default thread pools."""
    import tensorflow as tf

    a = tf.cast(tf.random.uniform([size, size]), dtype)
    b = tf.cast(tf.random.uniform([size, size]), dtype)
    matmul = tf.function(lambda a, b: tf.reduce_sum(tf.linalg.matmul(a, b)))
    matmul(a, b).numpy()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        matmul(a, b).numpy()
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


class PhaseError(RuntimeError):
    """A child phase failed; the message has the end of its stderr."""


def run_child(phase: str, spec_path: str, workdir: str, checkout: str | None = None) -> dict:
    """Runs one phase in a subprocess; returns its JSON figures with ``peak_rss_mb`` and
    ``wall_s``.

    ``checkout``: the root of another checkout whose tf_crnn the child must import; the child is
    started in ``workdir`` (outside every checkout) with PYTHONPATH=checkout, and loads this file by
    path. Without it the child runs ``-m tf_crnn.benchmark`` of this package.
    """
    own_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    root = os.path.abspath(checkout) if checkout else own_root
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([root] + [p for p in [env.get("PYTHONPATH")] if p])
    if checkout:
        command = [sys.executable, "-c", _CHILD_LOADER, os.path.abspath(__file__)]
    else:
        command = [sys.executable, "-m", "tf_crnn.benchmark"]
    command += ["--phase", phase, "--spec", spec_path]
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


def _log(message: str) -> None:
    print(f"tf_crnn.benchmark: {message}", file=sys.stderr, flush=True)


def build_spec(args: argparse.Namespace, workdir: str) -> dict:
    counts = dict(QUICK_COUNTS if args.quick else FULL_COUNTS)
    for key in ("batch_size", "train_steps", "infer_batches"):
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
    from tf_crnn.alphabet import with_resolved_alphabet
    from tf_crnn.config import Params

    _quiet_tensorflow(tf)
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
            len(params.alphabet_units) + 1,
        )
        _log(f"data: {counts['train_images']} demo PNG images in {workdir}")
        # The network computes in its precision's dtype: measure that peak too, for its fractions.
        dtypes = list(dict.fromkeys(["float32", compute_dtype(_Api().precision(params))]))
        matmuls = {}  # moment -> dtype -> GFLOP/s

        def measure_matmul(moment: str) -> None:
            size, repeats = counts["matmul_size"], counts["matmul_repeats"]
            matmuls[moment] = {dtype: matmul_peak_gflops(size, repeats, dtype) for dtype in dtypes}
            rates = ", ".join(f"{dtype} {rate:.0f}" for dtype, rate in matmuls[moment].items())
            _log(f"matmul GFLOP/s {moment}: {rates}")

        measure_matmul("at start")

        spec_path = os.path.join(workdir, "spec.json")
        runs = [(phase, None) for phase in PHASES]
        if args.compare:
            runs += [(phase, args.compare) for phase in COMPARED_PHASES]
        results = {"new": {}, "old": {}}
        for phase, checkout in runs:
            key = "old" if checkout else "new"
            spec["checkout_key"] = key
            with open(spec_path, "w", encoding="utf-8") as f:
                json.dump(spec, f)
            name = f"{PHASE_TITLES[phase][2:]}{' (compared checkout)' if checkout else ''}"
            # Between the phases (the parent is idle while a child runs): how much of the CPU is
            # free varies on a shared machine, and the spread of these shows it.
            measure_matmul(f"before {name}")
            _log(f"{name} ...")
            results[key][phase] = run_child(phase, spec_path, workdir, checkout)
            _log(f"  done in {results[key][phase]['wall_s']:.0f} s")
        report = make_report(
            spec, params, flops, matmuls, results, args.compare, time.perf_counter() - started
        )
    finally:
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    return report


def compute_dtype(precision: str) -> str:
    """The dtype of the matrix products under a Keras policy: mixed_bfloat16 -> bfloat16."""
    return precision.split("_", 1)[1] if precision.startswith("mixed_") else precision


def _figures(phases: dict, flops: dict, peaks: dict[str, float]) -> dict[str, float]:
    """The flat figures of one checkout's phases (those that ran).

    Fractions of peak are of the matmul peak in the dtype that checkout's network computes in.
    """
    figures = {}
    precision = next(iter(phases.values()))["precision"]
    peak = peaks.get(compute_dtype(precision), peaks["float32"])
    forward, train_flops = flops["total"], 3 * flops["total"]
    if "pipeline" in phases:
        figures["pipeline_augmented_images_per_s"] = phases["pipeline"]["augmented_images_per_s"]
        figures["pipeline_plain_images_per_s"] = phases["pipeline"]["plain_images_per_s"]
    if "train" in phases:
        ips = phases["train"]["images_per_s"]
        figures["train_estimator_images_per_s"] = ips
        figures["train_estimator_startup_s"] = phases["train"]["startup_and_warmup_s"]
        figures["train_estimator_gflops"] = ips * train_flops / 1e9
        figures["train_estimator_fraction_of_peak"] = ips * train_flops / 1e9 / peak
    if "bare" in phases:
        ips = phases["bare"]["images_per_s"]
        figures["train_bare_images_per_s"] = ips
        figures["train_bare_gflops"] = ips * train_flops / 1e9
        figures["train_bare_fraction_of_peak"] = ips * train_flops / 1e9 / peak
        if "train" in phases:
            figures["estimator_over_bare"] = phases["train"]["images_per_s"] / ips
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
        figures["infer_direct_fraction_of_peak"] = figures["infer_direct_gflops"] / peak
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
    ("infer", "bytes signature, images/s", "infer_bytes_images_per_s", ".1f"),
    ("infer", "float signature, images/s", "infer_float_images_per_s", ".1f"),
    ("infer", "network alone (direct), images/s", "infer_direct_images_per_s", ".1f"),
    ("infer", "float sig. / direct (time)", "float_signature_over_direct", ".2f"),
    ("infer", "bytes / float sig. (time)", "bytes_over_float", ".2f"),
    ("infer", "batch-1 latency median, ms", "latency_batch1_median_ms", ".1f"),
    ("infer", "batch-1 latency p90, ms", "latency_batch1_p90_ms", ".1f"),
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
        f"{net['precision']} (fractions of the matmul peak in {compute_dtype(net['precision'])})",
        f"CPU: {cpu['model']} ({cpu['cpus']} CPUs; {flags})",
        f"TensorFlow {report['tensorflow']}; run took {report['wall_s']:.0f} s",
        f"Counts: pipeline {counts['pipeline_warmup']}+{counts['pipeline_batches']} batches; "
        f"training {counts['train_warmup']}+{counts['train_steps']} steps (warm-up + timed, "
        f"Estimator and bare); inference {counts['infer_warmup']}+{counts['infer_batches']} "
        f"batches per way, latency {counts['latency_warmup']}+{counts['latency_calls']} calls; "
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
