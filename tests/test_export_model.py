"""tf_crnn.export_model: the SavedModel export and its three signatures, the exporters, and the CLI.

The model is the ``job`` trained once per session (conftest.py) on printed digit strings. Every
signature must give what ``Estimator.predict`` gives for the same images, because every way in
goes through the training preprocessing.
"""

import base64
import json
import logging
import os
import re
import subprocess
import sys

import cv2
import numpy as np
import pytest
import tensorflow as tf
from helpers import assert_same_predictions, digit_line, encode, tiny_params
from tensorflow.python.tools import saved_model_utils

from tf_crnn import data_handler, export_model, model, network, precision
from tf_crnn.config import Params
from tf_crnn.images import MAX_IMAGE_PIXELS

SAVED_MODEL_CLI = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")


def numpy_outputs(outputs) -> dict:
    return {name: value.numpy() for name, value in outputs.items()}


# --- the export -----------------------------------------------------------------------------------
def test_export_cli_writes_a_timestamped_model_of_the_latest_or_a_named_checkpoint(
    job, tmp_path, capsys
):
    def exported_kernel(export_dir):
        (name,) = os.listdir(export_dir)
        assert name.isdigit()
        path = os.path.join(export_dir, name)
        assert os.path.exists(os.path.join(path, "saved_model.pb"))
        as_exported = job.params.with_overrides({"precision": job.params.export_precision})
        assert Params.from_json(os.path.join(path, "assets.extra", "params.json")) == as_exported
        variables = os.path.join(path, "variables", "variables")
        return tf.train.load_variable(variables, "crnn/conv1/kernel")

    latest = ["--job-dir", job.job_dir, "--export-dir", str(tmp_path / "latest")]
    assert export_model.main(latest) == 0
    np.testing.assert_array_equal(
        exported_kernel(tmp_path / "latest"),
        tf.train.load_variable(job.checkpoint, "crnn/conv1/kernel"),
    )
    named = ["--job-dir", job.job_dir, "--checkpoint", "model.ckpt-0"]
    assert export_model.main([*named, "--export-dir", str(tmp_path / "named")]) == 0
    initial = tf.train.load_variable(os.path.join(job.job_dir, "model.ckpt-0"), "crnn/conv1/kernel")
    np.testing.assert_array_equal(exported_kernel(tmp_path / "named"), initial)
    assert not np.array_equal(initial, tf.train.load_variable(job.checkpoint, "crnn/conv1/kernel"))
    assert f"exported {job.checkpoint} to {tmp_path / 'latest'}" in capsys.readouterr().out

    assert export_model.main(["--job-dir", job.job_dir, "--checkpoint", "model.ckpt-999"]) == 2
    assert "checkpoint model.ckpt-999 not found" in capsys.readouterr().err
    assert export_model.main(["--job-dir", str(tmp_path / "nothing")]) == 2
    assert "params.json not found" in capsys.readouterr().err


def test_a_failed_export_leaves_no_model_behind(job, tmp_path, monkeypatch):
    def rename_fails(*args, **kwargs):
        raise tf.errors.UnavailableError(None, None, "storage went away")

    # The last step, when every file is written.
    monkeypatch.setattr(tf.io.gfile, "rename", rename_fails)
    with pytest.raises(tf.errors.UnavailableError):
        export_model.export_saved_model(job.checkpoint, job.params, str(tmp_path / "export"))
    assert os.listdir(tmp_path / "export") == []


