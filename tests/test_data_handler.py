"""tf_crnn.data_handler: what input_fn yields (batches, labels, order, shuffling) and the serving
inputs that feed an exported model through the same preprocessing."""

import os
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from helpers import batches, concatenated, encode_gif, tiny_params, write_image

from tf_crnn import constants, skipped_rows
from tf_crnn.alphabet import Alphabet
from tf_crnn.checks import check_csv_files
from tf_crnn.csv_dataset import Shard
from tf_crnn.data_handler import dense_codes_to_sparse, input_fn, serving_inputs

LABELS = ["abc", "hello", "x1y2", "zz9", "q"]


# --- what input_fn yields ------------------------------------------------------------------------
def test_eval_batches_shapes_dtypes_and_labels(text_line_csv, tmp_path):
    csv = text_line_csv(LABELS)
    params = tiny_params(eval_batch_size=2)
    batch_list = batches(input_fn(csv, params, "eval"))
    assert [len(features["filenames"]) for features, _ in batch_list] == [2, 2, 1]
    alphabet = Alphabet.from_params(params)
    texts, filenames = [], []
    for features, codes in batch_list:
        size = len(features["filenames"])
        images = features["images"]
        assert images.shape == (size, 32, 128, 1) and images.dtype == np.float32
        widths = features["images_widths"]
        assert widths.shape == (size,) and widths.dtype == np.int32
        assert features["filenames"].dtype == object
        assert 0.0 <= images.min() and images.max() <= 1.0
        assert images.max() > 0.2
        assert codes.dtype == np.int32
        texts += [alphabet.decode(row) for row in codes]
        filenames += [name.decode() for name in features["filenames"]]
    assert texts == LABELS
    assert filenames == [str(tmp_path / "images" / f"data_{i}.png") for i in range(len(LABELS))]


def test_labels_are_a_sparse_tensor_of_codes(text_line_csv):
    csv = text_line_csv(["hello", "ab"])
    params = tiny_params()
    _, labels = next(iter(input_fn(csv, params, "eval")))
    assert isinstance(labels, tf.SparseTensor) and labels.dtype == tf.int32
    assert labels.dense_shape.numpy().tolist() == [2, 5]
    assert labels.indices.numpy().tolist() == [
        [0, 0],
        [0, 1],
        [0, 2],
        [0, 3],
        [0, 4],
        [1, 0],
        [1, 1],
    ]
    alphabet = Alphabet.from_params(params)
    assert labels.values.numpy().tolist() == alphabet.encode("hello") + alphabet.encode("ab")


def test_code_zero_is_kept_in_the_labels(text_line_csv):
    params = tiny_params()
    assert Alphabet.from_params(params).encode("0") == [0]
    csv = text_line_csv(["0010", "0"])
    _, texts = concatenated(input_fn(csv, params, "eval"), params)
    assert texts == ["0010", "0"]


def test_dense_codes_to_sparse_keeps_code_zero_and_drops_the_padding():
    sparse = dense_codes_to_sparse(tf.constant([[0, 3, -1], [-1, -1, -1], [0, 0, 0]]))
    assert sparse.indices.numpy().tolist() == [[0, 0], [0, 1], [2, 0], [2, 1], [2, 2]]
    assert sparse.values.numpy().tolist() == [0, 3, 0, 0, 0]
    assert sparse.dense_shape.numpy().tolist() == [3, 3]


def test_multiple_csv_files(tmp_path, write_csv):
    write_image(tmp_path / "one" / "a.png", np.full((32, 40), 10, np.uint8))
    write_image(tmp_path / "two" / "a.png", np.full((32, 40), 20, np.uint8))
    first = write_csv(tmp_path / "one" / "first.csv", ["a.png;ab", "a.png;ba"])
    second = write_csv(tmp_path / "two" / "second.csv", ["a.png;cc"])
    params = tiny_params(eval_batch_size=8)
    assert check_csv_files([first, second], params).usable_rows == 3
    features, texts = concatenated(input_fn([first, second], params, "eval"), params)
    assert texts == ["ab", "ba", "cc"]
    assert [f.decode() for f in features["filenames"]] == [str(tmp_path / "one" / "a.png")] * 2 + [
        str(tmp_path / "two" / "a.png")
    ]
    expected = [10 / 255, 10 / 255, 20 / 255]
    np.testing.assert_allclose(features["images"][:, 0, 0, 0], expected, atol=1e-6)


