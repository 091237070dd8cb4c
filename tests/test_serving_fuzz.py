"""A served model against hostile input: over a thousand random and broken images through the
``serving_default`` signature, wrong tensors through the ``images`` signature, and broken files
through ``python -m tf_crnn.predict``.

Of every input we require: the process survives, memory stays bounded, and a bad input fails with
an InvalidArgumentError whose message names the check it failed (one of :data:`REASONS`); an input
that decodes gets its words. A served call is all or nothing (one bad image fails its whole batch,
as TF Serving expects of a request), so broken images go one per call, each to its own error, and
batches are sent where the batch itself is under test. Everything is drawn from a generator seeded
with :data:`SEED`, so a failure reproduces.

The model is a tiny untrained one, exported once for the module: its input checks are what is
fuzzed, not its accuracy.
"""

import os
import re
import struct

import numpy as np
import pytest
import tensorflow as tf
from helpers import FORMATS, digit_line, encode, tiny_params

from tf_crnn import data_handler, export_model, model, predict
from tf_crnn.images import MAX_GIF_BLOCKS, MAX_IMAGE_PIXELS, max_serving_batch
from tf_crnn.predict import error_reason

SEED = 20240611
MUTATED_PER_KIND = 120
# What the checks and the decoders say of a bad input: each failure must match one of these.
REASONS = [
    # serving_inputs' own checks
    r"^assertion failed: \[image_bytes\[\d+\]: empty \(0 bytes\)\]$",
    r"^assertion failed: \[image_bytes\[\d+\]: image of \d+ x \d+ pixels: more than the "
    rf"{MAX_IMAGE_PIXELS} pixels tf_crnn decodes\]$",
    r"^assertion failed: \[image_bytes\[\d+\]: GIF of \d+ frames, \d+ pixels in all: more than the "
    rf"{MAX_IMAGE_PIXELS} pixels tf_crnn decodes\]$",
    rf"^assertion failed: \[image_bytes\[\d+\]: GIF of more than {MAX_GIF_BLOCKS} blocks",
    r"^assertion failed: \[(image_bytes|images): a batch of \d+ images; the model takes 1 to",
    r"^assertion failed: \[images_widths: \d+ widths for \d+ images\]$",
    r"^assertion failed: \[images_widths: each must be in \[1, \d+\]",
    r"^assertion failed: \[images: pixels must be in \[0, 1\]",
    r"^Shape of tensor images(_widths)? \[[\d,]*\] is not compatible with expected shape",
    # TensorFlow's runtime, for a tensor of the wrong dtype
    r"was expected to be a \w+ tensor but is a \w+ tensor",
    # TensorFlow's decoders
    r"^Unknown image file format\. One of JPEG, PNG, GIF, BMP required\.$",
    r"^Invalid PNG data, size \d+$",
    r"^Invalid PNG\. Failed to initialize decoder\.$",
    r"^Invalid JPEG data, size \d+$",
    r"^jpeg::Uncompress failed\. Invalid JPEG data or crop window\.$",
    r"^Invalid GIF data \(size \d+\), failed to (open|slurp) gif file: ",
    r"^Input size should match \(header_size \+ row_size \* abs_height\) but they differ by -?\d+$",
    r"^Number of channels inherent in the image must be 1, 3 or 4, was -?\d+$",
    r"^Incomplete bmp content, requires at least \d+ bytes",
    r"^Width must be positive$",
]


def known_reason(reason: str) -> bool:
    return any(re.search(pattern, reason) for pattern in REASONS)


def memory_mb(field: str) -> float:
    """``VmRSS`` (resident now) or ``VmHWM`` (peak resident) of this process, in MB."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":")) / 1024


def reset_peak_memory() -> None:
    """Starts ``VmHWM`` afresh from the current resident size (Linux 4.0 and later)."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


pytestmark = pytest.mark.skipif(
    not os.path.exists("/proc/self/clear_refs"), reason="measures memory through Linux's /proc"
)