def test_exporters_keep_the_newest_and_the_lowest_cer_exports(job, tmp_path):
    def export(cer, keep, best_only=True):
        # A new exporter each time: what is kept is read from disk, as after a restart.
        exporter = export_model.ServingExporter("e", job.params, keep=keep, best_only=best_only)
        result = {"cer": cer, "global_step": 7}
        path = exporter.export(None, str(tmp_path), job.checkpoint, result, False)
        return path and os.path.basename(path)

    def kept():
        return {
            name: json.loads((tmp_path / name / "assets.extra" / "eval_result.json").read_text())[
                "cer"
            ]
            for name in os.listdir(tmp_path)
        }

    first = export(0.5, keep=1)
    assert kept() == {first: 0.5}
    assert export(0.7, keep=1) is None
    assert kept() == {first: 0.5}
    third = export(0.3, keep=1)
    assert kept() == {third: 0.3}
    # Keeping two: exports while fewer are kept, then only what beats the worst kept, which goes.
    fourth = export(0.6, keep=2)
    assert kept() == {third: 0.3, fourth: 0.6}
    assert export(0.6, keep=2) is None
    fifth = export(0.4, keep=2)
    assert kept() == {third: 0.3, fifth: 0.4}
    # Keeping the newest two, whatever their CER: the older goes, even the best.
    newest = export(0.9, keep=2, best_only=False)
    assert kept() == {fifth: 0.4, newest: 0.9}
    assert int(first) < int(third) < int(fourth) < int(fifth) < int(newest)


def test_the_best_exporter_copies_the_latest_export_of_the_same_checkpoint(
    job, tmp_path, monkeypatch
):
    latest = export_model.ServingExporter("latest", job.params, keep=1)
    best = export_model.ServingExporter(
        "best", job.params, keep=1, best_only=True, copy_from=latest
    )
    result = {"cer": 0.25, "global_step": 7}
    made = latest.export(None, str(tmp_path / "latest"), job.checkpoint, result, False)

    def no_build(*args, **kwargs):
        raise AssertionError("the SavedModel was built again")

    monkeypatch.setattr(export_model, "export_saved_model", no_build)
    copied = best.export(None, str(tmp_path / "best"), job.checkpoint, result, False)
    assert os.path.dirname(copied) == str(tmp_path / "best")

    def files(root):
        return {
            os.path.relpath(os.path.join(folder, name), root): open(
                os.path.join(folder, name), "rb"
            ).read()
            for folder, _, names in os.walk(root)
            for name in names
        }

    assert files(copied) == files(made)
    assert os.listdir(tmp_path / "best") == [os.path.basename(copied)]  # no temp- folder left
    # Another checkpoint than the one "latest" holds is built, not copied.
    other = job.checkpoint.rsplit("-", 1)[0] + "-0"
    with pytest.raises(AssertionError, match="built again"):
        best.export(None, str(tmp_path / "best"), other, {"cer": 0.1, "global_step": 0}, False)


def test_a_rerun_makes_only_the_exports_a_killed_run_left_unmade(job, tmp_path):
    step = int(job.checkpoint.rsplit("-", 1)[1])
    result = {"cer": 0.25, "global_step": step}

    def exporters():  # new ones, as in the rerun's process
        latest = export_model.ServingExporter("latest", job.params, keep=2)
        best = export_model.ServingExporter(
            "best", job.params, keep=1, best_only=True, copy_from=latest
        )
        return [latest, best]

    # The killed run: "latest" exported the last step, "best" was cut short.
    exporters()[0].export(None, str(tmp_path / "export" / "latest"), job.checkpoint, result, True)
    (tmp_path / "export" / "best" / "temp-123" / "variables").mkdir(parents=True)

    def exports():
        return {kind: sorted(os.listdir(tmp_path / "export" / kind)) for kind in ("latest", "best")}

    made = exports()
    estimator = tf.estimator.Estimator(model.crnn_fn, model_dir=job.job_dir, params=job.params)
    export_model.export_missing(estimator, exporters(), str(tmp_path), result)
    after = exports()
    assert after["latest"] == made["latest"]  # already of the last step: not made again
    (best,) = after["best"]  # made, and the killed export's folder is gone
    with open(tmp_path / "export" / "best" / best / "assets.extra" / "eval_result.json") as f:
        assert json.load(f)["global_step"] == step
    # A job whose exports were all made is left as it is.
    export_model.export_missing(estimator, exporters(), str(tmp_path), result)
    assert exports() == after


