"""Validate the project's own seed set and the meeting functional suite.

Both files are hand-written data that training and evaluation trust blindly, so the contracts they
promise (schema, label/category consistency, language and hard-negative coverage, no duplicates, no
overlap with the held-out suites) are checked here rather than discovered mid-training.
"""

from __future__ import annotations

import csv
import json
import re
from collections import Counter, defaultdict
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from textguard.labels import HARD_NEGATIVE_TYPES, LABELS, TAXONOMY_VERSION, validate_labels
from textguard.paths import resources_dir, shared_datasets_dir
from textguard.text import normalize

SEED_PATH = resources_dir() / "seed" / "seed.jsonl"
SUITE_PATH = resources_dir() / "suites" / "meeting_functional.csv"
TAXONOMY_CARD = Path(__file__).resolve().parents[2] / "data_cards" / "TAXONOMY.md"

SEED_KEYS = {"id", "text", "labels", "language", "source", "category"}
CATEGORIES = {*LABELS, *HARD_NEGATIVE_TYPES, "benign"}
SOURCES = {"chat", "caption"}
LABEL_LANGUAGES = ("en", "fr", "de", "es", "ar", "pt", "it")
REQUIRED_LANGUAGES = (*LABEL_LANGUAGES, "nl", "tr", "ru", "pl", "id", "hi")
MIN_ROWS_PER_LABEL = 70
MIN_ROWS_PER_HARD_NEGATIVE = 20
MIN_ROWS_PER_OTHER_LANGUAGE = 20
MIN_LANGUAGES_PER_HARD_NEGATIVE = 5
SPLIT_SEPARATOR = " || "

SUITE_COLUMNS = [
    "functionality",
    "case_id",
    "test_case",
    "label_gold",
    "labels",
    "language",
    "target",
    "direction",
]
SUITE_FUNCTIONALITIES = {
    "threat_direct_h",
    "threat_split_caption_h",
    "glorify_attack_h",
    "glorify_attacker_h",
    "recruit_h",
    "dehumanize_h",
    "news_report_nh",
    "condemn_nh",
    "quote_criticise_nh",
    "gaming_nh",
    "fiction_nh",
    "history_nh",
    "negation_nh",
    "profanity_untargeted_nh",
    "identity_neutral_nh",
    "caption_threat_h",
    "caption_benign_nh",
}
CAPTION_FUNCTIONALITIES = {"threat_split_caption_h", "caption_threat_h", "caption_benign_nh"}
# Live captions carry no sentence punctuation, casing or digits; rows that do were typed, not transcribed.
CAPTION_FORBIDDEN = re.compile(r"[.,!?;:¿¡،؟।\"«»„“”\d]")


def _key(text: str) -> str:
    # Case-folded on top of normalize() so that "Shit" and "shit" count as the same row.
    return normalize(text).casefold()


def _shingles(text: str, size: int = 4) -> frozenset[str]:
    flat = re.sub(r"\W+", " ", _key(text))
    return frozenset(flat[i : i + size] for i in range(max(1, len(flat) - size + 1)))


def _near_duplicates(texts: list[str], threshold: float) -> list[tuple[str, str, float]]:
    shingles = [_shingles(text) for text in texts]
    found = []
    for i in range(len(texts)):
        for j in range(i + 1, len(texts)):
            a, b = shingles[i], shingles[j]
            similarity = len(a & b) / len(a | b)
            if similarity >= threshold:
                found.append((texts[i], texts[j], similarity))
    return found


@cache
def _seed_rows() -> tuple[dict[str, Any], ...]:
    rows = []
    with SEED_PATH.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            assert line.strip(), f"blank line {number} in {SEED_PATH}"
            rows.append(json.loads(line))
    return tuple(rows)


@cache
def _suite_rows() -> tuple[dict[str, str], ...]:
    with SUITE_PATH.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        assert reader.fieldnames == SUITE_COLUMNS
        return tuple(reader)


@pytest.fixture(scope="module")
def seed() -> tuple[dict[str, Any], ...]:
    return _seed_rows()


@pytest.fixture(scope="module")
def suite() -> tuple[dict[str, str], ...]:
    return _suite_rows()


