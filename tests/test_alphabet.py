"""tf_crnn.alphabet: units <-> codes in Python and in the graph, how alphabets are built and
resolved, and the alphabet collected from training labels."""

import json

import pytest
import tensorflow as tf

from tf_crnn.alphabet import (
    SOURCE_BUILTIN,
    SOURCE_LOOKUP_FILE,
    SOURCE_STRING,
    SOURCE_TRAINING_LABELS,
    SOURCE_UNITS,
    Alphabet,
    AlphabetError,
    alphabet_source,
    read_labels,
    resolve_alphabet,
    with_resolved_alphabet,
)
from tf_crnn.config import Params
from tf_crnn.csv_rows import DataError

UNICODE_LABELS = ["café crème", "北京欢迎你", "مرحبا بالعالم", "Ünïcödé ß"]


def graph_codes(alphabet, labels):
    """Codes from the graph encoder, as Python lists."""
    return alphabet.tf_encode(tf.constant(labels)).to_list()


def graph_round_trip(alphabet, labels):
    codes = alphabet.tf_encode(tf.constant(labels)).to_tensor(default_value=-1)
    return [text.decode("utf-8") for text in alphabet.tf_decode(codes).numpy()]


def write_json(path, text):
    path.write_text(text, encoding="utf-8")
    return str(path)


# --- construction ------------------------------------------------------------------------------
def test_builtin_digits():
    digits = Alphabet.builtin("digits")
    assert len(digits) == 10
    assert digits.units == list("0123456789")
    assert digits.blank_code == 10 == len(digits)
    assert digits.num_classes == 11
    assert digits.encode("907") == [9, 0, 7]


@pytest.mark.parametrize("name", ["letters_symbols", "letters_digits_symbols"])
def test_other_builtins_have_the_blank_last(name):
    alphabet = Alphabet.builtin(name)
    assert "a" in alphabet.units and "Z" in alphabet.units
    assert alphabet.blank_code == len(alphabet) == alphabet.num_classes - 1
    assert alphabet.decode(alphabet.encode("Hello")) == "Hello"


def test_builtin_digits_is_a_subset_of_letters_digits_symbols():
    assert set("0123456789") <= set(Alphabet.builtin("letters_digits_symbols").units)
    assert not set("0123456789") & set(Alphabet.builtin("letters_symbols").units)


def test_unknown_builtin_name():
    with pytest.raises(AlphabetError, match="greek.*digits"):
        Alphabet.builtin("greek")


def test_lookup_json_units_are_ordered_by_code(tmp_path):
    path = write_json(tmp_path / "lookup.json", '{"c": 7, "a": 2, "é": 5, "b": 3}')
    alphabet = Alphabet.from_lookup_json(path)
    assert alphabet.units == ["a", "b", "é", "c"]
    assert alphabet.encode("cab") == [3, 0, 1]
    assert alphabet.blank_code == 4


def test_lookup_json_duplicate_codes(tmp_path):
    path = write_json(tmp_path / "lookup.json", '{"a": 0, "b": 1, "c": 1}')
    with pytest.raises(AlphabetError, match="same code") as error:
        Alphabet.from_lookup_json(path)
    assert path in str(error.value)


@pytest.mark.parametrize(
    "text, problem",
    [
        ('{"a": 0, "b": "1"}', "integer code"),
        ('["a", "b"]', "integer code"),
        ('{"a": 0,', "not valid JSON"),
    ],
)
def test_lookup_json_bad_content(tmp_path, text, problem):
    path = write_json(tmp_path / "lookup.json", text)
    with pytest.raises(AlphabetError, match=problem) as error:
        Alphabet.from_lookup_json(path)
    assert path in str(error.value)


def test_lookup_json_missing_file(tmp_path):
    with pytest.raises(AlphabetError, match="does not exist"):
        Alphabet.from_lookup_json(str(tmp_path / "missing.json"))


def test_lookup_json_round_trip(tmp_path):
    alphabet = Alphabet(["x", "é", "中", " "])
    path = str(tmp_path / "saved.json")
    alphabet.to_lookup_json(path)
    with open(path, encoding="utf-8") as f:
        assert json.load(f) == {"x": 0, "é": 1, "中": 2, " ": 3}
    assert Alphabet.from_lookup_json(path).units == alphabet.units


def test_from_string_keeps_first_appearance_order():
    alphabet = Alphabet.from_string("cabbage")
    assert alphabet.units == ["c", "a", "b", "g", "e"]
    assert alphabet.encode("bag") == [2, 1, 3]


def test_from_labels_collects_every_unit_sorted():
    alphabet = Alphabet.from_labels(["hello", "world", "42"])
    assert alphabet.units == sorted(set("helloworld42"))
    assert alphabet.decode(alphabet.encode("hello")) == "hello"


