"""tf_crnn.lexicon: the protocol's normalisation, the BK-tree, CTC scoring of words, and the choice
of a lexicon word, on hand-made frame probabilities whose right answers are known."""

import numpy as np
import pytest
import tensorflow as tf

from tf_crnn.alphabet import Alphabet
from tf_crnn.lexicon import (
    BKTree,
    LexiconDecoder,
    ProtocolClasses,
    ctc_log_likelihoods,
    normalize,
)
from tf_crnn.metrics import edit_distance

LOWER = Alphabet(list("abcdefghijklmnopqrstuvwxyz0123456789"))


def frames(alphabet: Alphabet, spec: list[dict[str, float]]) -> np.ndarray:
    """Log-probabilities [time, classes] of ``alphabet``: each frame gives its units the
    probabilities listed, and the rest to the blank."""
    probabilities = np.zeros((len(spec), alphabet.num_classes))
    for step, frame in enumerate(spec):
        for unit, probability in frame.items():
            probabilities[step, alphabet.code_of(unit)] = probability
        probabilities[step, alphabet.blank_code] = 1 - sum(frame.values())
    with np.errstate(divide="ignore"):
        return np.log(probabilities)


def spelled(text: str, alphabet: Alphabet = LOWER, confidence: float = 0.9) -> list[dict]:
    """Frames that read ``text`` clearly: each unit, then a blank frame."""
    spec = []
    for unit in text:
        spec += [{unit: confidence}, {}]
    return spec


def test_normalize_lower_cases_and_keeps_letters_and_digits_only():
    assert normalize("Hello, World!") == "helloworld"
    assert normalize("CAFÉ-42") == "café42"
    assert normalize(" ?!-") == ""


def test_bk_tree_finds_exactly_the_words_within_the_radius():
    rng = np.random.default_rng(0)
    words = ["".join(rng.choice(list("abcde"), rng.integers(1, 7))) for _ in range(300)]
    tree = BKTree(words)
    assert len(tree) == len(set(words))  # a word already in the tree is not added twice
    for query in ["abc", "", "eeeeeee", words[7]]:
        for radius in (0, 1, 3):
            expected = {(edit_distance(query, w), w) for w in words}
            expected = {item for item in expected if item[0] <= radius}
            assert set(tree.within(query, radius)) == expected, (query, radius)
    assert BKTree().within("abc", 3) == []


def test_ctc_likelihood_of_a_two_frame_example_worked_by_hand():
    alphabet = Alphabet(["a"])
    log_probs = frames(alphabet, [{"a": 0.6}, {"a": 0.3}])
    # "a": paths a-a, a-blank, blank-a = .18 + .42 + .12; "": blank-blank; "aa" needs 3 frames.
    scores = ctc_log_likelihoods(log_probs, [[0], [], [0, 0]], alphabet.blank_code)
    np.testing.assert_allclose(np.exp(scores[:2]), [0.72, 0.28])
    assert scores[2] == -np.inf


def test_ctc_likelihood_is_minus_tensorflows_ctc_loss():
    rng = np.random.default_rng(1)
    steps, classes = 12, 6
    logits = rng.normal(size=(steps, classes)) * 2
    log_probs = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    labels = [[0, 1, 2], [1, 1], [3], [0, 0, 0, 0, 0, 0], [0, 1, 0, 1, 0, 1, 0, 1]]
    ours = ctc_log_likelihoods(log_probs, labels, classes - 1)
    for label, score in zip(labels, ours):
        loss = tf.nn.ctc_loss(
            labels=tf.constant([label]),
            logits=tf.constant(log_probs[np.newaxis], tf.float32),
            label_length=[len(label)],
            logit_length=[steps],
            logits_time_major=False,
            blank_index=classes - 1,
        )
        np.testing.assert_allclose(score, -loss.numpy()[0], rtol=1e-5)


def test_protocol_classes_merge_capitals_and_send_punctuation_to_the_blank():
    alphabet = Alphabet(["a", "A", "b", "-", " ", "ch"], split_delimiter="|")
    classes = ProtocolClasses(alphabet)
    assert classes.characters == ["a", "b"] and classes.blank == 2
    assert classes.codes("ab") == [0, 1] and classes.codes("abc") is None
    log_probs = frames(alphabet, [{"a": 0.3, "A": 0.2, "b": 0.1, "-": 0.1, " ": 0.1, "ch": 0.1}])
    # a+A, b, and blank+'-'+' '; the multi-character unit 'ch' counts for no class.
    np.testing.assert_allclose(np.exp(classes.project(log_probs)), [[0.5, 0.1, 0.1 + 0.1 + 0.1]])


