"""Serving: the SavedModel export and its three signatures, the exporters, ``Predictor`` and both CLIs.

One tiny model is trained once for the module, with ``python -m tf_crnn.task``'s ``main``, on printed
digit strings it learns to read. Every way of serving it must give what ``Estimator.predict`` gives
for the same images, because every way in goes through the training preprocessing.
"""
import base64
import json
import os
import struct
import subprocess
import sys
from dataclasses import dataclass
from typing import Dict, List

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import cv2
import numpy as np
import pytest
import tensorflow as tf

from conftest import digit_line
from tf_crnn import data_handler, export_model, metrics, model, predict, task
from tf_crnn.alphabet import Alphabet
from tf_crnn.config import Params
from tf_crnn.csv_rows import read_csv_rows
from tf_crnn.images import MAX_IMAGE_PIXELS

TRAIN_STEPS = 300
SAVED_MODEL_CLI = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
# How the test images are stored: every format the bytes signature accepts, in several colour modes.
FORMATS = ["png", "jpeg", "png_rgba", "bmp", "gif", "png_16bit", "png_3x", "jpeg_gray"]
# A label far from any prediction, so that its row heads the CLI's list of worst predictions.
WRONG_LABEL = "0000000000"


def digit_strings(count: int, seed: int) -> List[str]:
    rng = np.random.default_rng(seed)
    return ["".join(rng.choice(list("0123456789"), rng.integers(3, 6))) for _ in range(count)]


def encode_gif(gray: np.ndarray) -> bytes:
    """``gray`` as a GIF, which OpenCV cannot write: a 256-gray palette and 9-bit LZW codes.

    A clear code every 200 pixels keeps the LZW table, and so the code width, from growing.
    """
    height, width = gray.shape
    codes = []
    for index, pixel in enumerate(gray.ravel()):
        if index % 200 == 0:
            codes.append(256)  # clear
        codes.append(int(pixel))
    codes.append(257)  # end of information
    packed, bits, count = bytearray(), 0, 0
    for code in codes:
        bits |= code << count
        count += 9
        while count >= 8:
            packed.append(bits & 255)
            bits, count = bits >> 8, count - 8
    if count:
        packed.append(bits)
    blocks = b"".join(bytes([len(packed[i:i + 255])]) + packed[i:i + 255] for i in range(0, len(packed), 255))
    palette = bytes(value for gray_level in range(256) for value in (gray_level,) * 3)
    return (b"GIF89a" + struct.pack("<HHBBB", width, height, 0xF7, 0, 0) + palette
            + b"," + struct.pack("<HHHHB", 0, 0, width, height, 0) + b"\x08" + blocks + b"\x00;")


def encode(gray: np.ndarray, image_format: str) -> bytes:
    """A black-on-white ``gray`` image as a file of ``image_format`` (colour ones: dark blue on cream)."""
    ink = 1 - gray[..., np.newaxis] / 255.0
    colour = np.uint8(np.array([200, 240, 250]) + ink * (np.array([90, 30, 10]) - np.array([200, 240, 250])))  # BGR
    if image_format == "gif":
        return encode_gif(gray)
    extension, image = {
        "png": (".png", gray),
        "jpeg": (".jpg", colour),
        "png_rgba": (".png", np.dstack([colour, np.full(gray.shape, 200, np.uint8)])),
        "bmp": (".bmp", colour),
        "png_16bit": (".png", gray.astype(np.uint16) * 257),
        "png_3x": (".png", cv2.resize(gray, None, fx=3, fy=3, interpolation=cv2.INTER_CUBIC)),
        "jpeg_gray": (".jpg", gray),
    }[image_format]
    ok, data = cv2.imencode(extension, image)
    assert ok
    return data.tobytes()


def write_digit_csv(folder, name: str, count: int, seed: int, formats=("png",)) -> str:
    rows = []
    for index, text in enumerate(digit_strings(count, seed)):
        image_format = formats[index % len(formats)]
        file_name = f"{name}_{index}.{image_format}"
        (folder / file_name).write_bytes(encode(digit_line(text), image_format))
        rows.append(f"{file_name};{text}")
    (folder / f"{name}.csv").write_text("\n".join(rows) + "\n")
    return str(folder / f"{name}.csv")


@dataclass
class Job:
    """The trained model's job directory, its settings, latest checkpoint and newest export."""
    job_dir: str
    params: Params
    checkpoint: str
    export: str  # made from ``checkpoint`` by the exporters


@dataclass
class Lines:
    """Labelled text-line images in every format: the paths, their bytes and labels, and their CSV."""
    csv: str
    paths: List[str]
    contents: List[bytes]
    labels: List[str]