def test_split_delimiter_and_csv_delimiter_settings(tmp_path, write_csv, good_image):
    csv = write_csv(tmp_path / "data.tsv", [f"{good_image}\tch|a|ll", f"{good_image}\tll|ch"])
    params = tiny_params(
        alphabet_units=["a", "ch", "ll"], string_split_delimiter="|", csv_delimiter="\t"
    )
    ((_, codes),) = batches(input_fn(csv, params, "eval"))
    assert codes.tolist() == [[1, 0, 2], [2, 1, -1]]


# --- training order -------------------------------------------------------------------------------
def far_moves(order, other):
    """How many items sit more than 4 places apart in the two orders: more than the few places the
    parallel (non-deterministic) loading of TRAIN batches can swap neighbours by."""
    return sum(abs(order.index(item) - other.index(item)) > 4 for item in order)


def test_training_reshuffles_every_epoch(tmp_path, write_csv):
    params = tiny_params()
    units = Alphabet.from_params(params).units
    lines = []
    for index in range(16):
        write_image(tmp_path / f"{index}.png", np.full((32, 16), 10 * index, np.uint8))
        lines.append(f"{index}.png;{units[index]}")
    csv = write_csv(tmp_path / "data.csv", lines)
    dataset = input_fn(csv, params, "train", batch_size=1, num_epochs=2)
    features, texts = concatenated(dataset, params)
    names = [os.path.basename(f.decode()) for f in features["filenames"]]
    in_order = [f"{index}.png" for index in range(16)]
    assert sorted(names) == sorted(in_order * 2)
    # By first and second appearance, not by halves: parallel loading may let an image of the
    # second epoch overtake one of the first.
    first = list(dict.fromkeys(names))
    second = [name for index, name in enumerate(names) if name in names[:index]]
    assert far_moves(first, in_order) >= 4
    assert far_moves(first, second) >= 4
    # Labels travel with their images through the shuffle.
    assert texts == [units[int(name.split(".")[0])] for name in names]


def test_training_drops_the_incomplete_last_batch(text_line_csv):
    csv = text_line_csv(["ab", "cd", "ef"])
    dataset = input_fn(csv, tiny_params(), "train", batch_size=2, num_epochs=1)
    assert [len(f["filenames"]) for f, _ in batches(dataset)] == [2]


def test_batch_size_is_per_replica_under_a_strategy(text_line_csv):
    """With an input context (one pipeline of two replicas), input_fn batches half the global
    size."""
    csv = text_line_csv(["ab", "cd", "ef", "gh"])
    context = tf.distribute.InputContext(
        num_input_pipelines=1, input_pipeline_id=0, num_replicas_in_sync=2
    )
    dataset = input_fn(csv, tiny_params(), "eval", batch_size=4, input_context=context)
    assert [len(f["filenames"]) for f, _ in batches(dataset)] == [2, 2]


def test_two_workers_train_on_disjoint_samples(tmp_path, write_csv):
    """Each worker's pipeline (a Shard, or an InputContext under a strategy) reads its own rows,
    and the two together read every row."""
    lines = []
    for index in range(12):
        write_image(tmp_path / f"{index}.png", np.full((32, 16), 10 * index, np.uint8))
        lines.append(f"{index}.png;a")
    csv = write_csv(tmp_path / "data.csv", lines)
    params = tiny_params()

    def names(batch_size=1, **shard):
        dataset = input_fn(csv, params, "train", batch_size=batch_size, num_epochs=1, **shard)
        features, _ = concatenated(dataset, params)
        return {os.path.basename(name.decode()) for name in features["filenames"]}

    first, second = names(shard=Shard(2, 0)), names(shard=Shard(2, 1))
    assert first.isdisjoint(second) and len(first) == len(second) == 6
    assert first | second == {f"{index}.png" for index in range(12)}
    context = tf.distribute.InputContext(
        num_input_pipelines=2, input_pipeline_id=1, num_replicas_in_sync=2
    )
    assert names(batch_size=2, input_context=context) == second