# --- seed set ---------------------------------------------------------------------------------------


def test_seed_rows_have_the_contract_schema(seed: tuple[dict[str, Any], ...]) -> None:
    assert 400 <= len(seed) <= 520
    for row in seed:
        assert set(row) == SEED_KEYS, row
        assert isinstance(row["text"], str) and row["text"].strip(), row
        assert isinstance(row["labels"], list), row
        assert row["source"] in SOURCES, row
        assert row["category"] in CATEGORIES, row
        assert re.fullmatch(r"[a-z]{2,3}(-[A-Za-z0-9]{2,8})*", row["language"]), row
        assert re.fullmatch(r"seed-\d{4}", row["id"]), row


def test_seed_ids_are_unique(seed: tuple[dict[str, Any], ...]) -> None:
    duplicated = [key for key, count in Counter(row["id"] for row in seed).items() if count > 1]
    assert not duplicated


def test_seed_labels_are_valid_and_canonical(seed: tuple[dict[str, Any], ...]) -> None:
    for row in seed:
        # validate_labels raises on an unknown name; equality also rejects repeats and non-canonical order.
        assert validate_labels(row["labels"]) == row["labels"], row


def test_seed_category_agrees_with_labels(seed: tuple[dict[str, Any], ...]) -> None:
    for row in seed:
        if row["category"] in LABELS:
            assert row["category"] in row["labels"], row
        else:
            assert row["labels"] == [], row


def test_seed_covers_the_required_languages(seed: tuple[dict[str, Any], ...]) -> None:
    per_language = Counter(row["language"] for row in seed)
    assert len(per_language) >= 10
    assert 0.30 <= per_language["en"] / len(seed) <= 0.40
    for language in REQUIRED_LANGUAGES:
        if language != "en":
            assert per_language[language] >= MIN_ROWS_PER_OTHER_LANGUAGE, (language, per_language[language])


def test_every_label_appears_in_every_core_language(seed: tuple[dict[str, Any], ...]) -> None:
    present = {(row["language"], label) for row in seed for label in row["labels"]}
    missing = [(lang, label) for lang in LABEL_LANGUAGES for label in LABELS if (lang, label) not in present]
    assert not missing


def test_label_and_hard_negative_balance(seed: tuple[dict[str, Any], ...]) -> None:
    per_label = Counter(label for row in seed for label in row["labels"])
    for label in LABELS:
        assert per_label[label] >= MIN_ROWS_PER_LABEL, (label, per_label[label])
    harmful_share = sum(1 for row in seed if row["labels"]) / len(seed)
    assert 0.40 <= harmful_share <= 0.55
    per_category = Counter(row["category"] for row in seed)
    for category in HARD_NEGATIVE_TYPES:
        assert per_category[category] >= MIN_ROWS_PER_HARD_NEGATIVE, (category, per_category[category])


def test_every_hard_negative_type_is_multilingual(seed: tuple[dict[str, Any], ...]) -> None:
    languages: dict[str, set[str]] = defaultdict(set)
    for row in seed:
        languages[row["category"]].add(row["language"])
    for category in HARD_NEGATIVE_TYPES:
        assert len(languages[category]) >= MIN_LANGUAGES_PER_HARD_NEGATIVE, (category, languages[category])


def test_caption_rows_look_like_live_captions(seed: tuple[dict[str, Any], ...]) -> None:
    captions = [row for row in seed if row["source"] == "caption"]
    assert 0.20 <= len(captions) / len(seed) <= 0.35
    for row in captions:
        assert row["text"] == row["text"].lower(), row
        assert not CAPTION_FORBIDDEN.search(row["text"]), row


def test_seed_texts_are_unique_after_normalisation(seed: tuple[dict[str, Any], ...]) -> None:
    counts = Counter(_key(row["text"]) for row in seed)
    assert not [text for text, count in counts.items() if count > 1]


def test_seed_has_no_near_duplicates(seed: tuple[dict[str, Any], ...]) -> None:
    # Swapping one word in a sentence keeps most character 4-grams; distinct rows share well under half.
    assert not _near_duplicates([row["text"] for row in seed], threshold=0.6)