def test_signatures_take_bytes_or_images_and_give_batch_major_words(job, served):
    # filenames only on request
    assert set(served.signatures) == {"serving_default", "images", "with_frame_log_probs"}
    height, width = job.params.input_shape
    inputs = {
        name: {
            key: (spec.dtype, spec.shape.as_list())
            for key, spec in served.signatures[name].structured_input_signature[1].items()
        }
        for name in served.signatures
    }
    images_shape = [None, height, width, job.params.input_channels]
    assert inputs == {
        "serving_default": {"image_bytes": (tf.string, [None])},
        "with_frame_log_probs": {"image_bytes": (tf.string, [None])},
        "images": {"images": (tf.float32, images_shape), "images_widths": (tf.int32, [None])},
    }
    classes = len(job.params.alphabet_units) + 1  # the CTC blank last
    steps = network.time_steps(width)
    for signature in served.signatures.values():
        outputs = signature.structured_outputs
        assert {"words", "top_words", "scores"} <= set(outputs)
        # TF Serving's REST API base64-encodes outputs whose name ends in _bytes.
        assert not [name for name in outputs if name.endswith("_bytes")]
        assert outputs["words"].shape.as_list() == [None]
        for name in ("top_words", "scores"):
            assert outputs[name].shape.as_list() == [None, job.params.num_beam_paths]
    # Only the signature for lexicon decoding returns the (large) frame log-probabilities.
    assert [
        name for name, signature in served.signatures.items()
        if "frame_log_probs" in signature.structured_outputs
    ] == ["with_frame_log_probs"]  # fmt: skip
    frames = served.signatures["with_frame_log_probs"].structured_outputs["frame_log_probs"]
    assert frames.dtype == tf.float32 and frames.shape.as_list() == [None, steps, classes]


# Ops that open files (read, write, list, or restore variables from a path the caller gives).
FILE_OPS = {"ReadFile", "WriteFile", "MatchingFiles", "RestoreV2", "SaveV2", "MergeV2Checkpoints"}


@pytest.fixture(scope="module")
def filenames_export(job, tmp_path_factory) -> str:
    """The job's model exported with the filenames signature, asked for on the command line."""
    export_dir = tmp_path_factory.mktemp("with_filenames")
    args = ["--job-dir", job.job_dir, "--export-dir", str(export_dir), "--filenames-signature"]
    assert export_model.main(args) == 0
    (name,) = os.listdir(export_dir)
    return str(export_dir / name)


def ops_run_by(meta_graph, signature_name: str) -> set[str]:
    """The op types a signature's outputs depend on: the graph's nodes walked back from them,
    through the functions they call (map_fn's and tf.cond's bodies), defaults of fed inputs too."""
    nodes = {node.name: node for node in meta_graph.graph_def.node}
    functions = {
        function.signature.name: function for function in meta_graph.graph_def.library.function
    }

    def called(node):
        names = [node.op] if node.op in functions else []
        return names + [value.func.name for value in node.attr.values() if value.HasField("func")]

    ops, visited = set(), set()
    outputs = meta_graph.signature_def[signature_name].outputs.values()
    pending = [(None, tensor.name.split(":")[0]) for tensor in outputs]
    while pending:
        function, name = pending.pop()
        if (function, name) in visited:
            continue
        visited.add((function, name))
        if function is None:
            node = nodes[name]
            ops.add(node.op)
            pending += [(None, i.lstrip("^").split(":")[0]) for i in node.input]
            pending += [(f, None) for f in called(node)]
        else:
            for node in functions[function].node_def:
                ops.add(node.op)
                pending += [(f, None) for f in called(node)]
    return ops


def test_a_served_model_reads_no_file_unless_the_filenames_signature_is_asked_for(
    job, filenames_export, lines
):
    closed = saved_model_utils.get_meta_graph_def(job.export, "serve")
    assert set(closed.signature_def) == {"serving_default", "images", "with_frame_log_probs"}
    every_op = {node.op for node in closed.graph_def.node} | {
        node.op for function in closed.graph_def.library.function for node in function.node_def
    }
    assert "ReadFile" not in every_op
    for name in closed.signature_def:
        assert not ops_run_by(closed, name) & FILE_OPS, name

    opened = saved_model_utils.get_meta_graph_def(filenames_export, "serve")
    assert set(opened.signature_def) == {
        "serving_default",
        "images",
        "with_frame_log_probs",
        "filenames",
    }
    assert ops_run_by(opened, "filenames") & FILE_OPS == {"ReadFile"}
    with open(os.path.join(filenames_export, "assets.extra", "params.json")) as f:
        assert json.load(f)["export_filenames_signature"] is True
    read = tf.saved_model.load(filenames_export).signatures["filenames"]
    assert read(filenames=tf.constant(lines.paths[:2]))["words"].shape == (2,)