@pytest.fixture(scope="module")
def job(tmp_path_factory) -> Job:
    data = tmp_path_factory.mktemp("digits")
    # Trained on every format, so that it reads them all: 300 steps of 32 lines get it there reliably
    # (it did by step 200 in 9 trials).
    train_csv = write_digit_csv(data, "train", 240, seed=0, formats=FORMATS)
    # Not GIF: samples.png is drawn with OpenCV, which cannot read GIF (tf_crnn/visualize.py).
    eval_csv = write_digit_csv(data, "eval", 32, seed=1, formats=[f for f in FORMATS if f != "gif"])
    job_dir = str(tmp_path_factory.mktemp("job"))
    assert task.main([
        "--job-dir", job_dir, "--train-csv", train_csv, "--eval-csv", eval_csv,
        "--param", "conv_filters=[16,32,32,32,64,64,64]", "--param", "alphabet_string=0123456789",
        "--rnn_units", "32", "--learning_rate", "0.003", "--train_batch_size", "32", "--dropout_rate", "0",
        "--data_augmentation", "false", "--train_steps", str(TRAIN_STEPS), "--save_interval", str(TRAIN_STEPS),
        "--eval_throttle_secs", "0", "--log_step_count_steps", "1000"]) == 0
    checkpoint = tf.train.latest_checkpoint(job_dir)
    assert checkpoint.endswith(f"model.ckpt-{TRAIN_STEPS}")
    export = predict.find_saved_model(job_dir)
    with open(os.path.join(export, "assets.extra", export_model.EVAL_RESULT_FILE)) as f:
        assert json.load(f)["global_step"] == TRAIN_STEPS
    return Job(job_dir, Params.from_json(os.path.join(job_dir, "params.json")), checkpoint, export)


@pytest.fixture(scope="module")
def lines(tmp_path_factory) -> Lines:
    folder = tmp_path_factory.mktemp("lines")
    csv_file = write_digit_csv(folder, "lines", 72, seed=2, formats=FORMATS)
    rows = read_csv_rows(csv_file, ";").strict()
    paths = [row.image_path for row in rows]
    return Lines(csv_file, paths, [open(path, "rb").read() for path in paths], [row.label for row in rows])


@pytest.fixture(scope="module")
def served(job):
    return tf.saved_model.load(job.export)


@pytest.fixture(scope="module")
def predictor(job) -> predict.Predictor:
    return predict.Predictor(job.job_dir)


@pytest.fixture(scope="module")
def expected(job, lines) -> Dict[str, np.ndarray]:
    """``Estimator.predict`` on ``lines``: what every serving path must reproduce."""
    estimator = tf.estimator.Estimator(model.crnn_fn, model_dir=job.job_dir, params=job.params)
    results = list(estimator.predict(lambda: data_handler.input_fn([lines.csv], job.params, "eval"),
                                     checkpoint_path=job.checkpoint))
    assert [result["filenames"].decode() for result in results] == lines.paths
    return {key: np.stack([result[key] for result in results]) for key in ("words", "top_words", "scores")}


def assert_same_predictions(outputs: Dict[str, np.ndarray], expected: Dict[str, np.ndarray]) -> None:
    np.testing.assert_array_equal(outputs["words"], expected["words"])
    np.testing.assert_array_equal(outputs["top_words"], expected["top_words"])
    np.testing.assert_allclose(outputs["scores"], expected["scores"], rtol=1e-4, atol=1e-3)


def numpy_outputs(outputs) -> Dict[str, np.ndarray]:
    return {name: value.numpy() for name, value in outputs.items()}


# ----------------------------------------------------------------------------------------------
# The export
# ----------------------------------------------------------------------------------------------
def test_export_cli_writes_a_timestamped_model_of_the_latest_or_a_named_checkpoint(job, tmp_path, capsys):
    def exported_kernel(export_dir):
        (name,) = os.listdir(export_dir)
        assert name.isdigit()
        path = os.path.join(export_dir, name)
        assert os.path.exists(os.path.join(path, "saved_model.pb"))
        assert Params.from_json(os.path.join(path, "assets.extra", "params.json")) == job.params
        return tf.train.load_variable(os.path.join(path, "variables", "variables"), "crnn/conv1/kernel")

    assert export_model.main(["--job-dir", job.job_dir, "--export-dir", str(tmp_path / "latest")]) == 0
    np.testing.assert_array_equal(exported_kernel(tmp_path / "latest"),
                                  tf.train.load_variable(job.checkpoint, "crnn/conv1/kernel"))
    assert export_model.main(["--job-dir", job.job_dir, "--checkpoint", "model.ckpt-0",
                              "--export-dir", str(tmp_path / "named")]) == 0
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

    monkeypatch.setattr(tf.io.gfile, "rename", rename_fails)  # the last step, when every file is written
    with pytest.raises(tf.errors.UnavailableError):
        export_model.export_saved_model(job.checkpoint, job.params, str(tmp_path / "export"))
    assert os.listdir(tmp_path / "export") == []


