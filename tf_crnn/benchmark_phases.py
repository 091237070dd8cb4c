"""The measurements of ``python -m tf_crnn.benchmark``: each phase as it runs in a subprocess of its
own (``run_phase``: input pipeline, Estimator training, bare training, SavedModel inference), and
the matmul peak that the parent measures between them.

A compared older checkout's child loads this file by path, with that checkout's tf_crnn: it imports
nothing of tf_crnn at the top, and ``Api`` adapts what differs.
"""

from __future__ import annotations

import dataclasses
import json
import os
import statistics
import time

# TensorFlow's C++ start-up lines would bury the table (tf_crnn/__init__.py does the same, but a
# compared checkout's may not).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

PHASES = ("pipeline", "train", "bare", "infer")


# --- the phases (each in a child process) --------------------------------------------------------
class Api:
    """The tf_crnn functions the phases need, from whichever checkout is imported.

    The one place that knows older checkouts: there ``with_resolved_alphabet`` is in data_handler,
    the Estimator is built directly (no cluster.py) and the network is ``model.CRNN(params)``
    (no network.py).
    """

    def __init__(self):
        import tensorflow as tf

        import tf_crnn
        from tf_crnn import data_handler, export_model, model
        from tf_crnn.alphabet import Alphabet
        from tf_crnn.config import Params

        self.tf, self.Params, self.data_handler = tf, Params, data_handler
        self.Alphabet = Alphabet
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


def quiet_tensorflow(tf) -> None:
    """No Python-side INFO lines or deprecation notices (tf.estimator has dozens)."""
    from tensorflow.python.util import deprecation

    tf.get_logger().setLevel("ERROR")
    deprecation._PRINT_DEPRECATION_WARNINGS = False


def _params(api: Api, spec: dict, **overrides):
    """The phase's Params. Settings this checkout's Params lacks (a compared older checkout) are
    left out, and named in the phase's result."""
    known = {f.name for f in dataclasses.fields(api.Params)}
    settings = dict(spec["settings"], **overrides)
    api.ignored_settings = sorted(set(settings) - known)
    settings = {key: value for key, value in settings.items() if key in known}
    return api.with_resolved_alphabet(api.Params().with_overrides(settings), [spec["train_csv"]])


def phase_pipeline(api: Api, spec: dict) -> dict:
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


def phase_train(api: Api, spec: dict) -> dict:
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


def phase_bare(api: Api, spec: dict) -> dict:
    tf, counts = api.tf, spec["counts"]
    params = _params(api, spec)
    alphabet = api.Alphabet.from_params(params)
    batch = params.train_batch_size
    height, width = params.input_shape
    tf.random.set_seed(params.random_seed)
    images = tf.random.uniform([batch, height, width, params.input_channels])
    widths = tf.random.uniform([batch], width // 2, width + 1, dtype=tf.int32)
    lengths = api.time_steps(widths)
    # Labels of 3-8 codes (the demo's), never longer than half an image's time steps.
    label_lengths = tf.minimum(tf.random.uniform([batch], 3, 9, dtype=tf.int32), lengths // 2)
    label_lengths = tf.maximum(label_lengths, 1)
    dense = tf.random.uniform([batch, 8], 0, alphabet.blank_code, dtype=tf.int32)
    mask = tf.sequence_mask(label_lengths, 8)
    labels = tf.SparseTensor(
        tf.where(mask), tf.boolean_mask(dense, mask), tf.constant([batch, 8], tf.int64)
    )

    network = api.network(params, alphabet.num_classes)
    network(images, lengths, training=False)  # builds the variables
    optimizer = tf.keras.optimizers.Adam(params.learning_rate)
    optimizer.build(network.trainable_variables)

    # One trace for every batch: the pipeline's labels are as long as each batch's longest.
    @tf.function(
        input_signature=[
            tf.TensorSpec([None, height, width, params.input_channels], tf.float32),
            tf.TensorSpec([None], tf.int32),
            tf.SparseTensorSpec([None, None], tf.int32),
        ]
    )
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
                    blank_index=alphabet.blank_code,
                )
            )
        variables = network.trainable_variables
        gradients = tape.gradient(loss, variables)
        if params.gradient_clip_norm:
            gradients, _ = tf.clip_by_global_norm(gradients, params.gradient_clip_norm)
        optimizer.apply_gradients(zip(gradients, variables))
        return loss

    def images_per_s(batches) -> tuple[float, float]:
        """(images/s after the warm-up steps, seconds of the warm-up) of train_step on batches."""
        start = time.perf_counter()
        for _ in range(counts["train_warmup"]):
            train_step(*next(batches)).numpy()
        warm = time.perf_counter()
        for _ in range(counts["train_steps"]):
            train_step(*next(batches)).numpy()
        return counts["train_steps"] * batch / (time.perf_counter() - warm), warm - start

    def the_same_batch():
        while True:
            yield images, lengths, labels

    def from_the_pipeline():
        dataset = api.data_handler.input_fn([spec["train_csv"]], params, "train")
        for features, codes in dataset:
            widths = tf.cast(features["images_widths"], tf.int32)
            yield features["images"], api.time_steps(widths), tf.cast(codes, tf.int32)

    in_memory, warmup_s = images_per_s(the_same_batch())
    fed, _ = images_per_s(from_the_pipeline())
    return {"images_per_s": in_memory, "startup_and_warmup_s": warmup_s, "fed_images_per_s": fed}


