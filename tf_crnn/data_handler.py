"""Input pipeline: CSV rows -> validated samples -> ``tf.data`` batches; the one image preprocessing path.

What the model receives from :func:`input_fn`:

- ``features["images"]``: float32 [batch, H, W, C], pixels in [0, 1], each image resized to height H
  keeping its aspect ratio (squeezed to W if wider), right-padded with 0 to width W.
- ``features["images_widths"]``: int32 [batch], the width of each image before padding.
- ``features["filenames"]``: string [batch], the resolved image paths.
- ``labels``: int32 ``SparseTensor`` [batch, units] of alphabet codes.

Before any TensorFlow graph is built, every row is checked once (:func:`load_samples`): CSV syntax,
UTF-8, units known to the alphabet, image present and decodable, and the label short enough for the
CTC time steps of its image. Problems stop the run with the file, row and problem named, or with
``skip_bad_samples`` are skipped and counted. Nothing is dropped silently.
"""
from __future__ import annotations

import functools
import logging
import math
import os
import posixpath
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import tensorflow as tf

from tf_crnn.alphabet import Alphabet, resolve_alphabet
from tf_crnn.config import Params

logger = logging.getLogger("tf_crnn")

TRAIN = tf.estimator.ModeKeys.TRAIN
EVAL = tf.estimator.ModeKeys.EVAL
# How many example rows an error message lists per problem.
EXAMPLE_ROWS = 5


class DataError(ValueError):
    """A CSV or image problem, with the file, row and problem in the message."""


@dataclass(frozen=True)
class Row:
    """One CSV row: where it came from and what it says."""
    csv_file: str
    line_number: int  # 1-based line in the CSV file
    image_path: str  # resolved against the CSV's folder
    label: str

    @property
    def where(self) -> str:
        return f"{self.csv_file}, row {self.line_number}"


@dataclass
class Samples:
    """The usable rows of some CSV files, and an account of every row left out."""
    rows: List[Row]
    skipped: Dict[str, List[str]] = field(default_factory=dict)  # problem -> ["file, row N", ...]

    @property
    def skipped_count(self) -> int:
        return sum(len(v) for v in self.skipped.values())

    def report(self) -> str:
        lines = [f"{len(self.rows)} samples"]
        for problem, where in sorted(self.skipped.items()):
            shown = "; ".join(where[:EXAMPLE_ROWS]) + (" ..." if len(where) > EXAMPLE_ROWS else "")
            lines.append(f"  skipped {len(where)} ({problem}): {shown}")
        return "\n".join(lines)


# ----------------------------------------------------------------------------------------------
# CSV reading
# ----------------------------------------------------------------------------------------------
def resolve_image_path(csv_file: str, image_path: str) -> str:
    """``image_path`` as written in ``csv_file``, made absolute against the CSV's folder (any gfile scheme)."""
    if "://" in image_path or os.path.isabs(image_path):
        return image_path
    folder = posixpath.dirname(csv_file) if "://" in csv_file else os.path.dirname(os.path.abspath(csv_file))
    return posixpath.join(folder, image_path) if "://" in csv_file else os.path.join(folder, image_path)


def read_csv_rows(csv_file: str, delimiter: str, problems: Optional[Dict[str, List[str]]] = None,
                  labels_optional: bool = False) -> List[Row]:
    """The rows of one CSV file.

    A malformed row raises :class:`DataError`, or, when ``problems`` is given, is recorded there under
    its problem and left out. Blank lines are not rows. With ``labels_optional`` (prediction), a row
    may be just an image path; its label is then "".
    """
    if not tf.io.gfile.exists(csv_file):
        raise DataError(f"{csv_file}: CSV file not found")
    with tf.io.gfile.GFile(csv_file, "rb") as f:
        content = f.read()
    rows = []
    for number, raw in enumerate(content.split(b"\n"), start=1):
        raw = raw.rstrip(b"\r")
        if not raw.strip():
            continue
        problem = None
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as error:
            problem = f"not valid UTF-8 (byte {error.start})"
        else:
            if number == 1 and line.startswith("\ufeff"):
                line = line[1:]
            fields = line.split(delimiter)
            if labels_optional and len(fields) == 1:
                fields.append("")
            if len(fields) < 2:
                problem = f"no {delimiter!r} delimiter between image path and label"
            elif len(fields) > 2:
                problem = f"{len(fields)} fields where 2 are expected (image path{delimiter}label)"
            elif not fields[0].strip():
                problem = "empty image path"
            elif not fields[1] and not labels_optional:
                problem = "empty label"
        if problem:
            where = f"{csv_file}, row {number}"
            if problems is None:
                raise DataError(f"{where}: {problem}")
            problems.setdefault(problem.split(" (")[0], []).append(where)
            continue
        rows.append(Row(csv_file, number, resolve_image_path(csv_file, fields[0].strip()), fields[1]))
    return rows