@pytest.fixture(scope="module")
def export(tmp_path_factory) -> str:
    """A tiny untrained model's export (random weights from a checkpoint written here)."""
    root = tmp_path_factory.mktemp("fuzzed_model")
    params = tiny_params()
    with tf.Graph().as_default():
        inputs = data_handler.serving_inputs(params)
        model.crnn_fn(inputs.features, None, tf.estimator.ModeKeys.PREDICT, params, config=None)
        with tf.compat.v1.Session() as session:
            session.run(tf.compat.v1.global_variables_initializer())
            checkpoint = tf.compat.v1.train.Saver().save(session, str(root / "model.ckpt"))
    return export_model.export_saved_model(checkpoint, params, str(root / "export"))


@pytest.fixture(scope="module")
def signatures(export):
    return tf.saved_model.load(export).signatures


def call(signature, **inputs) -> str:
    """The outcome of a call: "ok" when it gives one word per image, else the reason its
    InvalidArgumentError gives (any other exception propagates)."""
    try:
        outputs = signature(**inputs)
    except tf.errors.InvalidArgumentError as error:
        return error_reason(error)
    batch = len(next(iter(inputs.values())))
    assert outputs["words"].shape == (batch,)
    return "ok"


# --- images that make a decoder allocate much from a few bytes -----------------------------------
def gif(frames, screen=(1, 1), comments=0) -> bytes:
    """A GIF of ``frames`` (width, height) on a ``screen`` (width, height), each frame LZW-coded
    in the fewest codes, so that a 20000 x 20000 frame takes 300 KB; ``comments`` empty comment
    extensions come first."""
    palette = bytes(level for gray in range(256) for level in (gray,) * 3)
    body = b"!\xfe\x01X\x00" * comments
    coded = {}
    for width, height in frames:
        if (width, height) not in coded:
            coded[width, height] = _sub_blocks(_lzw_codes(width * height))
        descriptor = struct.pack("<HHHHB", 0, 0, width, height, 0)
        body += b"," + descriptor + b"\x08" + coded[width, height]
    header = b"GIF89a" + struct.pack("<HHBBB", *screen, 0xF7, 0, 0)
    return header + palette + body + b";"


def _lzw_codes(pixels: int) -> bytes:
    """LZW data of at least ``pixels`` black pixels: after each clear code, one pixel, then every
    code the one the table is about to add (the previous string and its first pixel), each one
    pixel longer than the one before. The code width follows the decoder's: 9 bits after a clear
    code, one more each time the table reaches the next power of two, 12 at most; the table is
    cleared when full."""
    codes, covered = [], 0
    while covered < pixels:
        codes += [256, 0]  # clear, then one black pixel
        covered += 1
        for code in range(258, 4096):
            if covered >= pixels:
                break
            codes.append(code)  # the previous string and its first pixel: one pixel longer
            covered += code - 256
    codes.append(257)  # end of information
    packed, bits, count, width, next_code = bytearray(), 0, 0, 9, 258
    for index, code in enumerate(codes):
        bits |= code << count
        count += width
        while count >= 8:
            packed.append(bits & 255)
            bits, count = bits >> 8, count - 8
        if code == 256:
            width, next_code = 9, 258
        elif codes[index - 1] != 256:
            next_code += 1
            if next_code == 1 << width and width < 12:
                width += 1
    if count:
        packed.append(bits)
    return bytes(packed)


def _sub_blocks(data: bytes) -> bytes:
    """``data`` as GIF sub-blocks: a length byte before each 255 bytes, and a zero length last."""
    pieces = [data[i : i + 255] for i in range(0, len(data), 255)]
    return b"".join(bytes([len(piece)]) + piece for piece in pieces) + b"\0"


def png_declaring(height: int, width: int) -> bytes:
    """A real PNG whose header declares ``height`` x ``width``."""
    png = encode(digit_line("12"), "png")
    return png[:16] + struct.pack(">II", width, height) + png[24:]