def test_exporters_keep_the_newest_and_the_lowest_cer_exports(job, tmp_path):
    def export(cer, keep, best_only=True):
        # A new exporter each time: what is kept is read from disk, as after a restart.
        exporter = export_model.ServingExporter("e", job.params, keep=keep, best_only=best_only)
        path = exporter.export(None, str(tmp_path), job.checkpoint, {"cer": cer, "global_step": 7}, False)
        return path and os.path.basename(path)

    def kept():
        return {name: json.loads((tmp_path / name / "assets.extra" / "eval_result.json").read_text())["cer"]
                for name in os.listdir(tmp_path)}

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


def test_signatures_take_bytes_images_or_filenames_and_give_batch_major_words(job, served):
    assert set(served.signatures) == {"serving_default", "images", "filenames"}
    height, width = job.params.input_shape
    inputs = {name: {key: (spec.dtype, spec.shape.as_list()) for key, spec in
                     served.signatures[name].structured_input_signature[1].items()} for name in served.signatures}
    assert inputs == {"serving_default": {"image_bytes": (tf.string, [None])},
                      "images": {"images": (tf.float32, [None, height, width, job.params.input_channels]),
                                 "images_widths": (tf.int32, [None])},
                      "filenames": {"filenames": (tf.string, [None])}}
    for signature in served.signatures.values():
        outputs = signature.structured_outputs
        assert {"words", "top_words", "scores"} <= set(outputs)
        # TF Serving's REST API base64-encodes outputs whose name ends in _bytes.
        assert not [name for name in outputs if name.endswith("_bytes")]
        assert outputs["words"].shape.as_list() == [None]
        for name in ("top_words", "scores"):
            assert outputs[name].shape.as_list() == [None, job.params.num_beam_paths]


# ----------------------------------------------------------------------------------------------
# Serving gives what training and Estimator.predict give
# ----------------------------------------------------------------------------------------------
def test_serving_preprocesses_every_format_to_the_pixels_training_sees(job, lines):
    features, _ = next(iter(data_handler.input_fn([lines.csv], job.params, "eval", batch_size=len(lines.paths))))
    with tf.Graph().as_default(), tf.compat.v1.Session() as session:
        signatures = tf.compat.v1.saved_model.load(session, [tf.saved_model.SERVING], job.export).signature_def
        images = [signatures["images"].inputs[key].name for key in ("images", "images_widths")]
        from_bytes = session.run(images, {signatures["serving_default"].inputs["image_bytes"].name: lines.contents})
        from_files = session.run(images, {signatures["filenames"].inputs["filenames"].name: lines.paths})
    for served_images, served_widths in (from_bytes, from_files):
        np.testing.assert_array_equal(served_images, features["images"].numpy())
        np.testing.assert_array_equal(served_widths, features["images_widths"].numpy())


def test_every_signature_predicts_what_the_estimator_predicts(job, lines, served, expected):
    features, _ = next(iter(data_handler.input_fn([lines.csv], job.params, "eval", batch_size=len(lines.paths))))
    signatures = served.signatures
    for outputs in (signatures["serving_default"](image_bytes=tf.constant(lines.contents)),
                    signatures["images"](images=features["images"], images_widths=features["images_widths"]),
                    signatures["filenames"](filenames=tf.constant(lines.paths))):
        assert_same_predictions(numpy_outputs(outputs), expected)