def phase_infer(api: Api, spec: dict) -> dict:
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
    greedy = None
    if hasattr(params, "decoder"):  # a compared older checkout may only have beam search
        greedy_dir = api.export_model.export_saved_model(
            checkpoint, params.with_decoder("greedy"), os.path.join(job_dir, "export", "greedy")
        )
        greedy = tf.saved_model.load(greedy_dir).signatures

    batch = params.eval_batch_size
    features, _labels = next(iter(api.data_handler.input_fn([spec["eval_csv"]], params, "eval")))
    images = features["images"][:batch]
    widths = tf.cast(features["images_widths"][:batch], tf.int32)
    encoded = tf.constant([tf.io.read_file(path).numpy() for path in features["filenames"][:batch]])
    one_image = encoded[:1]

    # The network alone, in the precision the export computes in (export_precision, where the
    # checkout has it), so that float/direct is the price of the signature and nothing else.
    exported_params = params.as_exported() if hasattr(params, "as_exported") else params
    network = api.network(exported_params, api.Alphabet.from_params(params).num_classes)
    direct = tf.function(lambda images, widths: network(images, api.time_steps(widths)))

    # The ways take turns, one batch each, and each way's rate is from its median batch: a
    # load that comes and goes on a shared machine then hits every way alike, and outliers not.
    ways = {
        "bytes": lambda: by_bytes(image_bytes=encoded),
        "float": lambda: by_images(images=images, images_widths=widths),
        "direct": lambda: direct(images, widths).numpy(),
    }
    if greedy is not None:
        ways["greedy"] = lambda: greedy["images"](images=images, images_widths=widths)
    seconds = {way: [] for way in ways}
    for round_ in range(counts["infer_warmup"] + counts["infer_batches"]):
        for way, call in ways.items():
            begin = time.perf_counter()
            call()
            if round_ >= counts["infer_warmup"]:
                seconds[way].append(time.perf_counter() - begin)
    result = {"export_s": exported - start, "load_s": load_s}
    result["precision"] = api.precision(exported_params)
    for way, times in seconds.items():
        result[f"{way}_images_per_s"] = int(images.shape[0]) / statistics.median(times)
    # One image through the bytes signature, the default export and the greedy one by turns.
    exports = {"latency": by_bytes}
    if greedy is not None:
        exports["greedy_latency"] = greedy["serving_default"]
    latencies = {name: [] for name in exports}
    for call in range(counts["latency_warmup"] + counts["latency_calls"]):
        for name, signature in exports.items():
            start = time.perf_counter()
            signature(image_bytes=one_image)["words"].numpy()
            if call >= counts["latency_warmup"]:
                latencies[name].append(1000 * (time.perf_counter() - start))
    for name, times in latencies.items():
        result[f"{name}_median_ms"] = statistics.median(times)
        result[f"{name}_p90_ms"] = _percentile(times, 90)
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
    api = Api()
    quiet_tensorflow(api.tf)
    result = PHASE_FUNCTIONS[phase](api, spec)
    result["tf_crnn_file"] = api.file
    result.setdefault("precision", api.precision(_params(api, spec)))
    result["ignored_settings"] = api.ignored_settings
    print(json.dumps(result), flush=True)
    return 0


# --- the practical peak, measured by the parent between the phases -------------------------------
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