def test_the_lexicon_corrects_a_misread_letter_by_ctc_probability():
    # "hello" with its 'e' read as 'c' (0.5 against 0.4): the best path is "hcllo".
    spec = spelled("hello")
    spec[2] = {"c": 0.5, "e": 0.4, "a": 0.05}
    log_probs = frames(LOWER, spec)
    classes = ProtocolClasses(LOWER)
    decoder = LexiconDecoder(["Hallo", "HELLO", "world"], classes, score_all_up_to=0)
    choice = decoder.decode("hcllo", log_probs)
    assert (choice.word, choice.candidates, choice.fell_back) == ("hello", 2, False)
    (hello,) = ctc_log_likelihoods(log_probs, [LOWER.encode("hello")], LOWER.blank_code)
    np.testing.assert_allclose(choice.log_probability, hello)


def test_a_case_sensitive_model_is_scored_over_every_capitalisation():
    alphabet = Alphabet(list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"))
    spec = spelled("hello", alphabet)
    spec[2] = {"c": 0.4, "e": 0.3, "E": 0.25}  # 'c' is the likeliest unit, 'e' the likeliest letter
    decoder = LexiconDecoder(["hcllo", "hello"], ProtocolClasses(alphabet))
    assert decoder.decode("hcllo", frames(alphabet, spec)).word == "hello"


def test_only_words_within_the_distance_are_scored_unless_the_lexicon_is_small():
    log_probs = frames(LOWER, spelled("hello"))
    classes = ProtocolClasses(LOWER)
    lexicon = ["hello", "hell", "world"]
    # A reading of "help" (as if beam search had gone astray): "hello" is 2 edits away.
    for use_bk_tree in (True, False):
        near = LexiconDecoder(lexicon, classes, 1, score_all_up_to=0, use_bk_tree=use_bk_tree)
        assert near.decode("help", log_probs).word == "hell"
    whole = LexiconDecoder(lexicon, classes, 1, score_all_up_to=3)
    assert whole.decode("help", log_probs).word == "hello"
    # Nothing within the distance: the most probable word of the whole lexicon.
    far = LexiconDecoder(lexicon, classes, 1, score_all_up_to=0).decode("zzzzzzz", log_probs)
    assert (far.word, far.candidates, far.fell_back) == ("hello", 3, True)


def test_words_the_model_cannot_spell_are_set_aside_and_ties_go_to_the_nearest_word():
    classes = ProtocolClasses(Alphabet(list("abc")))
    decoder = LexiconDecoder(["Bac", "abé", "ab", "--", "cab", "bac"], classes)
    assert decoder.words == ["bac", "ab", "cab"]  # normalised, deduplicated, "--" dropped
    assert decoder.unscorable == ["abé"]
    # One frame cannot hold any of these words: all are impossible, so the nearest one wins.
    one_frame = frames(Alphabet(list("abc")), [{"a": 0.5}])
    choice = decoder.decode("cabb", one_frame)
    assert choice.word == "cab" and choice.log_probability == -np.inf
    assert LexiconDecoder(["é"], classes).decode("a", one_frame).word == ""


@pytest.mark.parametrize("use_bk_tree", [True, False])
def test_bk_tree_and_scan_choose_the_same_words(use_bk_tree):
    rng = np.random.default_rng(2)
    words = ["".join(rng.choice(list("abcdef"), rng.integers(2, 6))) for _ in range(200)]
    classes = ProtocolClasses(Alphabet(list("abcdef")))
    reference = LexiconDecoder(words, classes, score_all_up_to=10_000)  # every word scored
    decoder = LexiconDecoder(words, classes, score_all_up_to=0, use_bk_tree=use_bk_tree)
    for word in words[:20]:
        log_probs = frames(Alphabet(list("abcdef")), spelled(word, confidence=0.7))
        reading = word[:-1]  # one edit away
        assert decoder.decode(reading, log_probs).word == reference.decode(reading, log_probs).word