@pytest.mark.parametrize(
    "units, problem",
    [
        ([], "empty"),
        (["a", "b", "a"], "more than once"),
        (["a", ""], "empty unit"),
        (["a", "ch"], "string_split_delimiter"),
    ],
)
def test_impossible_alphabets(units, problem):
    with pytest.raises(AlphabetError, match=problem):
        Alphabet(units)


# --- Unicode -----------------------------------------------------------------------------------
def test_unicode_units_are_characters_in_python():
    alphabet = Alphabet.from_labels(UNICODE_LABELS)
    for label in UNICODE_LABELS:
        codes = alphabet.encode(label)
        assert len(codes) == len(label)
        assert alphabet.decode(codes) == label
    assert "é" in alphabet.units and "北" in alphabet.units and "ب" in alphabet.units


def test_unicode_in_the_graph_agrees_with_python():
    alphabet = Alphabet.from_labels(UNICODE_LABELS)
    assert graph_codes(alphabet, UNICODE_LABELS) == [
        alphabet.encode(label) for label in UNICODE_LABELS
    ]
    assert graph_round_trip(alphabet, UNICODE_LABELS) == UNICODE_LABELS


# --- multi-character units ---------------------------------------------------------------------
def test_split_delimiter_multi_character_units():
    alphabet = Alphabet.from_string("ch|a|ll|e|ñ|ﬁ", split_delimiter="|")
    assert alphabet.units == ["ch", "a", "ll", "e", "ñ", "ﬁ"]
    labels = ["ch|a|ll|e", "ll|a|ﬁ|ñ", "|a||ch|"]
    expected = [[0, 1, 2, 3], [2, 1, 5, 4], [1, 0]]
    assert [alphabet.encode(label) for label in labels] == expected
    assert graph_codes(alphabet, labels) == expected
    assert alphabet.decode([0, 1, 2, 3]) == "challe"
    assert graph_round_trip(alphabet, labels) == ["challe", "llaﬁñ", "ach"]


def test_split_delimiter_unknown_multi_character_unit():
    alphabet = Alphabet(["ch", "a"], split_delimiter="|")
    with pytest.raises(AlphabetError, match="'c'"):
        alphabet.encode("ch|c")
    assert graph_codes(alphabet, ["ch|c|a"]) == [[0, -1, 1]]


# --- case folding ------------------------------------------------------------------------------
def test_case_folding_in_python_and_in_the_graph():
    alphabet = Alphabet.from_string("ABCÉ", case_fold=True)
    assert alphabet.units == ["a", "b", "c", "é"]
    labels = ["AbC", "abc", "ÉCÉ", "éa"]
    python = [alphabet.encode(label) for label in labels]
    assert python == [[0, 1, 2], [0, 1, 2], [3, 2, 3], [3, 0]]
    assert graph_codes(alphabet, labels) == python


def test_case_folding_of_context_dependent_letters_agrees():
    # Σ lower-cases to σ inside a word and to ς at its end, in Python and in the graph alike.
    labels = ["ΟΔΟΣ", "ΣΑΣ", "Σ Α"]
    alphabet = Alphabet.from_labels(labels, case_fold=True)
    assert graph_codes(alphabet, labels) == [alphabet.encode(label) for label in labels]


def test_case_folding_with_split_delimiter():
    alphabet = Alphabet(["CH", "a"], split_delimiter="|", case_fold=True)
    assert alphabet.units == ["ch", "a"]
    assert alphabet.encode("Ch|A|ch") == [0, 1, 0]
    assert graph_codes(alphabet, ["Ch|A|ch"]) == [[0, 1, 0]]


def test_without_case_folding_case_matters():
    alphabet = Alphabet.from_string("abc")
    with pytest.raises(AlphabetError, match="'A'"):
        alphabet.encode("Abc")
    assert graph_codes(alphabet, ["Abc"]) == [[-1, 1, 2]]


# --- unknown units and decoding ----------------------------------------------------------------
def test_unknown_units_raise_in_python_and_give_minus_one_in_the_graph():
    alphabet = Alphabet.builtin("digits")
    with pytest.raises(AlphabetError) as error:
        alphabet.encode("1x2é")
    assert "'x'" in str(error.value) and "'é'" in str(error.value) and "1x2é" in str(error.value)
    assert alphabet.unknown_units("1x2é") == ["x", "é"]
    assert graph_codes(alphabet, ["1x2é", "12"]) == [[1, -1, 2, -1], [1, 2]]
    assert alphabet.code_of("x") == -1 and alphabet.code_of("7") == 7


def test_decoding_drops_padding_and_blank():
    alphabet = Alphabet.from_string("abc")
    blank = alphabet.blank_code
    codes = [[0, blank, 1, -1, -1], [blank, blank, -1, -1, -1], [2, 2, 0, 1, blank]]
    assert [t.decode() for t in alphabet.tf_decode(tf.constant(codes)).numpy()] == [
        "ab",
        "",
        "ccab",
    ]
    assert [alphabet.decode(row) for row in codes] == ["ab", "", "ccab"]


