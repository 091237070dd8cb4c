"""Lexicon-constrained decoding, as in Shi, Bai & Yao 2015 (section 2.4), under the evaluation
protocol of scene-text recognition: case-insensitive, letters and digits only.

Given the per-frame probabilities ``y`` of an image and a lexicon ``D``, the answer is the lexicon
word of highest CTC probability, ``argmax_{w in D} p(w | y)``. Scoring every word of a large lexicon
for every image is slow, so the paper scores only the words within an edit distance ``δ`` of the
lexicon-free reading, found with a BK-tree (:class:`BKTree`); ``δ = 3`` in the paper.

The protocol compares :func:`normalize`-d text, so words are scored against the model's classes
seen the same way (:class:`ProtocolClasses`): the columns of units that normalise to the same
character are merged ('a' and 'A' become one class), and units that normalise to nothing (space,
punctuation) are merged into the CTC blank, since normalisation deletes them just as decoding
deletes blanks. A case-sensitive model is thereby scored on a lower-case lexicon by the total
probability of every capitalisation, frame by frame.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from tf_crnn.alphabet import Alphabet
from tf_crnn.metrics import edit_distance

# The paper's candidate radius: lexicon words within this edit distance of the reading are scored.
PAPER_MAX_DISTANCE = 3


def normalize(text: str) -> str:
    """``text`` lower-cased, keeping only letters and digits (Unicode ``str.isalnum``; on the
    English benchmarks exactly ``[a-z0-9]``)."""
    return "".join(character for character in text.lower() if character.isalnum())


class BKTree:
    """A Burkhard-Keller tree: words indexed by edit distance, for radius searches.

    Every child of a node sits under the key ``d(node, child)``. By the triangle inequality a word
    within ``radius`` of a query ``q`` can only be under keys ``d(node, q) ± radius``, so a search
    skips the other subtrees. Built once per lexicon; each search then computes the distance to a
    fraction of the words.
    """

    def __init__(self, words: Iterable[str] = ()):
        self._root: tuple[str, dict[int, tuple]] | None = None
        self._size = 0
        for word in words:
            self.add(word)

    def __len__(self) -> int:
        return self._size

    def add(self, word: str) -> None:
        """Inserts ``word``; a word already in the tree is not added twice."""
        if self._root is None:
            self._root, self._size = (word, {}), 1
            return
        node_word, children = self._root
        while True:
            distance = edit_distance(word, node_word)
            if distance == 0:
                return
            if distance not in children:
                children[distance] = (word, {})
                self._size += 1
                return
            node_word, children = children[distance]

    def within(self, query: str, radius: int) -> list[tuple[int, str]]:
        """(distance, word) of every word at most ``radius`` edits from ``query``, in no
        particular order."""
        found = []
        pending = [self._root] if self._root is not None else []
        while pending:
            node_word, children = pending.pop()
            distance = edit_distance(query, node_word)
            if distance <= radius:
                found.append((distance, node_word))
            pending += [child for key, child in children.items() if abs(key - distance) <= radius]
        return found


class ProtocolClasses:
    """The model's classes as the protocol sees them: one class per normalised character, and the
    blank last.

    Class ``k`` gathers the alphabet's units whose :func:`normalize`-d form is ``characters[k]``;
    the blank gathers the CTC blank and the units that normalise to nothing. Units that normalise
    to several characters (multi-character units, e.g. ``"ch"``) belong to no class: their
    probability counts for no lexicon word.

    One approximation, for case-sensitive alphabets only: two frames 'a' then 'A' read as "aA",
    but as one merged class they collapse to "a" like a repeated unit.
    """

    def __init__(self, alphabet: Alphabet):
        keys = [normalize(unit) for unit in alphabet.units]
        self.characters = sorted({key for key in keys if len(key) == 1})
        self.blank = len(self.characters)
        self._class_of = {character: code for code, character in enumerate(self.characters)}
        # membership[unit column, class]: which model columns add up to each protocol class.
        self._membership = np.zeros((alphabet.num_classes, self.blank + 1), np.float64)
        for column, key in enumerate(keys):
            if len(key) == 1:
                self._membership[column, self._class_of[key]] = 1
            elif not key:
                self._membership[column, self.blank] = 1
        self._membership[alphabet.blank_code, self.blank] = 1

    def codes(self, word: str) -> list[int] | None:
        """The class codes of a normalised ``word``, or None if a character has no class."""
        codes = [self._class_of.get(character) for character in word]
        return None if None in codes else codes

    def project(self, frame_log_probs: np.ndarray) -> np.ndarray:
        """Model log-probabilities [time, model classes] -> [time, protocol classes], blank last:
        each class's log of the summed probabilities of its units."""
        frames = np.asarray(frame_log_probs, np.float64)
        peak = frames.max(axis=1, keepdims=True)
        with np.errstate(divide="ignore"):  # far below the frame's peak, exp underflows to 0
            return np.log(np.exp(frames - peak) @ self._membership) + peak