def jpeg_declaring(height: int, width: int) -> bytes:
    """A real JPEG whose frame header (SOF0) declares ``height`` x ``width``."""
    jpeg = encode(digit_line("12"), "jpeg")
    sof = jpeg.index(b"\xff\xc0")
    return jpeg[: sof + 5] + struct.pack(">HH", height, width) + jpeg[sof + 9 :]


def bmp_declaring(height: int, width: int) -> bytes:
    """A real BMP whose header declares ``height`` x ``width`` (signed)."""
    bmp = encode(digit_line("12"), "bmp")
    return bmp[:18] + struct.pack("<ii", width, height) + bmp[26:]


@pytest.fixture(scope="module")
def special_images() -> dict[str, tuple[bytes, str | None]]:
    """{what: (bytes, the reason it must fail with, or None when it decodes)}."""
    return {
        "empty": (b"", r"image_bytes\[0\]: empty"),
        "text": (b"not an image", "Unknown image file format"),
        "PNG signature only": (b"\x89PNG\r\n\x1a\n", "Invalid PNG"),
        "GIF signature only": (b"GIF89a", "Invalid GIF data"),
        "BMP signature only": (b"BM", "Incomplete bmp"),
        "JPEG start only": (b"\xff\xd8\xff", "Invalid JPEG data"),
        "PNG of 100000 x 100000": (png_declaring(10**5, 10**5), "image of 100000 x 100000 pixels"),
        "PNG of 2^32-1 x 1": (png_declaring(2**32 - 1, 1), "image of 4294967295 x 1 pixels"),
        "JPEG of 60000 x 60000": (jpeg_declaring(60000, 60000), "image of 60000 x 60000 pixels"),
        "JPEG of 65535 x 65535": (jpeg_declaring(65535, 65535), "Invalid JPEG data"),  # libjpeg's
        "BMP of 2^31 x 2^31": (
            bmp_declaring(-(2**31), -(2**31)),
            "image of 2147483648 x 2147483648",
        ),
        "BMP of 0 x 0": (bmp_declaring(0, 0), "Width must be positive"),
        "GIF frame of 20000 x 20000 on a 1 x 1 screen": (gif([(20000, 20000)]), "20000 x 20000"),
        "GIF frames of 1 x 30000 and 30000 x 1": (gif([(1, 30000), (30000, 1)]), "30000 x 30000"),
        "GIF of 1200 frames": (gif([(200, 200)] * 1200, screen=(200, 200)), "GIF of 1200 frames"),
        "GIF of 4000 comments": (gif([(8, 8)], comments=4000), "GIF of more than 10000 blocks"),
        "GIF screen of 65535 x 65535, frame 8 x 8": (gif([(8, 8)], screen=(65535, 65535)), None),
        "GIF of 5 frames": (gif([(40, 20)] * 5), None),
    }


def test_images_that_declare_absurd_sizes_are_refused_before_they_cost_memory(
    signatures, special_images
):
    serve = signatures["serving_default"]
    call(serve, image_bytes=tf.constant([encode(digit_line("1"), "gif")]))  # first-call costs
    for what, (contents, expected) in special_images.items():
        reset_peak_memory()
        before = memory_mb("VmRSS")
        outcome = call(serve, image_bytes=tf.constant([contents]))
        peak_increase = memory_mb("VmHWM") - before
        if expected is None:
            assert outcome == "ok", what
        else:
            assert re.search(expected, outcome), (what, outcome)
            assert known_reason(outcome), (what, outcome)
        # Without the GIF frame bound, the 300 KB GIF of a 20000 x 20000 frame costs 2 GB.
        assert peak_increase < 100, (what, peak_increase)


