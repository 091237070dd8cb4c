"""tf_crnn.csv_dataset: CSV rows read inside tf.data, by the rules of the start-up check's reader,
and split into disjoint shards for the workers of a cluster."""

import numpy as np
import pytest

from tf_crnn.csv_dataset import Shard, csv_row_dataset
from tf_crnn.csv_rows import read_csv_rows


def streamed(csv_files, delimiter=";", **kwargs):
    """[(csv_file, line_number, image_path, label)] of the dataset, as Python values."""
    return [
        (
            row["csv_file"].numpy().decode(),
            int(row["line_number"]),
            row["image_path"].numpy().decode(),
            row["label"].numpy().decode(),
        )
        for row in csv_row_dataset(csv_files, delimiter, **kwargs)
    ]


def test_rows_are_those_the_start_up_check_reads(tmp_path):
    content = (
        b"\xef\xbb\xbfa.png;first\r\n"  # byte order mark, CRLF
        b"\n"
        b"   \n"
        b" sub/b.png ;two words \n"  # the path is stripped, the label kept as written
        b"no_delimiter\n"
        b"c.png;a;b\n"
        b";empty path\n"
        b"d.png;\n"
        b"e.png;caf\xe9\n"  # latin-1, not UTF-8
        b"/abs/f.png;absolute\n"
        b"ram://bucket/g.png;scheme\n"
        b"h.png;\xc3\xa9t\xc3\xa9|\xe2\x82\xac\n"
        b"nul.png;a\x00b\n"  # a NUL byte
        b"\xef\xbb\xbfbom.png;stray\n"  # a byte order mark after the first line
        b"last.png;no final newline"
    )
    csv = tmp_path / "data.csv"
    csv.write_bytes(content)
    expected = [
        (row.csv_file, row.line_number, row.image_path, row.label)
        for row in read_csv_rows(str(csv), ";").rows
    ]
    assert [line for _, line, _, _ in expected] == [1, 4, 10, 11, 12, 15]
    assert streamed([str(csv)]) == expected


def test_several_files_are_read_whole_in_order_or_interleaved(tmp_path):
    first = tmp_path / "one" / "first.csv"
    second = tmp_path / "two" / "second.csv"
    for path, letter in ((first, "a"), (second, "b")):
        path.parent.mkdir()
        path.write_text("".join(f"{letter}{n}.png;{letter}{n}\n" for n in range(3)))
    files = [str(first), str(second)]
    labels = [label for *_, label in streamed(files)]
    assert labels == ["a0", "a1", "a2", "b0", "b1", "b2"]
    interleaved = [label for *_, label in streamed(files, interleave_files=True)]
    assert interleaved == ["a0", "b0", "a1", "b1", "a2", "b2"]
    paths = {path for _, _, path, _ in streamed(files)}
    assert str(tmp_path / "two" / "b1.png") in paths


@pytest.mark.parametrize("files", [1, 3], ids=["by row", "by file"])
def test_shards_are_disjoint_and_cover_every_row(tmp_path, files):
    csv_files = []
    for index in range(files):
        path = tmp_path / f"part{index}.csv"
        path.write_text("".join(f"img{index}_{n}.png;x\n" for n in range(10)))
        csv_files.append(str(path))
    shares = [
        {(csv_file, line) for csv_file, line, _, _ in streamed(csv_files, shard=Shard(3, i))}
        for i in range(3)
    ]
    everything = {(csv_file, line) for csv_file, line, _, _ in streamed(csv_files)}
    assert len(everything) == 10 * files
    assert set().union(*shares) == everything
    assert sum(len(share) for share in shares) == len(everything)  # no row twice
    assert all(share for share in shares)
    if files == 3:  # each worker reads whole files of its own
        assert [len({csv_file for csv_file, _ in share}) for share in shares] == [1, 1, 1]
    else:
        assert np.ptp([len(share) for share in shares]) <= 1


def test_a_shard_index_outside_the_count_is_refused():
    with pytest.raises(ValueError, match=r"shard index 2 is not in \[0, 2\)"):
        Shard(2, 2)
