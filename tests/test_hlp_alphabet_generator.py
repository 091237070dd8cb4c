"""hlp.alphabet_generator: the lookup JSON holds exactly the label units and loads back into
tf_crnn."""

import json
import os
import subprocess
import sys
import uuid

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest

from hlp import alphabet_generator as agen

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def write_csv(path, labels, delimiter=";"):
    path.write_text(
        "".join(f"img/{i}.png{delimiter}{label}\n" for i, label in enumerate(labels)),
        encoding="utf-8",
    )
    return str(path)


def load_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def test_unicode_labels_from_several_files(tmp_path, capsys):
    from tf_crnn.alphabet import Alphabet

    a = write_csv(tmp_path / "a.csv", ["café", "中文"])
    b = write_csv(tmp_path / "b.csv", ["مرحبا", "Zé 9"])
    out = tmp_path / "alpha" / "lookup.json"  # folder created
    assert agen.main([a, b, "--output", str(out)]) == 0

    expected = sorted(set("café中文مرحباZé 9"))
    lookup = load_json(out)
    assert lookup == {unit: code for code, unit in enumerate(expected)}
    assert "中" in out.read_text(encoding="utf-8")  # written as UTF-8, not \u escapes

    printed = capsys.readouterr().out
    assert printed.splitlines()[0].startswith(f"{len(expected)} units")
    assert json.loads(printed.splitlines()[1]) == expected

    alphabet = Alphabet.from_lookup_json(str(out))
    assert alphabet.units == expected
    assert alphabet.decode(alphabet.encode("مرحبا café")) == "مرحبا café"


def test_split_delimiter_multi_character_units(tmp_path, capsys):
    from tf_crnn.alphabet import Alphabet, AlphabetError

    csv = write_csv(tmp_path / "units.csv", ["ch|a|ll|e", "a|ß|ch", "th|é"])
    out = str(tmp_path / "units.json")
    assert agen.main([csv, "--output", out, "--split-delimiter", "|"]) == 0
    assert set(load_json(out)) == {"a", "ch", "e", "ll", "ß", "th", "é"}
    assert json.loads(capsys.readouterr().out.splitlines()[1]) == sorted(
        ["a", "ch", "e", "ll", "ß", "th", "é"]
    )

    alphabet = Alphabet.from_lookup_json(out, split_delimiter="|")
    codes = [alphabet.code_of(unit) for unit in ("th", "a", "ll")]
    assert alphabet.encode("th|a|ll") == codes
    # Multi-character units need the same split delimiter when training.
    with pytest.raises(AlphabetError):
        Alphabet.from_lookup_json(out)


def test_case_fold_and_other_csv_delimiter(tmp_path):
    from tf_crnn.alphabet import Alphabet

    csv = write_csv(tmp_path / "pipe.csv", ["ABC;É", "abc;é", "Straße"], delimiter="|")
    folded = str(tmp_path / "folded.json")
    assert agen.main([csv, "--output", folded, "--delimiter", "|", "--case-fold"]) == 0
    assert sorted(load_json(folded)) == sorted(set("abc;éstraße"))

    plain = str(tmp_path / "plain.json")
    assert agen.main([csv, "--output", plain, "--delimiter", "|"]) == 0
    assert sorted(load_json(plain)) == sorted(set("ABC;Éabcé" + "Straße"))

    alphabet = Alphabet.from_lookup_json(folded, case_fold=True)
    assert alphabet.encode("ABC") == alphabet.encode("abc")


def test_errors_name_the_row_or_setting(tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("img/0.png;ok\nimg/1.png\n", encoding="utf-8")
    assert agen.main([str(bad), "--output", str(tmp_path / "x.json")]) == 2
    assert f"{bad}, row 2" in capsys.readouterr().err
    assert not (tmp_path / "x.json").exists()

    good = write_csv(tmp_path / "good.csv", ["a"])
    with pytest.raises(SystemExit) as exit_info:  # split delimiter equal to the CSV delimiter
        agen.main([good, "--output", str(tmp_path / "y.json"), "--split-delimiter", ";"])
    assert exit_info.value.code == 2
    assert "string_split_delimiter" in capsys.readouterr().err


def test_command_line(tmp_path):
    csv = write_csv(tmp_path / "cli.csv", ["Ωμέγα 1", "é中"])
    out = tmp_path / "cli.json"
    result = subprocess.run(
        [sys.executable, "-m", "hlp.alphabet_generator", csv, "--output", str(out)],
        cwd=REPO,
        capture_output=True,
        timeout=120,
        env={**os.environ, "PYTHONIOENCODING": "utf-8"},
    )
    assert result.returncode == 0, result.stderr
    units = sorted(set("Ωμέγα 1é中"))
    assert result.stdout.decode("utf-8").splitlines()[0].startswith(f"{len(units)} units")
    assert sorted(load_json(out)) == units


def test_folder_to_create():
    assert agen.folder_to_create("alphabet.json") == ""
    assert agen.folder_to_create(os.path.join("data", "a.json")) == "data"
    assert agen.folder_to_create("gs://bucket/data/sub/a.json") == "gs://bucket/data/sub"
    # gfile cannot create a bucket, and makedirs("gs:") would make a local folder "gs:".
    assert agen.folder_to_create("gs://bucket/a.json") == ""
    assert agen.folder_to_create("ram://a.json") == ""


def test_url_csv_and_output_through_gfile(tmp_path, monkeypatch):
    """CSVs and the JSON at URLs (ram:// standing in for gs://), nothing written locally."""
    import tensorflow as tf

    from tf_crnn.alphabet import Alphabet

    monkeypatch.chdir(tmp_path)
    name = uuid.uuid4().hex
    root = f"ram://alphabet_generator_test_{name}"
    at_root = f"ram://lookup_{name}.json"  # a file right under the scheme: no folder to create
    try:
        csv = f"{root}/data/train.csv"
        with tf.io.gfile.GFile(csv, "wb") as f:
            f.write("img/0.png;ça\nimg/1.png;b 2\n".encode())
        for out in (f"{root}/alpha/lookup.json", at_root):
            assert agen.main([csv, "--output", out]) == 0
            assert Alphabet.from_lookup_json(out).units == sorted(set("çab 2"))
        assert os.listdir(tmp_path) == []  # no local "ram:" folder
    finally:
        if tf.io.gfile.exists(at_root):
            tf.io.gfile.remove(at_root)
        if tf.io.gfile.exists(root):
            tf.io.gfile.rmtree(root)