def read_labels(csv_files: Sequence[str], params: Params) -> List[str]:
    """All labels of ``csv_files`` (bad rows skipped when ``params.skip_bad_samples``)."""
    problems: Optional[Dict[str, List[str]]] = {} if params.skip_bad_samples else None
    return [row.label for csv_file in csv_files for row in read_csv_rows(csv_file, params.csv_delimiter, problems)]


def with_resolved_alphabet(params: Params, train_csv_files: Sequence[str]) -> Params:
    """``params`` with ``alphabet_units`` filled in (from the training labels when ``alphabet='auto'``)."""
    if params.alphabet_units:
        return params
    needs_labels = params.alphabet == "auto" and not params.alphabet_string and not params.lookup_alphabet_file
    labels = read_labels(train_csv_files, params) if needs_labels else ()
    return params.with_overrides({"alphabet_units": resolve_alphabet(params, labels).units})


# ----------------------------------------------------------------------------------------------
# Sample validation
# ----------------------------------------------------------------------------------------------
def fitted_width(height: int, width: int, params: Params) -> int:
    """Width of an image of ``height`` x ``width`` after :func:`preprocess_image`, before padding.

    Integer arithmetic, so Python (here) and the graph (below) agree to the pixel.
    """
    target_height, target_width = params.input_shape
    return min(max((width * target_height + height // 2) // max(height, 1), 1), target_width)


def required_time_steps(codes: Sequence[int]) -> int:
    """CTC needs one step per unit plus a blank between each pair of equal adjacent units."""
    repeats = sum(1 for a, b in zip(codes, codes[1:]) if a == b)
    return len(codes) + repeats


def _image_sizes(paths: Sequence[str], channels: int) -> Dict[int, Tuple[int, int]]:
    """{index: (height, width)} for every path that reads and decodes; failing indices are absent.

    Decodes with the very ops training uses, in parallel, in a graph of its own so that it also
    works when called while the Estimator builds its graph.
    """
    def size_of(index, path):
        image = decode_image(tf.io.read_file(path), channels)
        return index, tf.shape(image)[0], tf.shape(image)[1]

    sizes = {}
    with tf.Graph().as_default():
        dataset = (tf.data.Dataset.from_tensor_slices((tf.range(len(paths)), tf.constant(list(paths), tf.string)))
                   .map(size_of, num_parallel_calls=tf.data.AUTOTUNE, deterministic=False)
                   .ignore_errors()
                   .batch(1024))
        next_batch = tf.compat.v1.data.make_one_shot_iterator(dataset).get_next()
        with tf.compat.v1.Session() as session:
            while True:
                try:
                    indices, heights, widths = session.run(next_batch)
                except tf.errors.OutOfRangeError:
                    break
                sizes.update({int(i): (int(h), int(w)) for i, h, w in zip(indices, heights, widths)})
    return sizes


def describe_image_problem(path: str, channels: int) -> str:
    """Why ``path`` cannot be used as an image, in words."""
    if not tf.io.gfile.exists(path):
        return "image file not found"
    if tf.io.gfile.stat(path).length == 0:
        return "image file is empty (0 bytes)"
    with tf.Graph().as_default(), tf.compat.v1.Session() as session:
        try:
            session.run(decode_image(tf.io.read_file(path), channels))
        except tf.errors.OpError as error:
            return f"not a readable PNG, JPEG, BMP or GIF image ({error.message.splitlines()[0]})"
    return "image could not be read"


def load_samples(csv_files: Sequence[str], params: Params) -> Samples:
    """Every usable row of ``csv_files``, checked as described in the module docstring."""
    if isinstance(csv_files, str):
        csv_files = [csv_files]
    if not csv_files:
        raise DataError("No CSV file given")
    # Cached (the Estimator calls input_fn again for every evaluation), keyed on the files' state too,
    # so a CSV rewritten in the same process is read afresh.
    versions = tuple(_file_version(csv_file) for csv_file in csv_files)
    return _load_samples_cached(tuple(csv_files), versions, params.to_json_string())


def _file_version(path: str) -> Tuple[int, int]:
    if not tf.io.gfile.exists(path):
        raise DataError(f"{path}: CSV file not found")
    stat = tf.io.gfile.stat(path)
    return stat.mtime_nsec, stat.length


@functools.lru_cache(maxsize=8)
def _load_samples_cached(csv_files: Tuple[str, ...], versions: Tuple[Tuple[int, int], ...], params_json: str) -> Samples:
    params = Params.from_json_string(params_json)
    alphabet = Alphabet.from_params(params)
    skip = params.skip_bad_samples
    skipped: Dict[str, List[str]] = {}
    rows: List[Row] = []
    for csv_file in csv_files:
        # Per file, so that an empty file is refused even after another file's rows were skipped.
        file_problems: Optional[Dict[str, List[str]]] = {} if skip else None
        file_rows = read_csv_rows(csv_file, params.csv_delimiter, file_problems)
        if not file_rows and not file_problems:
            raise DataError(f"{csv_file}: CSV file has no rows")
        for problem, where in (file_problems or {}).items():
            skipped.setdefault(problem, []).extend(where)
        rows.extend(file_rows)
    if not rows:
        raise DataError(f"{', '.join(csv_files)}: no usable rows\n" + Samples([], skipped).report())

    # Units not in the alphabet: all of them, with the first rows where each occurs, before training.
    unknown: Dict[str, List[str]] = {}
    for row in rows:
        for unit in dict.fromkeys(alphabet.unknown_units(row.label)):
            unknown.setdefault(unit, []).append(row.where)
    if unknown:
        if not skip:
            details = "\n".join(f"  {unit!r}: {'; '.join(where[:EXAMPLE_ROWS])}" + (" ..." if len(where) > EXAMPLE_ROWS else "")
                                for unit, where in sorted(unknown.items()))
            raise DataError(f"{len(unknown)} label unit(s) are not in the alphabet "
                            f"({len(alphabet)} units):\n{details}")
        bad = {w for where in unknown.values() for w in where}
        skipped["label unit not in the alphabet"] = [row.where for row in rows if row.where in bad]  # file order: the report lists the first
        rows = [row for row in rows if row.where not in bad]

    sizes = _image_sizes([row.image_path for row in rows], params.input_channels)
    kept = []
    for index, row in enumerate(rows):
        if index not in sizes:
            problem = describe_image_problem(row.image_path, params.input_channels)
            if not skip:
                raise DataError(f"{row.where}: {row.image_path}: {problem}")
            skipped.setdefault(problem.split(" (")[0], []).append(row.where)
            continue
        height, width = sizes[index]
        steps = params.time_steps(fitted_width(height, width, params))
        if required_time_steps(alphabet.encode(row.label)) > steps:
            # Not an error: text lines too long for the input width are expected in real data sets.
            skipped.setdefault("label too long for the CTC time steps of its image", []).append(
                f"{row.where} ({steps} steps)")
            continue
        kept.append(row)
    samples = Samples(kept, skipped)
    if not kept:
        raise DataError(f"{', '.join(csv_files)}: no usable rows\n" + samples.report())
    logger.info("%s: %s", ", ".join(csv_files), samples.report())
    return samples


# ----------------------------------------------------------------------------------------------
# The one preprocessing path (training, evaluation, serving)
# ----------------------------------------------------------------------------------------------
# The most pixels (height x width) decode_image accepts. Decoding and the conversion to gray take
# about 19 bytes per pixel, so without a bound one 20000 x 20000 upload costs a server 7 GB; at the
# bound an image costs 0.75 GB. A 600-dpi A4 page scan has 35 million pixels; a text line rarely 5.
MAX_IMAGE_PIXELS = 40_000_000


def decode_image(contents: tf.Tensor, channels: int) -> tf.Tensor:
    """Encoded PNG/JPEG/BMP/GIF bytes -> uint8 [h, w, channels] (first frame of a GIF).

    An image of more than ``MAX_IMAGE_PIXELS`` is refused with InvalidArgumentError before its pixels
    are decoded (its size is read from the file header).
    """
    height, width = encoded_image_size(contents)
    small_enough = tf.debugging.Assert(height * width <= MAX_IMAGE_PIXELS, [tf.strings.format(
        f"image of {{}} x {{}} pixels: more than the {MAX_IMAGE_PIXELS} pixels tf_crnn decodes", [height, width])])
    with tf.control_dependencies([small_enough]):
        image = tf.io.decode_image(contents, channels=3, expand_animations=False)
    return to_model_channels(image, channels)


def encoded_image_size(contents: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor]:
    """int64 (height, width) from the header of encoded PNG/JPEG/BMP/GIF bytes, without decoding them.

    (0, 0) for anything else: ``tf.io.decode_image`` then names the problem. The header fields are
    the ones TensorFlow's decoders read (for a GIF, the logical screen size).
    """
    padded = tf.strings.join([tf.strings.substr(contents, 0, 26), b"\0" * 26])
    header = tf.cast(tf.io.decode_raw(tf.strings.substr(padded, 0, 26), tf.uint8), tf.int64)

    def number(start, size, little_endian=False):
        value = tf.constant(0, tf.int64)
        for i in reversed(range(size)) if little_endian else range(size):
            value = value * 256 + header[start + i]
        return value

    def starts_with(magic):
        # tf.equal, not ==: in a graph (the Estimator's, a SavedModel's) Tensor == compares identity.
        return tf.reduce_all(tf.equal(header[:len(magic)], list(magic)))

    def int32(value):
        return tf.where(value >= 2 ** 31, value - 2 ** 32, value)

    size = tf.cond(starts_with(b"\xff\xd8"), lambda: tf.cast(tf.io.extract_jpeg_shape(contents)[:2], tf.int64),
                   lambda: tf.zeros([2], tf.int64))
    for magic, height, width in [
            (b"\x89PNG", number(20, 4), number(16, 4)),
            (b"GIF8", number(8, 2, little_endian=True), number(6, 2, little_endian=True)),
            # BMP sizes are signed: a negative height means rows stored top-down.
            (b"BM", tf.abs(int32(number(22, 4, little_endian=True))),
             tf.abs(int32(number(18, 4, little_endian=True))))]:
        size = tf.where(starts_with(magic), tf.stack([height, width]), size)
    return size[0], size[1]


def to_model_channels(image: tf.Tensor, channels: int) -> tf.Tensor:
    """uint8 [h, w] or [h, w, 1|3|4] -> [h, w, channels]: alpha dropped, gray via the RGB conversion."""
    image = tf.convert_to_tensor(image, tf.uint8)
    if image.shape.rank == 2:
        image = image[..., tf.newaxis]
    if image.shape[-1] == 4:
        image = image[..., :3]
    if image.shape[-1] == 1:
        image = tf.image.grayscale_to_rgb(image)
    return tf.image.rgb_to_grayscale(image) if channels == 1 else image


def preprocess_image(image: tf.Tensor, params: Params, training: bool = False) -> Tuple[tf.Tensor, tf.Tensor]:
    """uint8 [h, w, C] -> (float32 [H, W, C], pixels / 255 in [0, 1]; its width before padding).

    Resize to height H keeping the aspect ratio (squeezed to W if wider), augment when ``training``
    and ``params.data_augmentation``, right-pad with 0 to width W. The resize reads the uint8 pixels
    directly, so a huge input never exists as a float copy.
    """
    target_height, target_width = params.input_shape
    height, width = tf.shape(image)[0], tf.shape(image)[1]
    new_width = tf.clip_by_value((width * target_height + height // 2) // tf.maximum(height, 1), 1, target_width)
    # A multiply, not / 255: graph optimizers rewrite the division so, and serving must match training bit for bit.
    image = tf.image.resize(image, [target_height, new_width], method="bilinear", antialias=True) * (1 / 255)
    if training and params.data_augmentation:
        image = augment(image, params)
    image = tf.clip_by_value(image, 0.0, 1.0)
    image = tf.pad(image, [[0, 0], [0, target_width - new_width], [0, 0]])
    image.set_shape([target_height, target_width, params.input_channels])
    return image, new_width


def augment(image: tf.Tensor, params: Params) -> tf.Tensor:
    """Random geometric and photometric changes of one [H, w, C] image, drawn per image with tf.random.

    The output keeps the input size, so the true width (and the CTC time steps) do not change.
    """
    image = _random_geometry(image, params)
    if params.aug_brightness_max:
        image += tf.random.uniform([], -params.aug_brightness_max, params.aug_brightness_max)
    if params.aug_contrast_max:
        mean = tf.reduce_mean(image)
        image = (image - mean) * tf.random.uniform([], 1 - params.aug_contrast_max, 1 + params.aug_contrast_max) + mean
    if params.aug_blur_probability:
        blurred = tf.nn.avg_pool2d(image[tf.newaxis], ksize=3, strides=1, padding="SAME")[0]
        image = tf.where(tf.random.uniform([]) < params.aug_blur_probability, blurred, image)
    if params.aug_noise_stddev_max:
        image += tf.random.normal(tf.shape(image)) * tf.random.uniform([], 0, params.aug_noise_stddev_max)
    return image


def _random_geometry(image: tf.Tensor, params: Params) -> tf.Tensor:
    """Rotation, shear and random margins as one projective warp; new area filled with the border colour."""
    if not (params.aug_rotation_max_degrees or params.aug_shear_max or params.aug_padding_max):
        return image
    height = tf.cast(tf.shape(image)[0], tf.float32)
    width = tf.cast(tf.shape(image)[1], tf.float32)
    angle = tf.random.uniform([], -1.0, 1.0) * params.aug_rotation_max_degrees * math.pi / 180
    shear = tf.random.uniform([], -params.aug_shear_max, params.aug_shear_max)
    left, right, top, bottom = tf.unstack(tf.random.uniform([4], 0, params.aug_padding_max) * height)
    # Output -> input mapping: the margins are added around the image, which is then scaled back to its
    # size (so the content keeps a positive size however large the margins); then rotate and shear.
    scale_x, scale_y = (width + left + right) / width, (height + top + bottom) / height
    margins = tf.stack([[scale_x, 0, -left], [0, scale_y, -top], [0, 0, 1]])
    cx, cy = width / 2, height / 2
    cos, sin = tf.cos(angle), tf.sin(angle)
    rotate_shear = tf.stack([[cos, -sin + shear, cx - cos * cx - (-sin + shear) * cy],
                             [sin, cos, cy - sin * cx - cos * cy],
                             [0.0, 0.0, 1.0]])
    matrix = tf.reshape(tf.matmul(rotate_shear, margins), [9])[:8]
    border = tf.concat([image[0], image[-1], image[:, 0], image[:, -1]], axis=0)
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=image[tf.newaxis], transforms=matrix[tf.newaxis], output_shape=tf.shape(image)[:2],
        fill_value=tf.reduce_mean(border), interpolation="BILINEAR", fill_mode="CONSTANT")[0]


# ----------------------------------------------------------------------------------------------
# input_fn
# ----------------------------------------------------------------------------------------------
def input_fn(csv_files: Sequence[str], params: Params, mode: str, batch_size: Optional[int] = None,
             num_epochs: Optional[int] = None,
             input_context: Optional[tf.distribute.InputContext] = None) -> tf.data.Dataset:
    """A dataset of (features, labels) batches for ``mode`` (see the module docstring).

    TRAIN shuffles (afresh every epoch), augments and repeats ``num_epochs`` times (forever when None);
    EVAL reads each sample once, in order. ``batch_size`` is global and defaults to the mode's Params
    batch size. Under a distribution strategy the Estimator passes ``input_context``: each input
    pipeline then reads its own shard and batches ``batch_size / replicas`` images, because the
    Estimator expects per-replica batches.
    """
    samples = load_samples(csv_files, params)
    alphabet = Alphabet.from_params(params)
    training = mode == TRAIN
    if batch_size is None:
        batch_size = params.train_batch_size if training else params.eval_batch_size
    paths = [row.image_path for row in samples.rows]
    labels = [row.label for row in samples.rows]

    dataset = tf.data.Dataset.from_tensor_slices((paths, labels))
    if input_context is not None:
        batch_size = input_context.get_per_replica_batch_size(batch_size)
        dataset = dataset.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
    if training:
        dataset = dataset.shuffle(min(len(paths), params.shuffle_buffer_size), seed=params.random_seed,
                                  reshuffle_each_iteration=True)
        dataset = dataset.repeat(num_epochs)

    def load(path, label):
        image, width = preprocess_image(decode_image(tf.io.read_file(path), params.input_channels), params, training)
        codes = alphabet.tf_encode(label[tf.newaxis])[0]
        return {"images": image, "images_widths": width, "filenames": path}, codes

    dataset = dataset.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=not training)
    if params.skip_bad_samples:
        # Images were checked in load_samples; this only guards against files changed since then.
        dataset = dataset.ignore_errors(log_warning=True)
    dataset = dataset.padded_batch(batch_size, padding_values=({"images": 0.0, "images_widths": 0, "filenames": ""}, -1),
                                   drop_remainder=training)
    return dataset.map(lambda features, codes: (features, dense_codes_to_sparse(codes))).prefetch(tf.data.AUTOTUNE)


def dense_codes_to_sparse(codes: tf.Tensor) -> tf.SparseTensor:
    """[batch, units] codes padded with -1 -> SparseTensor (0 is a real code, so not from_dense)."""
    indices = tf.where(codes >= 0)
    return tf.SparseTensor(indices, tf.gather_nd(codes, indices), tf.shape(codes, out_type=tf.int64))


# ----------------------------------------------------------------------------------------------
# Serving
# ----------------------------------------------------------------------------------------------
@dataclass
class ServingInputs:
    """The graph a SavedModel serves from: three ways in, one set of features out.

    ``filenames`` are read into ``image_bytes``, which are decoded and preprocessed into ``images``
    and ``images_widths``; each is a placeholder with a default, so feeding any of them skips what
    comes before it. Every way in goes through :func:`preprocess_image`, like training.
    """
    filenames: tf.Tensor
    image_bytes: tf.Tensor
    images: tf.Tensor
    images_widths: tf.Tensor

    @property
    def features(self) -> Dict[str, tf.Tensor]:
        return {"images": self.images, "images_widths": self.images_widths,
                "filenames": tf.fill(tf.shape(self.images_widths), "")}


def serving_inputs(params: Params) -> ServingInputs:
    """Builds :class:`ServingInputs` in the default graph."""
    filenames = tf.compat.v1.placeholder_with_default(tf.constant([], tf.string), [None], name="filenames")
    contents = tf.map_fn(tf.io.read_file, filenames, fn_output_signature=tf.string)
    image_bytes = tf.compat.v1.placeholder_with_default(contents, [None], name="image_bytes")

    def load(encoded):
        return preprocess_image(decode_image(encoded, params.input_channels), params)

    images, widths = tf.map_fn(load, image_bytes, fn_output_signature=(tf.float32, tf.int32))
    height, width = params.input_shape
    images = tf.compat.v1.placeholder_with_default(images, [None, height, width, params.input_channels], name="images")
    widths = tf.compat.v1.placeholder_with_default(widths, [None], name="images_widths")
    return ServingInputs(filenames, image_bytes, images, widths)