def test_near_duplicate_check_catches_a_one_word_swap() -> None:
    pair = [
        "I will see you at the quarterly planning meeting on Tuesday",
        "I will see you at the quarterly planning meeting on Thursday",
    ]
    assert _near_duplicates(pair, threshold=0.6)


# --- functional suite --------------------------------------------------------------------------------


def test_suite_schema_and_case_ids(suite: tuple[dict[str, str], ...]) -> None:
    assert 200 <= len(suite) <= 260
    ids = [row["case_id"] for row in suite]
    assert len(set(ids)) == len(ids)
    for row in suite:
        assert row["test_case"].strip(), row
        assert row["language"], row
        assert row["direction"] in {"general", "directed", ""}, row


def test_suite_functionalities_cover_the_spec(suite: tuple[dict[str, str], ...]) -> None:
    per_functionality = Counter(row["functionality"] for row in suite)
    assert set(per_functionality) == SUITE_FUNCTIONALITIES
    assert min(per_functionality.values()) >= 10
    assert len({row["language"] for row in suite}) >= 6


def test_suite_label_gold_agrees_with_labels_and_suffix(suite: tuple[dict[str, str], ...]) -> None:
    for row in suite:
        labels = row["labels"].split(";") if row["labels"] else []
        assert validate_labels(labels) == labels, row
        if row["functionality"].endswith("_h"):
            assert row["label_gold"] == "hateful" and labels, row
        else:
            assert row["functionality"].endswith("_nh"), row
            assert row["label_gold"] == "non-hateful" and not labels, row


def test_split_caption_cases_hold_two_segments(suite: tuple[dict[str, str], ...]) -> None:
    for row in suite:
        segments = row["test_case"].split(SPLIT_SEPARATOR)
        if row["functionality"] == "threat_split_caption_h":
            assert len(segments) == 2 and all(segment.strip() for segment in segments), row
        else:
            assert len(segments) == 1, row


def test_caption_cases_look_like_live_captions(suite: tuple[dict[str, str], ...]) -> None:
    for row in suite:
        if row["functionality"] in CAPTION_FUNCTIONALITIES:
            text = row["test_case"].replace(SPLIT_SEPARATOR, " ")
            assert text == text.lower() and not CAPTION_FORBIDDEN.search(text), row


def test_suite_is_unique_and_disjoint_from_the_seed(
    seed: tuple[dict[str, Any], ...], suite: tuple[dict[str, str], ...]
) -> None:
    suite_keys = Counter(_key(row["test_case"]) for row in suite)
    assert not [text for text, count in suite_keys.items() if count > 1]
    assert not set(suite_keys) & {_key(row["text"]) for row in seed}
    # A suite that paraphrases training rows one word apart would only measure memorisation.
    assert not [
        pair
        for pair in _near_duplicates([row["text"] for row in seed] + [row["test_case"] for row in suite], 0.6)
        if (_key(pair[0]) in suite_keys) != (_key(pair[1]) in suite_keys)
    ]


# --- taxonomy card -----------------------------------------------------------------------------------


def test_taxonomy_card_matches_the_code() -> None:
    card = TAXONOMY_CARD.read_text(encoding="utf-8")
    assert f"Taxonomy version: {TAXONOMY_VERSION}" in card
    assert f"| {TAXONOMY_VERSION} |" in card, "the change log has no entry for the current version"
    for name in (*LABELS, *HARD_NEGATIVE_TYPES):
        assert f"`{name}`" in card, name


# --- held-out evaluation suite -----------------------------------------------------------------------


@pytest.mark.datasets
def test_nothing_is_copied_from_hatecheck(
    seed: tuple[dict[str, Any], ...], suite: tuple[dict[str, str], ...]
) -> None:
    cases = shared_datasets_dir() / "hatecheck_en" / "all_cases.csv"
    if not cases.is_file():
        pytest.skip(f"{cases} not present")
    with cases.open(encoding="utf-8", newline="") as handle:
        hatecheck = {_key(row["test_case"]) for row in csv.DictReader(handle)}
    ours = {_key(row["text"]) for row in seed} | {_key(row["test_case"]) for row in suite}
    assert not ours & hatecheck