# --- a thousand broken images --------------------------------------------------------------------
def size_fields(contents: bytes, rng) -> bytes:
    """``contents`` with its declared height or width set to a random, often absurd, value."""
    value = int(
        rng.choice([0, 1, 2**15, 2**16 - 1, 2**31 - 1, 2**31, 2**32 - 1, rng.integers(2**32)])
    )
    if contents.startswith(b"\x89PNG"):
        offset, field = 16 + 4 * int(rng.integers(2)), struct.pack(">I", value)
    elif contents.startswith(b"BM"):
        offset, field = 18 + 4 * int(rng.integers(2)), struct.pack("<I", value)
    elif contents.startswith(b"GIF"):
        frame = contents.index(b",", 13 + 768)  # after the screen descriptor and its palette
        offset = int(rng.choice([6, 8, frame + 5, frame + 7]))
        field = struct.pack("<H", value % 2**16)
    else:
        offset = contents.index(b"\xff\xc0") + 5 + 2 * int(rng.integers(2))
        field = struct.pack(">H", value % 2**16)
    return contents[:offset] + field + contents[offset + len(field) :]


def mutated_images(rng) -> list[tuple[str, bytes]]:
    """(kind, bytes) of :data:`MUTATED_PER_KIND` broken images of each kind, from valid images of
    every format and colour mode."""
    originals = [encode(digit_line(str(rng.integers(10**5))), kind) for kind in FORMATS]

    def pick():
        return originals[rng.integers(len(originals))]

    def position(contents):
        return int(rng.integers(len(contents)))

    def flip_bits(contents):
        data = bytearray(contents)
        for _ in range(rng.integers(1, 20)):
            data[position(data)] ^= 1 << rng.integers(8)
        return bytes(data)

    def header_bytes(contents):
        data = bytearray(contents)
        for _ in range(rng.integers(1, 5)):
            data[rng.integers(64)] = rng.integers(256)
        return bytes(data)

    def inserted_bytes(contents):
        at = position(contents)
        return contents[:at] + rng.bytes(rng.integers(1, 64)) + contents[at:]

    def deleted_span(contents):
        at = position(contents)
        return contents[:at] + contents[at + rng.integers(1, 200) :]

    def random_after_the_header(contents):
        return contents[: rng.integers(8, 40)] + rng.bytes(rng.integers(300))

    def spliced_formats(contents):
        other = pick()
        return contents[: position(contents)] + other[position(other) :]

    kinds = {
        "truncated": lambda contents: contents[: position(contents)],
        "bit flips": flip_bits,
        "header bytes": header_bytes,
        "inserted bytes": inserted_bytes,
        "deleted span": deleted_span,
        "random after the header": random_after_the_header,
        "spliced formats": spliced_formats,
        "random bytes": lambda contents: rng.bytes(rng.integers(2000)),
        "size fields": lambda contents: size_fields(contents, rng),
    }
    return [
        (kind, mutate(pick())) for kind, mutate in kinds.items() for _ in range(MUTATED_PER_KIND)
    ]


def test_a_thousand_broken_images_each_fail_with_a_clear_error_in_bounded_memory(signatures):
    serve = signatures["serving_default"]
    images = mutated_images(np.random.default_rng(SEED))
    assert len(images) >= 1000
    call(serve, image_bytes=tf.constant([images[0][1]]))  # first-call costs
    reset_peak_memory()
    before = memory_mb("VmRSS")
    outcomes, unclear = {}, []
    for index, (kind, contents) in enumerate(images):
        outcome = call(serve, image_bytes=tf.constant([contents]))
        if outcome != "ok" and not known_reason(outcome):
            unclear.append((index, kind, outcome))
        counts = outcomes.setdefault(kind, {})
        counts[outcome] = counts.get(outcome, 0) + 1
    grown, peak = memory_mb("VmRSS") - before, memory_mb("VmHWM") - before
    print(f"\n{len(images)} broken images: RSS grew {grown:.0f} MB, peak +{peak:.0f} MB")
    for kind, counts in outcomes.items():
        decoded = counts.get("ok", 0)
        print(f"  {kind}: {decoded} decoded, {sum(counts.values()) - decoded} refused")
    assert not unclear, unclear[:10]
    # Most of each kind are refused (some images with flipped bits or bytes still decode).
    for kind, counts in outcomes.items():
        assert counts.get("ok", 0) <= MUTATED_PER_KIND // 2, kind
    assert grown < 200
    # A declared size within MAX_IMAGE_PIXELS may be allocated before the data is found short:
    # 0.75 GB at most.
    assert peak < 1000