def test_the_graph_does_not_grow_with_the_number_of_rows(tmp_path, write_csv, good_image):
    """The rows are read as a stream: 10 or 3,000 rows give the same graph (and .meta)."""
    params = tiny_params(check_all_images_up_to=10, check_sample_size=5)

    def graph_bytes(folder, rows):
        (tmp_path / folder).mkdir()
        csv = write_csv(tmp_path / folder / "data.csv", [f"../{good_image};ab"] * rows)
        with tf.Graph().as_default() as graph:
            tf.compat.v1.data.make_one_shot_iterator(input_fn(csv, params, "train")).get_next()
        return len(graph.as_graph_def().SerializeToString())

    # The rows as constants would add about 100 bytes each; a few bytes vary with op names.
    assert abs(graph_bytes("a", 10) - graph_bytes("b", 3000)) < 100


def test_an_image_gone_bad_after_the_check_stops_naming_file_and_row(tmp_path, write_csv):
    write_image(tmp_path / "a.png", np.full((32, 40), 10, np.uint8))
    write_image(tmp_path / "b.png", np.full((32, 40), 10, np.uint8))
    csv = write_csv(tmp_path / "data.csv", ["a.png;ab", "b.png;cd"])
    params = tiny_params()
    check_csv_files(csv, params)
    (tmp_path / "b.png").write_bytes(b"broken")
    with pytest.raises(tf.errors.OpError) as error:
        batches(input_fn(csv, params, "eval"))
    message = skipped_rows.bad_row_message(error.value)
    assert message.startswith(f"{csv}, row 2: {tmp_path / 'b.png'}: not a readable PNG")


def test_with_skip_bad_samples_an_image_gone_bad_is_skipped_and_listed(tmp_path, write_csv):
    for name in ("a", "b", "c"):
        write_image(tmp_path / f"{name}.png", np.full((32, 40), 10, np.uint8))
    csv = write_csv(tmp_path / "data.csv", ["a.png;ab", "b.png;cd", "c.png;ef"])
    params = tiny_params(skip_bad_samples=True)
    check_csv_files(csv, params)
    (tmp_path / "b.png").unlink()
    job_dir = tmp_path / "job"
    job_dir.mkdir()
    _, texts = concatenated(input_fn(csv, params, "eval", job_dir=str(job_dir)), params)
    assert texts == ["ab", "ef"]
    listed = (job_dir / "skipped_rows.csv").read_text().splitlines()
    assert listed[1:] == [f"{csv}, row 2;{tmp_path / 'b.png'};image file not found"]


def test_a_sampled_check_leaves_too_long_labels_to_training_which_counts_them(tmp_path, write_csv):
    write_image(tmp_path / "narrow.png", np.full((32, 24), 200, np.uint8))  # 5 time steps
    csv = write_csv(tmp_path / "data.csv", ["narrow.png;ab"] * 5 + ["narrow.png;abcdef"])
    params = tiny_params(check_all_images_up_to=2, check_sample_size=1)
    job_dir = tmp_path / "job"
    job_dir.mkdir()
    _, texts = concatenated(input_fn(csv, params, "eval", job_dir=str(job_dir)), params)
    assert texts == ["ab"] * 5
    listed = (job_dir / "skipped_rows.csv").read_text()
    assert f"{csv}, row 6;" in listed and "label too long" in listed