def test_saved_model_cli_shows_the_signatures_and_runs_the_bytes_one(job, lines, expected, tmp_path):
    shown = subprocess.run([SAVED_MODEL_CLI, "show", "--all", "--dir", job.export], capture_output=True, text=True,
                           timeout=120)
    assert shown.returncode == 0, shown.stderr
    for name in ("serving_default", "images", "filenames"):
        assert f"signature_def['{name}']" in shown.stdout
    np.save(tmp_path / "image_bytes.npy", np.array(lines.contents[:8], dtype=object))
    run = subprocess.run([SAVED_MODEL_CLI, "run", "--dir", job.export, "--tag_set", "serve",
                          "--signature_def", "serving_default", "--inputs", f"image_bytes={tmp_path}/image_bytes.npy",
                          "--outdir", str(tmp_path / "out")], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert list(np.load(tmp_path / "out" / "words.npy", allow_pickle=True)) == list(expected["words"][:8])


def tf_serving_rest_inputs(body: str) -> Dict[str, tf.Tensor]:
    """The input tensors TF Serving's REST API makes of a row-format ("instances") request body.

    Each instance maps input names to values, a ``{"b64": ...}`` value being base64 for raw bytes; the
    instances' values are stacked, per input name, into one batch tensor.
    """
    instances = json.loads(body)["instances"]

    def value(item):
        return base64.b64decode(item["b64"]) if isinstance(item, dict) and set(item) == {"b64"} else item

    return {name: tf.constant([value(instance[name]) for instance in instances]) for name in instances[0]}


def test_a_tf_serving_rest_request_gets_the_right_words(lines, served, expected):
    body = json.dumps({"instances": [{"image_bytes": {"b64": base64.b64encode(contents).decode("ascii")}}
                                     for contents in lines.contents[:10]]})
    outputs = numpy_outputs(served.signatures["serving_default"](**tf_serving_rest_inputs(body)))
    # Row-format responses need every output batch-major: one prediction object per instance.
    assert {len(value) for value in outputs.values()} == {10}
    predictions = [{name: np.asarray(value[i]).tolist() for name, value in outputs.items()} for i in range(10)]
    response = json.loads(json.dumps({"predictions": predictions}, default=bytes.decode))
    assert [p["words"] for p in response["predictions"]] == [w.decode() for w in expected["words"][:10]]


def test_batches_of_1_7_and_64_give_the_same_predictions(lines, expected, predictor, monkeypatch):
    for batch_size in (1, 7, 64):
        monkeypatch.setattr(predictor, "batch_size", batch_size)
        predictions = predictor.predict_bytes(lines.contents)
        assert [p.text for p in predictions] == [w.decode() for w in expected["words"]], batch_size
        np.testing.assert_allclose([p.scores for p in predictions], expected["scores"], rtol=1e-4, atol=1e-3)


def test_predictor_loads_a_job_directory_and_reads_paths_bytes_and_arrays(job, lines, expected, predictor):
    assert predictor.path == job.export
    assert predictor.batch_size == job.params.eval_batch_size  # the model's own setting by default
    # A folder of versions, as TF Serving is pointed at, means its newest version.
    best = os.path.join(job.job_dir, "export", "best")
    assert predict.find_saved_model(best) == os.path.join(best, max(predict.export_names(best), key=int))
    words = [w.decode() for w in expected["words"]]
    assert [p.text for p in predictor.predict_files(lines.paths)] == words
    assert [p.source for p in predictor.predict_files(lines.paths)] == lines.paths
    assert [p.text for p in predictor.predict_bytes(lines.contents)] == words
    # Arrays as an application holds them: gray [h, w], RGB and RGBA (OpenCV reads BGR).
    chosen = [i for i, path in enumerate(lines.paths) if path.endswith((".png", ".png_rgba", ".bmp"))][:9]
    arrays = []
    for i in chosen:
        image = cv2.imread(lines.paths[i], cv2.IMREAD_UNCHANGED)
        arrays.append(image if image.ndim == 2 else cv2.cvtColor(
            image, cv2.COLOR_BGRA2RGBA if image.shape[2] == 4 else cv2.COLOR_BGR2RGB))
    assert {array.ndim if array.ndim == 2 else array.shape[2] for array in arrays} == {2, 3, 4}
    assert [p.text for p in predictor.predict_arrays(arrays)] == [words[i] for i in chosen]


# ----------------------------------------------------------------------------------------------
# Robustness
# ----------------------------------------------------------------------------------------------
def test_undecodable_and_empty_bytes_are_invalid_argument_errors_and_one_pixel_is_read(lines, served, expected,
                                                                                      predictor):
    serve = served.signatures["serving_default"]
    for contents, reason in [(b"not an image", "Unknown image file format"), (b"", "Input is empty"),
                             (lines.contents[0][:100], "Invalid PNG data")]:
        with pytest.raises(tf.errors.InvalidArgumentError, match=reason):
            serve(image_bytes=tf.constant([contents]))
    one_pixel = [encode(np.zeros((1, 1), np.uint8), image_format) for image_format in ("png", "jpeg", "bmp", "gif")]
    words = serve(image_bytes=tf.constant(one_pixel))["words"].numpy()
    assert words.shape == (4,) and all(isinstance(w, bytes) for w in words)

    # The Predictor names the bad images and reads the others of their batch.
    predictions = predictor.predict_bytes([lines.contents[0], b"not an image", b"", one_pixel[0], lines.contents[1]])
    assert [p.error for p in predictions] == [
        None, "cannot decode image: Unknown image file format. One of JPEG, PNG, GIF, BMP required.",
        "cannot decode image: Input is empty.", None, None]
    assert [predictions[i].text.encode() for i in (0, 4)] == list(expected["words"][:2])


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


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="measures peak memory through Linux's /proc")
def test_huge_images_are_refused_and_large_ones_downscaled_within_bounded_memory(job, lines, expected, tmp_path):
    huge = np.full((20000, 20000), 255, np.uint8)  # 400 megapixels, white: a 0.4 MB PNG
    cv2.imwrite(str(tmp_path / "huge.png"), huge, [cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE])
    del huge
    line = digit_line(lines.labels[0])
    large = cv2.resize(line, None, fx=100, fy=100, interpolation=cv2.INTER_NEAREST)  # up to 27 megapixels
    assert large.size < MAX_IMAGE_PIXELS
    cv2.imwrite(str(tmp_path / "large.png"), large)
    # A peak only grows: measure the refusal before the large image.
    result = subprocess.run([sys.executable, "-c", BIG_IMAGES_SCRIPT, job.export, str(tmp_path / "huge.png"),
                             str(tmp_path / "large.png")], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    refused, read = json.loads(result.stdout.splitlines()[-1])
    print(f"\npeak RSS increase: 20000 x 20000 PNG {refused['peak_rss_increase_mb']:.0f} MB ({refused.get('error')}); "
          f"{large.shape[0]} x {large.shape[1]} PNG {read['peak_rss_increase_mb']:.0f} MB "
          f"(process peak {read['peak_rss_mb']:.0f} MB)")
    assert refused["error"] == (f"assertion failed: [image of 20000 x 20000 pixels: more than the "
                                f"{MAX_IMAGE_PIXELS} pixels tf_crnn decodes]")
    assert refused["peak_rss_increase_mb"] < 100
    assert read["words"] == expected["words"][0].decode()
    assert read["peak_rss_increase_mb"] < 40 * large.size / 2 ** 20  # bytes per pixel, well above the ~19 measured


# ----------------------------------------------------------------------------------------------
# python -m tf_crnn.predict
# ----------------------------------------------------------------------------------------------
def test_predict_cli_reports_cer_word_accuracy_worst_errors_and_unreadable_files(job, lines, expected, tmp_path,
                                                                                capsys):
    (tmp_path / "broken.png").write_bytes(b"not an image")
    rows = [f"{path};{label}" for path, label in zip(lines.paths, lines.labels)]
    rows += [f"{tmp_path / 'missing.png'};123", f"{tmp_path / 'broken.png'};456", f"{lines.paths[0]};{WRONG_LABEL}"]
    (tmp_path / "labelled.csv").write_text("\n".join(rows) + "\n")

    code = predict.main(["--model", job.job_dir, "--csv", str(tmp_path / "labelled.csv"),
                         "--output", str(tmp_path / "out.csv"), "--batch-size", "16"])
    out, err = capsys.readouterr()
    assert code == 1  # some images could not be read
    assert f"{tmp_path / 'missing.png'}: cannot read file" in err
    assert f"{tmp_path / 'broken.png'}: cannot decode image: Unknown image file format" in err

    alphabet = Alphabet.from_params(job.params)
    words = [w.decode() for w in expected["words"]]
    counts = metrics.ErrorCounts.of([alphabet.split(w) for w in words + [words[0]]],
                                    [alphabet.split(label) for label in lines.labels + [WRONG_LABEL]])
    assert (f"{len(words) + 1} labelled images: CER {counts.cer:.4f}, word accuracy {counts.word_accuracy:.4f}"
            in out)
    assert counts.word_accuracy >= 0.8  # the tiny model really reads the digits, in every format
    assert f"{lines.paths[0]}  {words[0]!r}  {WRONG_LABEL!r}" in out.split("worst predictions")[1]
    written = (tmp_path / "out.csv").read_text().splitlines()
    assert len(written) == len(rows)
    assert written[0].split(";")[:2] == [lines.paths[0], words[0]]
    assert written[-3].split(";") == [str(tmp_path / "missing.png"), "", "", "123"]


def test_predict_cli_on_image_files(job, lines, expected, capsys):
    assert predict.main(["--model", job.export, "--images", *lines.paths[:2]]) == 0
    printed = [line.split("\t") for line in capsys.readouterr().out.splitlines()]
    assert [(path, text.encode()) for path, text, _ in printed] == list(zip(lines.paths[:2], expected["words"][:2]))