def test_one_bad_image_fails_its_batch_naming_it_and_batch_sizes_are_bounded(export, signatures):
    serve = signatures["serving_default"]
    limit = max_serving_batch(tiny_params())
    good, tiny = encode(digit_line("42"), "png"), encode(np.zeros((1, 1), np.uint8), "png")
    outcome = call(serve, image_bytes=tf.constant([good, good, b"", good]))
    assert outcome == "assertion failed: [image_bytes[2]: empty (0 bytes)]"
    outcome = call(serve, image_bytes=tf.constant([good, png_declaring(10**5, 10**5)]))
    assert outcome.startswith("assertion failed: [image_bytes[1]: image of 100000 x 100000 pixels")

    reset_peak_memory()
    before = memory_mb("VmRSS")
    assert call(serve, image_bytes=tf.constant([tiny] * limit)) == "ok"
    for size in (0, limit + 1, 100_000):
        expected = (
            f"assertion failed: [image_bytes: a batch of {size} images; the model takes 1 to "
            f"{limit}]"
        )
        assert call(serve, image_bytes=tf.constant([tiny] * size, tf.string)) == expected
    peak = memory_mb("VmHWM") - before
    print(f"\nbatch of {limit} tiny images: peak +{peak:.0f} MB")
    assert peak < 500


# --- wrong tensors on the images signature -------------------------------------------------------
def random_tensors(rng, height: int, width: int, limit: int):
    """(images, widths, whether they are valid) of a random mix of right and wrong tensors."""
    batch = (
        int(rng.choice([0, 1, 2, 7, limit + 1])) if rng.random() < 0.3 else int(rng.integers(1, 5))
    )
    shape = [batch, height, width, 1]
    if rng.random() < 0.3:
        axis = rng.integers(4)
        shape[axis] = max(0, shape[axis] + int(rng.choice([-1, 1, 32])))
    if rng.random() < 0.1:
        shape = shape[: rng.integers(4)] if rng.random() < 0.5 else shape + [1]
    pixels = rng.random(shape, np.float32)
    if rng.random() < 0.2 and pixels.size:
        pixels.flat[rng.integers(pixels.size)] = rng.choice([np.nan, np.inf, -0.5, 1.5, 255.0])
    widths = rng.integers(1, width + 1, shape[0] if shape else 1).astype(np.int32)
    if rng.random() < 0.2:
        widths = np.append(widths, width)  # one width too many
    if rng.random() < 0.2 and len(widths):
        widths[rng.integers(len(widths))] = rng.choice([0, -1, width + 1, 2**31 - 1])
    dtypes = [(tf.float32, tf.int32)] * 8 + [
        (tf.float64, tf.int32),
        (tf.uint8, tf.int32),
        (tf.float32, tf.int64),
    ]
    pixel_dtype, width_dtype = dtypes[rng.integers(len(dtypes))]
    valid = (
        shape[1:] == [height, width, 1]
        and 1 <= shape[0] <= limit
        and len(widths) == shape[0]
        and bool(np.all((widths >= 1) & (widths <= width)))
        and bool(np.all((pixels >= 0) & (pixels <= 1)))
        and (pixel_dtype, width_dtype) == (tf.float32, tf.int32)
    )
    images = (
        tf.cast(pixels, pixel_dtype)
        if pixel_dtype != tf.uint8
        else tf.constant(np.nan_to_num(pixels).astype(np.uint8))
    )
    return images, tf.constant(widths, width_dtype), valid