# --- serving gives what training and Estimator.predict give ---------------------------------------
def test_serving_preprocesses_every_format_to_the_pixels_training_sees(
    job, lines, filenames_export
):
    dataset = data_handler.input_fn([lines.csv], job.params, "eval", batch_size=len(lines.paths))
    features, _ = next(iter(dataset))
    with tf.Graph().as_default(), tf.compat.v1.Session() as session:
        loaded = tf.compat.v1.saved_model.load(session, [tf.saved_model.SERVING], filenames_export)
        signatures = loaded.signature_def
        images = [signatures["images"].inputs[key].name for key in ("images", "images_widths")]
        bytes_input = signatures["serving_default"].inputs["image_bytes"].name
        from_bytes = session.run(images, {bytes_input: lines.contents})
        files_input = signatures["filenames"].inputs["filenames"].name
        from_files = session.run(images, {files_input: lines.paths})
    for served_images, served_widths in (from_bytes, from_files):
        np.testing.assert_array_equal(served_images, features["images"].numpy())
        np.testing.assert_array_equal(served_widths, features["images_widths"].numpy())


def test_every_signature_predicts_what_the_estimator_predicts(
    job, lines, served, expected, filenames_export
):
    dataset = data_handler.input_fn([lines.csv], job.params, "eval", batch_size=len(lines.paths))
    features, _ = next(iter(dataset))
    signatures = served.signatures
    read_files = tf.saved_model.load(filenames_export).signatures["filenames"]
    for outputs in (
        signatures["serving_default"](image_bytes=tf.constant(lines.contents)),
        signatures["images"](images=features["images"], images_widths=features["images_widths"]),
        read_files(filenames=tf.constant(lines.paths)),
    ):
        assert_same_predictions(numpy_outputs(outputs), expected)


