"""Evidence by occlusion: spans land on the words that drive the score, in the text as the user wrote it."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest

from textguard.evidence import DEFAULT_MAX_VARIANTS, Span, explain
from textguard.text import normalize, normalize_with_offsets

THREAT = "I will shoot every one of them tomorrow"
# About 400 characters of ordinary meeting chat.
PADDING = (
    "hi all, thanks for joining the weekly sync. before we start, a few notes: the quarterly report "
    "is due on friday, please add your numbers to the shared sheet. marketing will present the new "
    "campaign next week and we still need volunteers for the office party. also, the coffee machine on "
    "the third floor is broken again, facilities know about it. anyway, let us get going with updates. "
)


class KeywordModel:
    """A scoring path in miniature: normalise, then each label adds the weights of its keywords.

    Like a real model on long text, every word also dilutes the score a little, so deleting padding
    nudges the probability (upwards): evidence must not mistake that noise for a cause.
    """

    def __init__(self, keywords: dict[int, dict[str, float]], labels: int = 3) -> None:
        self.keywords = keywords
        self.labels = labels
        self.calls: list[int] = []

    def __call__(self, texts: list[str]) -> np.ndarray:
        self.calls.append(len(texts))
        rows = []
        for text in texts:
            words = re.findall(r"\w+", normalize(text).casefold())
            row = []
            for label in range(self.labels):
                hits = self.keywords.get(label, {})
                score = 0.02 + sum(weight for word, weight in hits.items() if word in words)
                row.append(min(0.99, score) * (1 - 0.0005 * len(words)))
            rows.append(row)
        return np.asarray(rows)


def _texts(spans: list[Span]) -> list[str]:
    return [span.text for span in spans]


def test_span_lies_exactly_on_the_word() -> None:
    model = KeywordModel({0: {"shoot": 0.8}})
    result = explain(model, THREAT, [0])
    assert result == {0: [Span(start=7, end=12, text="shoot", weight=pytest.approx(0.8, abs=0.01))]}
    assert model.calls == [1 + len(THREAT.split())]  # one batch: the text and one variant per word


def test_adjacent_words_merge_and_distant_ones_do_not() -> None:
    model = KeywordModel({0: {"shoot": 0.4, "every": 0.3, "tomorrow": 0.2}})
    spans = explain(model, THREAT, [0])[0]
    assert _texts(spans) == ["shoot every", "tomorrow"]  # strongest first
    assert spans[0].weight == pytest.approx(0.4, abs=0.01)


def test_each_label_gets_its_own_spans() -> None:
    model = KeywordModel({0: {"shoot": 0.8}, 2: {"tomorrow": 0.7}})
    result = explain(model, THREAT, [0, 2])
    assert _texts(result[0]) == ["shoot"]
    assert _texts(result[2]) == ["tomorrow"]
    assert len(model.calls) == 1  # all labels from one batch


@pytest.mark.parametrize(
    "disguised",
    [
        "sh00t",  # leetspeak
        "ѕhооt",  # Cyrillic look-alikes
        "sh\u200bo\u200dot",  # zero-width characters inside
        "s h o o t",  # spelled out
        "ｓｈｏｏｔ",  # full-width
        "SHOOOOOOT",  # shouted and stretched: normalize() keeps "SHOOOT", the model reads it
    ],
)
def test_spans_map_back_through_normalize(disguised: str) -> None:
    # Disguised words before the target shift every offset; the span must still be the target as typed.
    prefix = "h3llo \u200b\u200bfriends, ｗｈａｔ a dаy. we  w i l l  "
    text = f"{prefix}{disguised}\u200b them"
    model = KeywordModel({0: {"shoot": 0.8, "shooot": 0.8}})
    spans = explain(model, text, [0])[0]
    assert _texts(spans) == [disguised]
    assert spans[0].start == len(prefix)


def test_padded_threat_spans_lie_on_the_threat_not_the_padding() -> None:
    text = PADDING + THREAT
    model = KeywordModel({0: {"shoot": 0.6, "tomorrow": 0.3}})
    spans = explain(model, text, [0])[0]
    assert _texts(spans) == ["shoot", "tomorrow"]
    assert all(span.start >= len(PADDING) for span in spans)
    # more words than the budget: a coarse pass, then the runs that mattered, within the bound
    assert sum(model.calls) <= 1 + DEFAULT_MAX_VARIANTS and len(model.calls) == 2


def test_window_that_fired_bounds_what_is_scored() -> None:
    text = PADDING + THREAT + ". " + PADDING
    start = text.index(THREAT)
    model = KeywordModel({0: {"shoot": 0.8}})
    spans = explain(model, text, [0], window=(start, start + len(THREAT)))[0]
    assert [(span.start, span.text) for span in spans] == [(start + 7, "shoot")]
    assert model.calls == [1 + len(THREAT.split())]


def test_window_from_normalised_offsets() -> None:
    # What a caller does: its window is a range of the normalised text; original_span maps it back.
    text = "\u200b\u200bhi there ｆｒｉｅｎｄ. " + THREAT
    normalized = normalize_with_offsets(text)
    begin = normalized.text.index("I will")
    window = normalized.original_span(begin, len(normalized.text))
    spans = explain(KeywordModel({0: {"shoot": 0.8}}), text, [0], window=window)[0]
    assert _texts(spans) == ["shoot"] and text[spans[0].start : spans[0].end] == "shoot"


@pytest.mark.parametrize("words", [1, 5, 47, 48, 49, 120, 700])
@pytest.mark.parametrize("max_variants", [2, 7, 32, 48])
def test_cost_bound(words: int, max_variants: int) -> None:
    text = " ".join(f"w{index}x" for index in range(words - 1)) + " bomb"
    model = KeywordModel({1: {"bomb": 0.9}})
    spans = explain(model, text, [1], max_variants=max_variants)[1]
    assert sum(model.calls) <= 1 + max_variants
    assert len(model.calls) <= 2
    assert spans and spans[0].text.endswith("bomb")
    if words <= max_variants * max_variants // 4:  # enough budget to narrow a run down to the word
        assert _texts(spans) == ["bomb"]
    else:  # the word's run, split into as many pieces as the budget left pays for
        run = math.ceil(words / (max_variants // 2))
        assert len(spans[0].text.split()) <= math.ceil(run / (max_variants - max_variants // 2))


def test_max_spans_keeps_the_strongest() -> None:
    model = KeywordModel({0: {"i": 0.1, "shoot": 0.5, "one": 0.3, "tomorrow": 0.2}})
    spans = explain(model, THREAT, [0], max_spans=2, relative_drop=0.0)[0]
    assert _texts(spans) == ["shoot", "one"]


def test_no_evidence_when_no_word_matters() -> None:
    assert explain(KeywordModel({}), THREAT, [0, 1]) == {0: [], 1: []}
    assert explain(KeywordModel({0: {"x": 1}}), "   \u200b ", [0]) == {0: []}


def test_spaceless_scripts_are_occluded_per_character() -> None:
    text = "我们明天要杀了他们"
    model = KeywordModel({0: {}})

    def reacts_to_kill(texts: list[str]) -> np.ndarray:
        model.calls.append(len(texts))
        return np.asarray([[0.9 if "杀" in t else 0.05] for t in texts])

    spans = explain(reacts_to_kill, text, [0])[0]
    assert _texts(spans) == ["杀"]


def test_bad_arguments_are_refused() -> None:
    model = KeywordModel({0: {"shoot": 0.8}})
    with pytest.raises(ValueError, match="window"):
        explain(model, THREAT, [0], window=(5, 500))
    with pytest.raises(ValueError, match="max_variants"):
        explain(model, THREAT, [0], max_variants=1)
    with pytest.raises(ValueError, match="outside the 3 labels"):
        explain(model, THREAT, [3])
    with pytest.raises(ValueError, match="shape"):
        explain(lambda texts: np.zeros(len(texts)), THREAT, [0])
    with pytest.raises(ValueError, match="non-finite"):
        explain(lambda texts: np.full((len(texts), 1), np.nan), THREAT, [0])


def test_with_a_real_scorer(tiny_artifact: Path) -> None:
    # The contract with the real scoring path (tiny random model): shapes, bounds and positions hold.
    from textguard.scorer import Scorer

    scorer = Scorer.from_artifact(tiny_artifact)
    calls: list[int] = []

    def probabilities(texts: list[str]) -> np.ndarray:
        calls.append(len(texts))
        return scorer.predict_proba(texts)

    text = PADDING + "I w\u200bill sh00t every one of them tomorrow"
    result = explain(probabilities, text, [0, 1, 2], max_variants=16, min_drop=0.0, relative_drop=0.0)
    assert sorted(result) == [0, 1, 2]
    assert sum(calls) <= 17
    for spans in result.values():
        assert len(spans) <= 3
        for span in spans:
            assert 0 <= span.start < span.end <= len(text) and text[span.start : span.end] == span.text
            assert span.weight >= 0.0