def test_wrong_tensors_on_the_images_signature_fail_with_the_check_they_break(signatures):
    images_signature = signatures["images"]
    params = tiny_params()
    height, width = params.input_shape
    limit = max_serving_batch(params)
    ones = np.ones([2, height, width, 1], np.float32)
    named = [
        # Each crashed the process, failed deep in the network, or gave words, before the checks.
        (ones[0], [7], r"Shape of tensor images \[32,128,1\] is not compatible"),
        (ones[:, :, :64], [7, 7], r"Shape of tensor images \[2,32,64,1\]"),
        (np.ones([2, 64, width, 1], np.float32), [7, 7], r"Shape of tensor images \[2,64,128,1\]"),
        (ones[:0], [], r"images: a batch of 0 images"),
        (np.zeros([limit + 1, height, width, 1], np.float32), [7] * (limit + 1), "1025 images"),
        (ones, [7, 7, 7], r"images_widths: 3 widths for 2 images"),
        (ones, [7, width + 1], r"images_widths: each must be in \[1, 128\]"),
        (ones, [-5, 0], r"images_widths: each must be in \[1, 128\]"),
        (ones * 255, [7, 7], r"images: pixels must be in \[0, 1\]"),
        (ones * np.nan, [7, 7], r"images: pixels must be in \[0, 1\].*got nan to nan"),
        (ones.astype(np.float64), [7, 7], r"expected to be a float tensor but is a double tensor"),
    ]
    for images, widths, expected in named:
        outcome = call(
            images_signature,
            images=tf.constant(images),
            images_widths=tf.constant(widths, tf.int32),
        )
        assert re.search(expected, outcome) and known_reason(outcome), (expected, outcome)

    rng = np.random.default_rng(SEED)
    for index in range(200):
        images, widths, valid = random_tensors(rng, height, width, limit)
        outcome = call(images_signature, images=images, images_widths=widths)
        assert (outcome == "ok") == valid, (index, images.shape, images.dtype, widths, outcome)
        assert valid or known_reason(outcome), (index, outcome)


# --- python -m tf_crnn.predict -------------------------------------------------------------------
def test_the_predict_cli_names_each_broken_file_and_reads_the_rest(
    export, special_images, tmp_path, capsys
):
    files = {
        "good.png": encode(digit_line("123"), "png"),
        "truncated.png": encode(digit_line("123"), "png")[:60],
        "empty.png": b"",
        "huge.png": special_images["PNG of 100000 x 100000"][0],
        "bomb.gif": special_images["GIF frame of 20000 x 20000 on a 1 x 1 screen"][0],
        "text.jpg": b"just text",
        "wide.bmp": bmp_declaring(7, -(2**31)),
    }
    for name, contents in files.items():
        (tmp_path / name).write_bytes(contents)
    rows = [f"{name};123" for name in files] + ["missing.png;123"]
    (tmp_path / "lines.csv").write_text("\n".join(rows) + "\n")
    assert predict.main(["--model", export, "--csv", str(tmp_path / "lines.csv")]) == 1
    out, err = capsys.readouterr()
    assert "1 labelled images: CER" in out  # the good one
    problems = dict(
        line.split(": ", 1) for line in err.splitlines() if line.startswith(str(tmp_path))
    )
    names = {os.path.basename(path): problem for path, problem in problems.items()}
    assert sorted(names) == sorted([*files, "missing.png"][1:])
    assert names["missing.png"].startswith("cannot read file")
    for name, problem in names.items():
        if name != "missing.png":
            # One image per call, named by its path: the graph's own reason, unwrapped.
            reason = problem.removeprefix("cannot decode image: ")
            assert "assertion failed" not in reason and "image_bytes[" not in reason, problem
            as_served = f"assertion failed: [image_bytes[0]: {reason}]"
            assert known_reason(reason) or known_reason(as_served), (name, problem)
    assert names["empty.png"] == "cannot decode image: empty (0 bytes)"
    assert "image of 20000 x 20000 pixels" in names["bomb.gif"]
    assert "image of 7 x 2147483648 pixels" in names["wide.bmp"]
