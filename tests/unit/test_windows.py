"""Whole-text coverage: overlapping token windows, each framed like a whole sequence, and the Scorer's
maximum over them; the fail-closed check on non-finite scores."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from tokenizers import Tokenizer

from textguard.encoding import encode, encode_windows, special_frame, untruncated_copy
from textguard.errors import InvalidScoresError
from textguard.scorer import Scorer
from textguard.text import normalize

LONG = " ".join(f"word{index % 17} the meeting starts now" for index in range(60))


@pytest.fixture(scope="module", params=["tiny_artifact", "tiny_xlmr_artifact"])
def tokenizer(request: pytest.FixtureRequest) -> Tokenizer:
    directory: Path = request.getfixturevalue(request.param)
    return untruncated_copy(Tokenizer.from_file(str(directory / "tokenizer.json")))


def _content(tokenizer: Tokenizer, text: str) -> list[int]:
    return list(tokenizer.encode(normalize(text), add_special_tokens=False).ids)


def test_a_text_that_fits_gets_exactly_the_ids_encode_gives_it(tokenizer: Tokenizer) -> None:
    texts = ["can you share your screen", "merci à tous", "", "x" * 500]
    windows = encode_windows(texts, tokenizer, 64)
    truncating = Tokenizer.from_str(tokenizer.to_str())
    assert windows.owner == [0, 1, 2, 3]
    assert windows.input_ids == encode(texts, truncating, 64)["input_ids"]


def test_every_token_is_read_in_framed_windows_that_overlap_by_half(tokenizer: Tokenizer) -> None:
    max_length = 32
    head, tail = special_frame(tokenizer)
    content = _content(tokenizer, LONG)
    windows = encode_windows([LONG], tokenizer, max_length)
    size = max_length - len(head) - len(tail)
    assert len(content) > 4 * size
    pieces = []
    for ids in windows.input_ids:
        assert len(ids) <= max_length
        assert ids[: len(head)] == head and ids[len(ids) - len(tail) :] == tail  # [CLS] ... [SEP]
        pieces.append(ids[len(head) : len(ids) - len(tail)])
    step = size - size // 2
    for number, piece in enumerate(pieces):
        assert piece == content[number * step : number * step + size]
    # Windows start every half window until the text ends: every token is read, and any run of up to
    # half a window lies whole in a window behind less than half a window of other text.
    assert len(pieces) == -(-len(content) // step)
    for start in range(len(content) - step):
        number = start // step
        assert content[start : start + step] == pieces[number][start - number * step :][:step]


def test_cost_is_linear_in_length(tokenizer: Tokenizer) -> None:
    counts = [len(encode_windows([LONG * copies], tokenizer, 32)) for copies in (1, 2, 4)]
    tokens = [sum(len(ids) for ids in encode_windows([LONG * c], tokenizer, 32).input_ids) for c in (1, 2, 4)]
    assert counts[2] <= 4 * counts[0] + 1 and counts[1] >= 2 * counts[0] - 1
    assert tokens[2] <= 2.2 * 4 * len(_content(tokenizer, LONG))  # about twice the text's tokens


def test_spans_locate_each_window_in_the_normalised_text(tokenizer: Tokenizer) -> None:
    text = "Ｓｈａｒｅ your screen " + LONG  # full-width letters: normalisation changes the text
    windows = encode_windows([text], tokenizer, 32)
    normalised = normalize(text)
    offsets = tokenizer.encode(normalised, add_special_tokens=False).offsets
    head, tail = special_frame(tokenizer)
    step = (32 - len(head) - len(tail)) - (32 - len(head) - len(tail)) // 2
    for number, (ids, span) in enumerate(zip(windows.input_ids, windows.spans, strict=True)):
        first, last = number * step, number * step + len(ids) - len(head) - len(tail) - 1
        assert span == (offsets[first][0], offsets[last][1])
    assert windows.spans[0][0] == 0 and windows.spans[-1][1] == len(normalised)


def test_a_text_prefix_is_in_every_window(tokenizer: Tokenizer) -> None:
    prefix = "query: "
    prefix_ids = _content(tokenizer, prefix)
    head, _ = special_frame(tokenizer)
    windows = encode_windows([LONG], tokenizer, 32, prefix=prefix)
    assert len(windows) > 2
    for ids in windows.input_ids:
        assert ids[len(head) : len(head) + len(prefix_ids)] == prefix_ids and len(ids) <= 32
    # Spans still count characters of the text itself, not of the prefix.
    assert windows.spans[0][0] == 0


def test_a_shared_truncating_tokenizer_is_refused(tiny_artifact: Path) -> None:
    truncating = Tokenizer.from_file(str(tiny_artifact / "tokenizer.json"))
    truncating.enable_truncation(max_length=8)
    with pytest.raises(ValueError, match="untruncated_copy"):
        encode_windows(["hello"], truncating, 8)


def test_the_scorer_takes_each_labels_highest_window(tiny_artifact: Path) -> None:
    scorer = Scorer.from_artifact(tiny_artifact)
    texts = [LONG, "short message"]
    windows = scorer.windows(texts)
    per_window = scorer.score_windows(texts)
    assert per_window.probabilities.shape == (len(windows), 3)
    expected = np.vstack([per_window.probabilities[per_window.windows_of(i)].max(axis=0) for i in (0, 1)])
    np.testing.assert_allclose(scorer.predict_proba(texts), expected, atol=1e-6)
    np.testing.assert_allclose(per_window.per_text(), expected, atol=1e-12)
    # Each window alone scores what the Scorer says it does.
    first = scorer.logits_from_ids(windows.input_ids[:1])
    np.testing.assert_allclose(
        1 / (1 + np.exp(-first[0] / scorer.spec.temperature)), per_window.probabilities[0], atol=1e-6
    )
    label = int(np.argmax(per_window.probabilities[per_window.windows_of(0), 0]))
    assert per_window.best_window(0, 0) == per_window.windows_of(0)[label]


def test_non_finite_logits_fail_closed(tiny_artifact: Path) -> None:
    import torch

    from textguard.backends import load_classifier
    from textguard.encoding import load_tokenizer
    from textguard.spec import load_spec

    model = load_classifier(tiny_artifact)
    with torch.no_grad():
        model.classifier.bias.fill_(float("nan"))
    scorer = Scorer.from_model(model, load_tokenizer(tiny_artifact, 64), load_spec(tiny_artifact))
    with pytest.raises(InvalidScoresError, match="invalid scores"):
        scorer.predict_proba(["hello"])
    with pytest.raises(InvalidScoresError):
        scorer.logits(["hello"])
    with torch.no_grad():
        model.classifier.bias.fill_(float("inf"))
    with pytest.raises(InvalidScoresError):
        scorer.score_windows(["hello"])