def ctc_log_likelihoods(
    frame_log_probs: np.ndarray, labels: Sequence[Sequence[int]], blank: int
) -> np.ndarray:
    """``log p(label | frames)`` of each label: the CTC forward algorithm, over all labels at once.

    ``frame_log_probs`` is [time, classes] of one image (its own time steps only), normalised per
    frame; the result is then ``-tf.nn.ctc_loss`` of each label. A label that needs more frames
    than there are (its length plus its repeated neighbours) gets ``-inf``.

    The forward variable runs over the label with a blank before, between and after its units
    (``2 * length + 1`` states); a state is reached from itself, from the state before, or by
    skipping the blank before it when its unit differs from the one two states back. Labels are
    padded with blanks to the longest one: states only feed later states, so padding never reaches
    a label's own final states.
    """
    frames = np.asarray(frame_log_probs, np.float64)
    count = len(labels)
    lengths = np.array([len(label) for label in labels], np.int64)
    states = 2 * int(lengths.max(initial=0)) + 1
    extended = np.full((count, states), blank, np.int64)
    for row, label in enumerate(labels):
        extended[row, 1 : 2 * len(label) : 2] = label
    can_skip = np.zeros((count, states), bool)
    can_skip[:, 2:] = (extended[:, 2:] != blank) & (extended[:, 2:] != extended[:, :-2])

    alpha = np.full((count, states), -np.inf)
    alpha[:, 0] = frames[0, blank]
    if states > 1:
        alpha[:, 1] = frames[0, extended[:, 1]]
    for frame in frames[1:]:
        from_before = np.pad(alpha[:, :-1], ((0, 0), (1, 0)), constant_values=-np.inf)
        skipped = np.pad(alpha[:, :-2], ((0, 0), (2, 0)), constant_values=-np.inf)
        skipped[~can_skip] = -np.inf
        alpha = np.logaddexp(np.logaddexp(alpha, from_before), skipped) + frame[extended]
    rows = np.arange(count)
    ends = 2 * lengths  # the final blank state; the last unit's state is just before it
    last_unit = np.where(lengths > 0, alpha[rows, np.maximum(ends - 1, 0)], -np.inf)
    return np.logaddexp(alpha[rows, ends], last_unit)


@dataclass
class Choice:
    """The lexicon word chosen for one image, and how."""

    word: str  # normalised; "" when the lexicon has no scorable word
    log_probability: float  # log p(word | frames)
    candidates: int  # how many words were scored
    fell_back: bool  # no word was within the distance: the whole lexicon was scored


class LexiconDecoder:
    """Chooses, for an image's lexicon-free reading and frame probabilities, the lexicon word of
    highest CTC probability.

    The candidates are every word when the lexicon has at most ``score_all_up_to`` scorable words,
    else the words within ``max_distance`` edits of the normalised reading (the paper's approach),
    found with a BK-tree when ``use_bk_tree`` (worth building for a lexicon searched for many
    images) or by a scan (a per-image lexicon, searched once). When no word is that close, every
    word is scored: the paper defines the answer as the most probable word of the whole lexicon,
    the distance only saves time, and a reading that far off is a poor guide to which word is the
    nearest. Ties go to the word nearest the reading, then to the first in the lexicon.

    Words are normalised (:func:`normalize`) and deduplicated; a word left empty is dropped, and a
    word with a character the model has no class for cannot be scored and goes to ``unscorable``.
    """

    def __init__(
        self,
        words: Iterable[str],
        classes: ProtocolClasses,
        max_distance: int = PAPER_MAX_DISTANCE,
        score_all_up_to: int = 100,
        use_bk_tree: bool = True,
    ):
        self.classes = classes
        self.max_distance = max_distance
        distinct = [word for word in dict.fromkeys(normalize(w) for w in words) if word]
        self._codes = {word: classes.codes(word) for word in distinct}
        self.unscorable = [word for word in distinct if self._codes[word] is None]
        self.words = [word for word in distinct if self._codes[word] is not None]
        self._rank = {word: rank for rank, word in enumerate(self.words)}
        self._score_all = len(self.words) <= score_all_up_to
        self._tree = BKTree(self.words) if use_bk_tree and not self._score_all else None

    def candidates(self, reading: str) -> list[str]:
        """The words within ``max_distance`` of the normalised ``reading``, in lexicon order (all
        words for a small lexicon)."""
        if self._score_all:
            return list(self.words)
        if self._tree is not None:
            near = [word for _, word in self._tree.within(reading, self.max_distance)]
            return sorted(near, key=self._rank.__getitem__)
        return [
            word
            for word in self.words
            # A length difference is a lower bound of the distance: most words stop there.
            if abs(len(word) - len(reading)) <= self.max_distance
            and edit_distance(word, reading) <= self.max_distance
        ]

    def decode(self, reading: str, frame_log_probs: np.ndarray) -> Choice:
        """The lexicon word for an image read as ``reading`` (any text; normalised here) with
        ``frame_log_probs`` [time, model classes] (its own time steps only)."""
        reading = normalize(reading)
        if not self.words:
            return Choice("", -np.inf, 0, fell_back=False)
        candidates = self.candidates(reading)
        fell_back = not candidates
        if fell_back:
            candidates = list(self.words)
        scores = ctc_log_likelihoods(
            self.classes.project(frame_log_probs),
            [self._codes[word] for word in candidates],
            self.classes.blank,
        )
        best = scores.max()
        tied = [word for word, score in zip(candidates, scores) if score == best]
        word = min(tied, key=lambda w: edit_distance(w, reading))  # min keeps lexicon order
        return Choice(word, float(best), len(candidates), fell_back)