def test_code_zero_is_a_real_unit_in_the_graph():
    alphabet = Alphabet.builtin("digits")
    assert graph_round_trip(alphabet, ["000", "0", "10"]) == ["000", "0", "10"]


# --- resolve_alphabet --------------------------------------------------------------------------
def test_resolve_alphabet_order_of_precedence(tmp_path):
    lookup = write_json(tmp_path / "lookup.json", '{"x": 0, "y": 1}')
    labels = ["hello", "world"]
    # An already resolved alphabet (a saved run) wins over every source.
    for source in (
        {"lookup_alphabet_file": lookup},
        {"alphabet_string": "pq"},
        {"alphabet": "digits"},
        {},
    ):
        params = Params(alphabet_units=["u", "v"], **source)
        assert resolve_alphabet(params, labels).units == ["u", "v"]
    # Then the one source given; labels only count for 'auto'.
    assert resolve_alphabet(Params(lookup_alphabet_file=lookup), labels).units == ["x", "y"]
    assert resolve_alphabet(Params(alphabet_string="qp"), labels).units == ["q", "p"]
    assert resolve_alphabet(Params(alphabet="digits"), labels).units == list("0123456789")
    assert resolve_alphabet(Params(), labels).units == sorted(set("helloworld"))


def test_resolve_alphabet_passes_split_and_case_folding_on():
    params = Params(alphabet_string="CH|A", string_split_delimiter="|", alphabet_case_fold=True)
    alphabet = resolve_alphabet(params)
    assert alphabet.units == ["ch", "a"]
    assert alphabet.encode("a|Ch") == [1, 0]
    auto = resolve_alphabet(Params(alphabet_case_fold=True), ["AbA", "ba"])
    assert auto.units == ["a", "b"]


def test_resolve_auto_alphabet_without_labels():
    with pytest.raises(AlphabetError, match="auto"):
        resolve_alphabet(Params(), [])


def test_num_classes_is_units_plus_the_blank():
    assert Alphabet(list("abc")).num_classes == 4
    assert Alphabet(list("abc")).blank_code == 3


def test_from_params_needs_resolved_units():
    with pytest.raises(AlphabetError, match="not been resolved"):
        Alphabet.from_params(Params())
    alphabet = Alphabet.from_params(Params(alphabet_units=["ab", "c"], string_split_delimiter="|"))
    assert alphabet.encode("c|ab") == [1, 0]


def test_case_folding_a_builtin_alphabet_merges_upper_into_lower_case():
    alphabet = Alphabet.builtin("letters_digits_symbols", case_fold=True)
    assert len(alphabet) == 95 - 26
    assert alphabet.encode("Hello") == alphabet.encode("hello")


# --- the alphabet from the training labels --------------------------------------------------------
def test_alphabet_source_names_the_setting_the_alphabet_comes_from():
    assert alphabet_source(Params()) == SOURCE_TRAINING_LABELS
    assert alphabet_source(Params(alphabet="digits")) == SOURCE_BUILTIN
    assert alphabet_source(Params(alphabet_string="ab")) == SOURCE_STRING
    assert alphabet_source(Params(lookup_alphabet_file="lookup.json")) == SOURCE_LOOKUP_FILE
    assert alphabet_source(Params(alphabet_units=["a"], alphabet_string="ab")) == SOURCE_UNITS


def test_auto_alphabet_is_collected_from_the_training_csv(tmp_path, write_csv, good_image):
    csv = write_csv(tmp_path / "data.csv", [f"{good_image};hello", f"{good_image};wörld"])
    params = with_resolved_alphabet(Params(), [csv])
    assert params.alphabet_units == sorted(set("hellowörld"))
    units_x = params.with_overrides({"alphabet_units": ["x"]})
    assert with_resolved_alphabet(units_x, [csv]).alphabet_units == ["x"]
    digits = with_resolved_alphabet(Params(alphabet="digits"), [csv])
    assert digits.alphabet_units == list("0123456789")


def test_read_labels_of_several_files_refuses_or_skips_malformed_rows(tmp_path, write_csv):
    first = write_csv(tmp_path / "a.csv", ["a.png;ab", "b.png;cd"])
    second = write_csv(tmp_path / "b.csv", ["c.png;ef", "d.png", "e.png;gh"])
    assert read_labels([first], Params()) == ["ab", "cd"]
    with pytest.raises(DataError, match="row 2: no ';' delimiter"):
        read_labels([first, second], Params())
    assert read_labels([first, second], Params(skip_bad_samples=True)) == ["ab", "cd", "ef", "gh"]
    # Image files are not looked at: collecting the alphabet only reads the CSV files.
    params = with_resolved_alphabet(Params(skip_bad_samples=True), [first, second])
    assert params.alphabet_units == list("abcdefgh")
