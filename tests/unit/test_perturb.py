"""Perturbations: deterministic, each changes text, and normalize() folds the evasion kinds back."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from textguard.perturb import PERTURBATIONS, augment, perturb
from textguard.text import normalize

SENTENCES = [
    "I will meet you at the station tomorrow at 10:30.",
    "Please share the slides, thanks!",
    "That was a great presentation, Alice.",
    "We need to finish the REPORT by Friday",
    "Can I ask a question about the budget?",
    "email me at john.doe@example.com or call",
    "The price is $5 for 3 items (see page 2)",
    "Hello world",
    "a x meeting y b",
    "Русский текст and English words",
]
VOCABULARY = ["the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "meeting", "agenda", "report"]
VOCABULARY += ["budget", "slides", "please", "a", "I", "x"]
sentences = st.lists(st.sampled_from(VOCABULARY), min_size=1, max_size=12).map(" ".join)
EVASIONS = ("leetspeak", "homoglyphs", "zero_width", "spacing")


def test_kinds() -> None:
    assert set(PERTURBATIONS) == {"leetspeak", "homoglyphs", "zero_width", "spacing", "caption", "typos"}


@pytest.mark.parametrize("kind", sorted(PERTURBATIONS))
def test_deterministic_and_seed_dependent(kind: str) -> None:
    text = SENTENCES[0]
    assert perturb(text, kind, seed=3) == perturb(text, kind, seed=3)
    assert len({perturb(text, kind, seed=seed) for seed in range(8)}) > 1


@pytest.mark.parametrize("kind", sorted(PERTURBATIONS))
def test_each_kind_changes_text(kind: str) -> None:
    changed = [perturb(text, kind, seed=index) != text for index, text in enumerate(SENTENCES)]
    assert sum(changed) >= len(SENTENCES) - 1


@pytest.mark.parametrize("kind", ["zero_width", "homoglyphs", "leetspeak", "spacing"])
@pytest.mark.parametrize("index", range(len(SENTENCES)))
def test_normalize_folds_evasions_back(kind: str, index: int) -> None:
    text = SENTENCES[index]
    assert normalize(perturb(text, kind, seed=index)) == normalize(text)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=60), st.integers(0, 1000))
def test_zero_width_homoglyphs_and_leetspeak_fold_back_on_any_text(text: str, seed: int) -> None:
    for kind in ("zero_width", "homoglyphs", "leetspeak"):
        assert normalize(perturb(text, kind, seed)) == normalize(text)


@settings(max_examples=200, deadline=None)
@given(sentences, st.integers(0, 1000))
def test_evasions_fold_back_on_sentences(text: str, seed: int) -> None:
    for kind in EVASIONS:
        assert normalize(perturb(text, kind, seed)) == normalize(text), kind


def test_examples_look_like_their_kind() -> None:
    text = "please see the meeting notes"
    assert any(char.isdigit() or char in "@$" for char in perturb(text, "leetspeak", 1))
    assert not perturb(text, "homoglyphs", 1).isascii()
    assert any(char in "\u200b\u200c\u200d\u2060\ufeff\u00ad" for char in perturb(text, "zero_width", 1))
    assert len(perturb(text, "spacing", 1).split()) > len(text.split())
    assert perturb("Please, SEE the notes!", "caption", 1).islower()
    typo = perturb(text, "typos", 1)
    assert typo != text and sorted(typo.split()) != sorted(text.split())


def test_texts_without_words_are_returned_unchanged() -> None:
    for kind in ("leetspeak", "homoglyphs", "spacing", "typos"):
        assert perturb("12 34 !!", kind, 0) == "12 34 !!"
        assert perturb("", kind, 0) == ""


def test_unknown_kind() -> None:
    with pytest.raises(
        ValueError, match="unknown perturbation 'rot13'; allowed kinds: leetspeak, homoglyphs"
    ):
        perturb("hello", "rot13", 0)
    with pytest.raises(ValueError, match="allowed kinds"):
        augment(["hello"], 0.5, kinds=["leetspeak", "rot13"])


def test_augment() -> None:
    texts = [f"{text} {index}" for index, text in enumerate(SENTENCES * 3)]
    out = augment(texts, 0.5, seed=4)
    assert out == augment(texts, 0.5, seed=4)
    assert len(out) == len(texts)
    changed = sum(a != b for a, b in zip(out, texts, strict=True))
    assert 0.35 * len(texts) <= changed <= 0.5 * len(texts)  # round(rate * n), minus no-op draws
    assert augment(texts, 0.0, seed=4) == texts
    only_zero_width = augment(texts, 1.0, kinds=["zero_width"], seed=1)
    assert [normalize(text) for text in only_zero_width] == [normalize(text) for text in texts]
    assert augment([], 0.5) == []


@pytest.mark.parametrize("rate", [-0.1, 1.5])
def test_augment_rejects_bad_rate(rate: float) -> None:
    with pytest.raises(ValueError, match="rate must be between 0 and 1"):
        augment(["hello"], rate)


def test_augment_rejects_no_kinds() -> None:
    with pytest.raises(ValueError, match="at least one perturbation"):
        augment(["hello"], 0.5, kinds=[])


def test_perturbation_functions_take_an_explicit_generator() -> None:
    # The registry's callables are usable directly with a caller's own generator (training loops).
    rng = random.Random(0)
    for function in PERTURBATIONS.values():
        assert isinstance(function("see you at the meeting", rng), str)
