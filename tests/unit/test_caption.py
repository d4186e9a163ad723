"""Caption view: deterministic, caption-like (case, punctuation, numbers, fillers, links, segments)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from textguard.caption import (
    FILLERS,
    CaptionConfig,
    caption_rows,
    caption_text,
    seeded_rng,
    to_caption_style,
)
from textguard.errors import ConfigError
from textguard.text import normalize

LONG = (
    "Good morning everyone, thanks for joining the weekly planning meeting. Today we will review the "
    "budget, the hiring plan and the launch timeline, then take questions from the team at the end."
)


def test_deterministic_for_text_and_seed() -> None:
    first = to_caption_style(LONG, seed=7, filler_rate=0.3)
    assert to_caption_style(LONG, seed=7, filler_rate=0.3) == first
    assert any(to_caption_style(LONG, seed=seed, filler_rate=0.3) != first for seed in range(1, 6))


def test_seeded_rng_is_stable_across_processes() -> None:
    # A fixed value: would change if the seed came from hash() (PYTHONHASHSEED) or global random.
    assert seeded_rng(0, "hello").random() == seeded_rng(0, "hello").random()
    assert seeded_rng(0, "hello").randrange(10**9) == 119131959  # pinned: prepared data depends on it
    assert seeded_rng(0, "a\ud800").random() != seeded_rng(1, "a\ud800").random()


def test_lower_case_without_punctuation() -> None:
    assert caption_text("Hello, World! How are YOU?", seed=0, filler_rate=0) == "hello world how are you"
    assert caption_text("Don't stop; it's fine.", seed=0, filler_rate=0) == "don't stop it's fine"


@pytest.mark.parametrize(
    ("text", "language", "expected"),
    [
        ("I have 3 cats", "en", "i have three cats"),
        ("J'ai 3 chats", "fr", "j'ai trois chats"),
        ("Ich habe 3 Katzen", "de", "ich habe drei katzen"),
        ("Tengo 21 gatos", "es", "tengo veintiuno gatos"),
        ("Tenho 2 gatos", "pt-BR", "tenho dois gatos"),
        ("У меня 5 кошек", "ru", "у меня пять кошек"),
        ("Meet at 10:30", "en", "meet at ten thirty"),
        ("the 3rd time", "en", "the third time"),
        ("1,000 people", "en", "one thousand people"),
        ("2,5 km", "fr", "deux virgule cinq km"),
        ("I have 3 cats", "xx", "i have three cats"),  # unknown language: English numbers
    ],
)
def test_numbers_are_spelled_in_the_row_language(text: str, language: str, expected: str) -> None:
    assert caption_text(text, language=language, seed=0, filler_rate=0) == expected


def test_long_digit_strings_are_read_digit_by_digit() -> None:
    assert caption_text("call 0123456789012", seed=0, filler_rate=0).startswith("call zero one two three")


def test_fillers_come_from_the_language() -> None:
    words = caption_text(LONG, seed=3, filler_rate=1.0).split()
    assert len(words) >= 2 * len(LONG.split())  # every word got a filler before it
    french = caption_text("bonjour à tous et merci", language="fr", seed=3, filler_rate=1.0)
    assert any(filler in french for filler in FILLERS["fr"])
    assert not any(f" {filler} " in f" {french} " for filler in ("um", "uh"))


def test_segments_are_bounded_and_cover_the_text() -> None:
    segments = to_caption_style(LONG, seed=1, filler_rate=0, max_words_per_segment=12)
    assert len(segments) >= 3
    assert all(9 <= len(segment.split()) <= 12 for segment in segments[:-1])
    assert 1 <= len(segments[-1].split()) <= 12
    assert " ".join(segments).split() == caption_text(LONG, seed=1, filler_rate=0).split()


@pytest.mark.parametrize(
    ("text", "urls", "expected"),
    [
        ("see https://example.com/a?b=1 now", "speak", "see link now"),
        ("see www.example.org now", "drop", "see now"),
        ("go to example.com today", "speak", "go to link today"),
        ("mail me@example.com today", "speak", "mail today"),
        ("thanks @alice and #team", "speak", "thanks and team"),
    ],
)
def test_links_mentions_and_hashtags(text: str, urls: str, expected: str) -> None:
    assert caption_text(text, seed=0, filler_rate=0, urls=urls) == expected  # type: ignore[arg-type]


def test_link_word_follows_the_language() -> None:
    assert caption_text("voir https://example.fr", language="fr", seed=0, filler_rate=0) == "voir lien"


def test_emoji_spoken_or_dropped() -> None:
    assert caption_text("great 👍👍👍🏽 job", seed=0, filler_rate=0, emoji="drop") == "great job"
    spoken = caption_text("great 👍👍 job 🇺🇸", seed=0, filler_rate=0, emoji="speak")
    assert spoken == "great thumbs up sign job"


def test_empty_and_unspeakable_texts() -> None:
    assert to_caption_style("", seed=0) == []
    assert to_caption_style("😀 https://x.io", seed=0, urls="drop") == []
    assert caption_text("!!!", seed=0) == ""


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError, match="filler_rate must be between 0 and 1"):
        to_caption_style("hi", seed=0, filler_rate=1.5)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=60), st.integers(0, 2**32))
def test_output_is_normalized_lowercase_and_deterministic(text: str, seed: int) -> None:
    out = caption_text(text, seed=seed)
    assert out == caption_text(text, seed=seed)
    assert normalize(out) == out
    assert out == out.lower() or not out.isascii()  # lower() of some scripts is not a fixed point


def test_caption_config_is_strict() -> None:
    from textguard.config import validate

    config = validate(CaptionConfig, {"enabled": True, "seed": 3, "emoji": "speak"}, "data.yaml")
    assert config.enabled and config.seed == 3 and config.mode == "joined"
    with pytest.raises(ConfigError, match="caption: filler_rat: unknown key"):
        validate(CaptionConfig, {"filler_rat": 0.2}, "caption")
    with pytest.raises(ConfigError, match="emoji"):
        validate(CaptionConfig, {"emoji": "sing"}, "caption")


ROWS = [
    {"id": "r1", "text": "Welcome to the 2 o'clock call!", "labels": [], "language": "en", "source": "chat",
     "dataset": "demo", "split": "train"},
    {"id": "r2", "text": "😀", "labels": [], "language": "en", "source": "chat", "dataset": "demo",
     "split": "test"},
    {"id": "r3", "text": LONG, "labels": [], "language": "en", "source": "chat", "dataset": "demo",
     "split": "validation"},
]  # fmt: skip


def test_caption_rows_joined() -> None:
    rows = caption_rows(ROWS, CaptionConfig(enabled=True, seed=1, filler_rate=0))
    assert [row["id"] for row in rows] == ["r1#caption", "r3#caption"]  # the emoji-only row is skipped
    assert rows[0]["text"] == "welcome to the two o'clock call"
    assert all(row["source"] == "caption" for row in rows)
    assert [row["split"] for row in rows] == ["train", "validation"]  # never crosses splits
    assert ROWS[0]["source"] == "chat"  # inputs untouched


def test_caption_rows_segments() -> None:
    rows = caption_rows(
        ROWS[2:], CaptionConfig(seed=1, filler_rate=0, mode="segments", max_words_per_segment=10)
    )
    assert len(rows) >= 3
    assert [row["id"] for row in rows] == [f"r3#caption:{index}" for index in range(len(rows))]
    assert all(len(row["text"].split()) <= 10 for row in rows)