def test_saved_model_cli_shows_the_signatures_and_runs_the_bytes_one(
    job, lines, expected, tmp_path
):
    shown = subprocess.run(
        [SAVED_MODEL_CLI, "show", "--all", "--dir", job.export],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert shown.returncode == 0, shown.stderr
    for name in ("serving_default", "images"):
        assert f"signature_def['{name}']" in shown.stdout
    assert "signature_def['filenames']" not in shown.stdout
    np.save(tmp_path / "image_bytes.npy", np.array(lines.contents[:8], dtype=object))
    run = subprocess.run(
        [
            SAVED_MODEL_CLI,
            "run",
            "--dir",
            job.export,
            "--tag_set",
            "serve",
            "--signature_def",
            "serving_default",
            "--inputs",
            f"image_bytes={tmp_path}/image_bytes.npy",
            "--outdir",
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    words = np.load(tmp_path / "out" / "words.npy", allow_pickle=True)
    assert list(words) == list(expected["words"][:8])


def tf_serving_rest_inputs(body: str) -> dict:
    """The input tensors TF Serving's REST API makes of a row-format ("instances") request body.

    Each instance maps input names to values, a ``{"b64": ...}`` value being base64 for raw bytes;
    the instances' values are stacked, per input name, into one batch tensor.
    """
    instances = json.loads(body)["instances"]

    def value(item):
        if isinstance(item, dict) and set(item) == {"b64"}:
            return base64.b64decode(item["b64"])
        return item

    return {
        name: tf.constant([value(instance[name]) for instance in instances])
        for name in instances[0]
    }


def test_a_tf_serving_rest_request_gets_the_right_words(lines, served, expected):
    instances = [
        {"image_bytes": {"b64": base64.b64encode(contents).decode("ascii")}}
        for contents in lines.contents[:10]
    ]
    body = json.dumps({"instances": instances})
    outputs = numpy_outputs(served.signatures["serving_default"](**tf_serving_rest_inputs(body)))
    # Row-format responses need every output batch-major: one prediction object per instance.
    assert {len(value) for value in outputs.values()} == {10}
    predictions = [
        {name: np.asarray(value[i]).tolist() for name, value in outputs.items()} for i in range(10)
    ]
    response = json.loads(json.dumps({"predictions": predictions}, default=bytes.decode))
    expected_words = [w.decode() for w in expected["words"][:10]]
    assert [p["words"] for p in response["predictions"]] == expected_words


# --- robustness -----------------------------------------------------------------------------------
def test_undecodable_and_empty_bytes_are_invalid_argument_errors_and_one_pixel_is_read(
    lines, served
):
    serve = served.signatures["serving_default"]
    for contents, reason in [
        (b"not an image", "Unknown image file format"),
        (b"", re.escape("image_bytes[0]: empty (0 bytes)")),
        (lines.contents[0][:100], "Invalid PNG data"),
    ]:
        with pytest.raises(tf.errors.InvalidArgumentError, match=reason):
            serve(image_bytes=tf.constant([contents]))
    one_pixel = [encode(np.zeros((1, 1), np.uint8), kind) for kind in ("png", "jpeg", "bmp", "gif")]
    words = serve(image_bytes=tf.constant(one_pixel))["words"].numpy()
    assert words.shape == (4,) and all(isinstance(w, bytes) for w in words)


# Peak memory is read from VmHWM, not getrusage's ru_maxrss: on Linux that starts at the parent's
# peak (pytest's, gigabytes here), inherited through fork and exec, and would hide what we measure.
BIG_IMAGES_SCRIPT = """
import json, sys
import tensorflow as tf
from tf_crnn.predict import error_reason

def peak_rss_mb():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024

serve = tf.saved_model.load(sys.argv[1]).signatures["serving_default"]
results = []
for path in sys.argv[2:]:
    with open(path, "rb") as f:
        contents = f.read()
    before = peak_rss_mb()
    try:
        result = {"words": serve(image_bytes=tf.constant([contents]))["words"].numpy()[0].decode()}
    except tf.errors.InvalidArgumentError as error:
        result = {"error": error_reason(error)}
    result["peak_rss_increase_mb"], result["peak_rss_mb"] = peak_rss_mb() - before, peak_rss_mb()
    results.append(result)
print(json.dumps(results))
"""


@pytest.mark.skipif(
    not os.path.exists("/proc/self/status"), reason="measures peak memory through Linux's /proc"
)
def test_huge_images_are_refused_and_large_ones_downscaled_within_bounded_memory(
    job, lines, expected, tmp_path
):
    huge = np.full((20000, 20000), 255, np.uint8)  # 400 megapixels, white: a 0.4 MB PNG
    rle = [cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE]
    cv2.imwrite(str(tmp_path / "huge.png"), huge, rle)
    del huge
    line = digit_line(lines.labels[0])
    # Up to 27 megapixels.
    large = cv2.resize(line, None, fx=100, fy=100, interpolation=cv2.INTER_NEAREST)
    assert large.size < MAX_IMAGE_PIXELS
    cv2.imwrite(str(tmp_path / "large.png"), large)
    # A peak only grows: measure the refusal before the large image.
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            BIG_IMAGES_SCRIPT,
            job.export,
            str(tmp_path / "huge.png"),
            str(tmp_path / "large.png"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    refused, read = json.loads(result.stdout.splitlines()[-1])
    print(
        f"\npeak RSS increase: 20000 x 20000 PNG {refused['peak_rss_increase_mb']:.0f} MB "
        f"({refused.get('error')}); {large.shape[0]} x {large.shape[1]} PNG "
        f"{read['peak_rss_increase_mb']:.0f} MB (process peak {read['peak_rss_mb']:.0f} MB)"
    )
    assert refused["error"] == (
        f"assertion failed: [image_bytes[0]: image of 20000 x 20000 pixels: more than the "
        f"{MAX_IMAGE_PIXELS} pixels tf_crnn decodes]"
    )
    assert refused["peak_rss_increase_mb"] < 100
    assert read["words"] == expected["words"][0].decode()
    # Bytes per pixel, well above the ~19 measured.
    assert read["peak_rss_increase_mb"] < 40 * large.size / 2**20


def conv_dtypes(saved_model_dir):
    meta_graph = saved_model_utils.get_meta_graph_def(saved_model_dir, "serve")
    nodes = meta_graph.graph_def.node
    return {tf.dtypes.as_dtype(node.attr["T"].type).name for node in nodes if node.op == "Conv2D"}


def test_exports_compute_in_the_export_precision_not_the_training_one(job, tmp_path, capsys):
    trained_in_bfloat16 = job.params.with_overrides({"precision": "mixed_bfloat16"})
    portable = export_model.export_saved_model(
        job.checkpoint, trained_in_bfloat16, str(tmp_path / "default")
    )
    assert conv_dtypes(portable) == {"float32"}
    with open(os.path.join(portable, "assets.extra", "params.json")) as f:
        assert json.load(f)["precision"] == "float32"

    problem = precision.Hardware.of_this_machine().bfloat16_problem(in_cluster=False)
    if problem:
        pytest.skip(f"no bfloat16 export here: {problem}")
    assert export_model.main(
        ["--job-dir", job.job_dir, "--export-dir", str(tmp_path / "bf16"),
         "--precision", "mixed_bfloat16"]
    ) == 0  # fmt: skip
    (bfloat16,) = tf.io.gfile.glob(str(tmp_path / "bf16" / "*"))
    assert conv_dtypes(bfloat16) == {"bfloat16"}
    with open(os.path.join(bfloat16, "assets.extra", "params.json")) as f:
        assert json.load(f)["precision"] == "mixed_bfloat16"


def test_a_greedy_export_reads_the_best_path_of_the_frames_with_one_word_per_image(
    job, lines, tmp_path, capsys
):
    assert export_model.main(
        ["--job-dir", job.job_dir, "--export-dir", str(tmp_path), "--decoder", "greedy"]
    ) == 0  # fmt: skip
    (greedy_dir,) = tf.io.gfile.glob(str(tmp_path / "*"))
    with open(os.path.join(greedy_dir, "assets.extra", "params.json")) as f:
        assert json.load(f)["decoder"] == "greedy"
    greedy = tf.saved_model.load(greedy_dir).signatures
    image_bytes = tf.constant(lines.contents[:16])
    outputs = greedy["with_frame_log_probs"](image_bytes=image_bytes)
    assert outputs["top_words"].shape == (16, 1) and outputs["scores"].shape == (16, 1)
    # The words are the frames' best path, collapsed by hand; the score is its log-probability.
    units = job.params.alphabet_units
    blank = len(units)
    frames = outputs["frame_log_probs"].numpy()
    for i, length in enumerate(outputs["sequence_lengths"].numpy()):
        best = frames[i, :length].argmax(axis=-1)
        kept = [c for t, c in enumerate(best) if c != blank and (t == 0 or c != best[t - 1])]
        assert outputs["words"][i].numpy().decode() == "".join(units[c] for c in kept)
        expected_score = frames[i, :length].max(axis=-1).sum()
        np.testing.assert_allclose(outputs["scores"][i, 0], expected_score, rtol=1e-4)
    np.testing.assert_array_equal(outputs["words"], outputs["top_words"][:, 0])
    # The default export of the same model reads these lines alike (it learned them), with three.
    beam = tf.saved_model.load(job.export).signatures["serving_default"](image_bytes=image_bytes)
    assert beam["top_words"].shape == (16, 3)
    agreeing = np.mean(beam["words"].numpy() == outputs["words"].numpy())
    assert agreeing >= 0.9, agreeing


def test_an_evaluator_whose_checkpoint_was_deleted_skips_its_export(tmp_path, caplog, monkeypatch):
    """An evaluator lagging behind the chief may find its checkpoint rotated away."""
    monkeypatch.setattr(logging.getLogger("tf_crnn"), "propagate", True)
    exporter = export_model.ServingExporter("latest", tiny_params(), keep=2)
    gone = str(tmp_path / "model.ckpt-7")
    export_dir = str(tmp_path / "export")
    with caplog.at_level(logging.WARNING, logger="tf_crnn"):
        result = {"cer": 0.5, "global_step": 7}
        assert exporter.export(None, export_dir, gone, result, False) is None
    assert f"{gone} was deleted before it could be exported; skipped" in caplog.text
    assert not tf.io.gfile.glob(os.path.join(export_dir, "*", "saved_model.pb"))
