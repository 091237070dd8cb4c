"""`Alphabet`: label units <-> class codes, in Python and in the TensorFlow graph.

A *unit* is what the network predicts per time step: by default one Unicode character (so accented,
Chinese or Arabic text works without byte splitting), or, when ``string_split_delimiter`` is set,
the pieces of a label split on it, so multi-character units (ligatures, abbreviations) are single
classes. Codes are 0..N-1 in alphabet order and the CTC blank is class N, the last one.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence

import tensorflow as tf

from tf_crnn.csv_rows import read_csv_rows

BUILTIN_DIR = os.path.join(os.path.dirname(__file__), "alphabets")
BUILTIN_NAMES = ("digits", "letters_symbols", "letters_digits_symbols")


class AlphabetError(ValueError):
    """The alphabet cannot be built as asked; the message says from what and why."""


class Alphabet:
    def __init__(self, units: Sequence[str], split_delimiter: str = "", case_fold: bool = False):
        # Folding merges 'A' into 'a': keep each folded unit once, at its first place.
        units = list(dict.fromkeys(u.lower() for u in units)) if case_fold else list(units)
        if not units:
            raise AlphabetError("The alphabet is empty")
        duplicates = sorted({u for u in units if units.count(u) > 1})
        if duplicates:
            raise AlphabetError(f"The alphabet lists these units more than once: {duplicates}")
        empty = [i for i, u in enumerate(units) if u == ""]
        if empty:
            raise AlphabetError(f"The alphabet has an empty unit at position {empty[0]}")
        if not split_delimiter:
            long_units = [u for u in units if len(u) != 1]
            if long_units:
                raise AlphabetError(
                    f"Units {long_units[:5]} have several characters: set string_split_delimiter "
                    f"to use multi-character units"
                )
        self.units: list[str] = units
        self.split_delimiter = split_delimiter
        self.case_fold = case_fold
        self._codes: dict[str, int] = {u: i for i, u in enumerate(units)}

    # --- construction ------------------------------------------------------------------------
    @classmethod
    def from_string(cls, text: str, split_delimiter: str = "", case_fold: bool = False) -> Alphabet:
        """Units of ``text`` in order of first appearance (split like a label)."""
        units = _split(text.lower() if case_fold else text, split_delimiter)
        return cls(list(dict.fromkeys(units)), split_delimiter, case_fold)

    @classmethod
    def from_labels(
        cls, labels: Iterable[str], split_delimiter: str = "", case_fold: bool = False
    ) -> Alphabet:
        """Every unit that occurs in ``labels``, sorted by code point for a stable, readable
        order."""
        units = set()
        for label in labels:
            units.update(_split(label.lower() if case_fold else label, split_delimiter))
        return cls(sorted(units), split_delimiter, case_fold)

    @classmethod
    def from_lookup_json(
        cls, path: str, split_delimiter: str = "", case_fold: bool = False
    ) -> Alphabet:
        """tf-crnn's ``{"unit": code}`` file. Units are ordered by code; classes are renumbered
        0..N-1."""
        if not tf.io.gfile.exists(path):
            raise AlphabetError(f"Alphabet lookup file {path} does not exist")
        with tf.io.gfile.GFile(path, "r") as f:
            try:
                lookup = json.load(f)
            except json.JSONDecodeError as error:
                raise AlphabetError(
                    f"Alphabet lookup file {path} is not valid JSON: {error}"
                ) from None
        if not isinstance(lookup, dict) or not all(isinstance(c, int) for c in lookup.values()):
            raise AlphabetError(
                f"Alphabet lookup file {path} must map each unit to an integer code"
            )
        if len(set(lookup.values())) != len(lookup):
            raise AlphabetError(f"Alphabet lookup file {path} gives the same code to several units")
        return cls(sorted(lookup, key=lookup.get), split_delimiter, case_fold)

    @classmethod
    def builtin(cls, name: str, split_delimiter: str = "", case_fold: bool = False) -> Alphabet:
        if name not in BUILTIN_NAMES:
            raise AlphabetError(
                f"Unknown built-in alphabet {name!r}; choose one of {', '.join(BUILTIN_NAMES)}"
            )
        return cls.from_lookup_json(
            os.path.join(BUILTIN_DIR, f"{name}.json"), split_delimiter, case_fold
        )

    @classmethod
    def from_params(cls, params) -> Alphabet:
        """The alphabet already resolved into ``params.alphabet_units`` (no file is read)."""
        if not params.alphabet_units:
            raise AlphabetError(
                "params.alphabet_units is empty: the alphabet has not been resolved "
                "(tf_crnn.alphabet.with_resolved_alphabet)"
            )
        return cls(params.alphabet_units, params.string_split_delimiter, params.alphabet_case_fold)

    def to_lookup_json(self, path: str) -> None:
        with tf.io.gfile.GFile(path, "w") as f:
            f.write(json.dumps(self._codes, ensure_ascii=False, indent=1) + "\n")

    # --- Python ------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.units)

    @property
    def num_classes(self) -> int:
        return len(self.units) + 1

    @property
    def blank_code(self) -> int:
        return len(self.units)

    def split(self, label: str) -> list[str]:
        """The units of ``label`` (after case folding, when enabled)."""
        return _split(label.lower() if self.case_fold else label, self.split_delimiter)

    def unknown_units(self, label: str) -> list[str]:
        return [u for u in self.split(label) if u not in self._codes]

    def encode(self, label: str) -> list[int]:
        unknown = self.unknown_units(label)
        if unknown:
            raise AlphabetError(f"Label {label!r} has units not in the alphabet: {unknown}")
        return [self._codes[u] for u in self.split(label)]

    def decode(self, codes: Iterable[int]) -> str:
        """Text for ``codes``; negative codes (padding) and the blank are skipped."""
        return "".join(self.units[c] for c in codes if 0 <= c < len(self.units))

    def code_of(self, unit: str) -> int:
        """The code of ``unit``, or -1 when it is not in the alphabet."""
        return self._codes.get(unit, -1)

    # --- TensorFlow graph ----------------------------------------------------------------------
    def tf_split(self, labels: tf.Tensor) -> tf.RaggedTensor:
        """[batch] labels -> ragged [batch, units] strings, split exactly like :meth:`split`."""
        if self.case_fold:
            labels = tf.strings.lower(labels, encoding="utf-8")
        if not self.split_delimiter:
            return tf.strings.unicode_split(labels, "UTF-8")
        pieces = tf.strings.split(labels, sep=self.split_delimiter)
        return tf.ragged.boolean_mask(pieces, tf.strings.length(pieces) > 0)

    def tf_encode(self, labels: tf.Tensor) -> tf.RaggedTensor:
        """[batch] labels -> ragged int32 codes; units not in the alphabet become -1.

        A comparison against every unit rather than a lookup table: stateless, so it works inside
        any ``tf.data`` pipeline (one-shot iterators and distribution strategies included).
        """
        units = self.tf_split(labels)
        matches = tf.equal(units.flat_values[:, tf.newaxis], tf.constant(self.units)[tf.newaxis, :])
        codes = tf.where(
            tf.reduce_any(matches, axis=1),
            tf.argmax(tf.cast(matches, tf.int8), axis=1, output_type=tf.int32),
            -1,
        )
        return units.with_flat_values(codes)

    def tf_decode(self, codes: tf.Tensor) -> tf.Tensor:
        """[batch, time] int codes padded with -1 -> [batch] strings (blank and padding dropped)."""
        codes = tf.convert_to_tensor(codes)
        valid = tf.logical_and(codes >= 0, codes < len(self.units))
        units = tf.gather(tf.constant(self.units + [""]), tf.where(valid, codes, len(self.units)))
        return tf.strings.reduce_join(units, axis=-1)


def _split(label: str, split_delimiter: str) -> list[str]:
    if not split_delimiter:
        return list(label)
    return [piece for piece in label.split(split_delimiter) if piece]


# Where the alphabet comes from, in the order the settings are looked at. Params.validate refuses
# settings that name two sources, so the order only matters once a run has saved its units.
SOURCE_UNITS = "alphabet_units"  # resolved already (a saved run)
SOURCE_LOOKUP_FILE = "lookup_alphabet_file"
SOURCE_STRING = "alphabet_string"
SOURCE_BUILTIN = "alphabet"
SOURCE_TRAINING_LABELS = "training labels"  # alphabet='auto'


def alphabet_source(params) -> str:
    """Which setting the alphabet of ``params`` comes from: one of the ``SOURCE_*`` names."""
    for source in (SOURCE_UNITS, SOURCE_LOOKUP_FILE, SOURCE_STRING):
        if getattr(params, source):
            return source
    return SOURCE_BUILTIN if params.alphabet != "auto" else SOURCE_TRAINING_LABELS


def resolve_alphabet(params, training_labels: Iterable[str] = ()) -> Alphabet:
    """The Alphabet that ``params`` asks for (see :func:`alphabet_source`)."""
    delimiter, fold = params.string_split_delimiter, params.alphabet_case_fold
    source = alphabet_source(params)
    if source == SOURCE_UNITS:
        return Alphabet.from_params(params)
    if source == SOURCE_LOOKUP_FILE:
        return Alphabet.from_lookup_json(params.lookup_alphabet_file, delimiter, fold)
    if source == SOURCE_STRING:
        return Alphabet.from_string(params.alphabet_string, delimiter, fold)
    if source == SOURCE_BUILTIN:
        return Alphabet.builtin(params.alphabet, delimiter, fold)
    labels = list(training_labels)
    if not labels:
        raise AlphabetError("alphabet='auto' needs training labels to collect the alphabet from")
    return Alphabet.from_labels(labels, delimiter, fold)


def with_resolved_alphabet(params, train_csv_files: Sequence[str]):
    """``params`` with ``alphabet_units`` filled in, from the training labels when
    ``alphabet='auto'``."""
    if alphabet_source(params) == SOURCE_UNITS:
        return params
    needs_labels = alphabet_source(params) == SOURCE_TRAINING_LABELS
    labels = read_labels(train_csv_files, params) if needs_labels else []
    return params.with_overrides({SOURCE_UNITS: resolve_alphabet(params, labels).units})


def read_labels(csv_files: Sequence[str], params) -> list[str]:
    """Every label of ``csv_files``; a malformed row is skipped when ``params.skip_bad_samples``,
    else an error (``DataError``) naming it."""
    labels = []
    for csv_file in csv_files:
        content = read_csv_rows(csv_file, params.csv_delimiter)
        rows = content.rows if params.skip_bad_samples else content.strict()
        labels += [row.label for row in rows]
    return labels