# --- serving_inputs -------------------------------------------------------------------------------
def test_serving_inputs_read_files_bytes_or_images_like_input_fn(tmp_path, write_csv):
    gray = np.tile(np.linspace(0, 255, 60).astype(np.uint8), (24, 1))
    paths = [write_image(tmp_path / "a.png", gray), str(tmp_path / "b.gif")]
    (tmp_path / "b.gif").write_bytes(encode_gif(gray[:, :30]))
    csv = write_csv(tmp_path / "data.csv", ["a.png;ab", "b.gif;cd"])
    params = tiny_params(export_filenames_signature=True)
    trained_on, _ = concatenated(input_fn(csv, params, "eval"), params)
    contents = [open(path, "rb").read() for path in paths]
    with tf.Graph().as_default(), tf.compat.v1.Session() as session:
        inputs = serving_inputs(params)
        features = inputs.features
        assert set(features) == {constants.IMAGES, constants.IMAGES_WIDTHS, constants.FILENAMES}
        fetch = [
            features[constants.IMAGES],
            features[constants.IMAGES_WIDTHS],
            features["filenames"],
        ]
        from_files = session.run(fetch, {inputs.filenames: paths})
        from_bytes = session.run(fetch, {inputs.image_bytes: contents})
        from_images = session.run(
            fetch, {inputs.images: from_files[0], inputs.images_widths: from_files[1]}
        )
    for images, widths, names in (from_files, from_bytes, from_images):
        np.testing.assert_array_equal(images, trained_on["images"])
        np.testing.assert_array_equal(widths, trained_on["images_widths"])
        assert names.tolist() == [b"", b""]  # a served model is not told file names


def test_serving_inputs_read_no_file_unless_asked_to():
    def read_files(params):
        with tf.Graph().as_default() as graph:
            inputs = serving_inputs(params)
            graph_def = graph.as_graph_def()
        ops = {node.op for node in graph_def.node}
        ops |= {node.op for function in graph_def.library.function for node in function.node_def}
        return inputs.filenames is not None, "ReadFile" in ops

    assert read_files(tiny_params()) == (False, False)
    assert read_files(tiny_params(export_filenames_signature=True)) == (True, True)


def test_cache_decoded_images_decodes_each_image_once_and_augments_at_every_read(
    tmp_path, write_csv
):
    for index in range(4):
        write_image(tmp_path / f"{index}.png", np.full((32, 40), 50 * index, np.uint8))
    csv = write_csv(tmp_path / "data.csv", [f"{index}.png;ab" for index in range(4)])
    job_dir, cache = tmp_path / "job", tmp_path / "job" / "decoded_cache"
    params = tiny_params(cache_decoded_images=True, data_augmentation=True)

    def read(epochs):
        dataset = input_fn(
            csv, params, "train", batch_size=1, num_epochs=epochs, job_dir=str(job_dir)
        )
        return concatenated(dataset, params)

    read(1)
    (index_file,) = cache.glob("train-*.index")
    prefix = str(index_file)[: -len(".index")]
    # As a writer killed in its first epoch leaves the cache: no index, a lock and a partial file.
    for done in cache.glob("train-*"):
        done.unlink()
    Path(prefix + "_0.lockfile").write_text("")
    Path(prefix + "_0.data-00000-of-00001.tempstate123").write_text("partial")
    read(1)
    assert sorted(path.name for path in cache.iterdir()) == sorted(
        os.path.basename(prefix) + suffix for suffix in (".index", ".data-00000-of-00001")
    )
    for index in range(4):
        (tmp_path / f"{index}.png").unlink()  # from now on only the cache has the images
    features, texts = read(2)
    assert texts == ["ab"] * 8
    names = sorted(os.path.basename(name.decode()) for name in features["filenames"])
    assert names == sorted([f"{index}.png" for index in range(4)] * 2)
    # Augmented afresh: an image differs between its two reads.
    by_name = {}
    for name, image in zip(features["filenames"], features["images"]):
        by_name.setdefault(name, []).append(image)
    assert any(not np.array_equal(*images) for images in by_name.values())
