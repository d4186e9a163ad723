"""Validate the contrastive stance set and the stance wrappers, and how preparation treats families.

The stance set is hand-written data that training trusts blindly: its schema, label/category
agreement, family structure (a harmful statement with benign siblings) and language coverage are
contracts, checked here rather than discovered mid-training.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from textguard.data.dataconfig import SplitSpec
from textguard.data.examples import Example
from textguard.data.prepare import prepare
from textguard.data.splits import assign_splits, sample_train
from textguard.data.stance_wrappers import QUOTE, load_frames, wrap_harmful
from textguard.labels import HARD_NEGATIVE_TYPES, LABELS, validate_labels
from textguard.paths import resources_dir
from textguard.text import normalize

STANCE_DIR = resources_dir() / "stance"
CONFIG = Path(__file__).resolve().parents[2] / "configs" / "data" / "stance.yaml"
KEYS = {"id", "family", "text", "labels", "language", "source", "category", "target"}
#: `positive_identity_mention` is the positive half of the taxonomy's neutral_identity_mention type.
BENIGN = {*HARD_NEGATIVE_TYPES, "positive_identity_mention", "benign"}
SEED_LANGUAGES = ("en", "fr", "es", "de", "pt", "it", "ar", "nl", "pl", "tr", "ru", "id", "hi")
#: The stance flips every language must teach, with at least this many rows each.
STANCE_TYPES = ("counter_speech", "quoting_to_criticise", "negation", "neutral_identity_mention")
MIN_ROWS_PER_STANCE_TYPE = 8
MIN_ROWS_PER_LANGUAGE = 150


@cache
def rows() -> tuple[dict[str, Any], ...]:
    loaded: list[dict[str, Any]] = []
    for path in sorted(STANCE_DIR.glob("*.jsonl")):
        with path.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):
                row = json.loads(line)
                row["_where"] = f"{path.name}:{number}"
                loaded.append(row)
    return tuple(loaded)


def test_every_file_is_a_source_of_the_stance_config() -> None:
    config = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))
    listed = {source["path"] for source in config["sources"]}
    assert listed == {f"stance/{path.name}" for path in STANCE_DIR.glob("*.jsonl")}


def test_rows_have_the_schema_and_unique_ids() -> None:
    for row in rows():
        assert set(row) - {"_where"} == KEYS, row["_where"]
        assert row["source"] in {"chat", "caption"}, row["_where"]
        assert row["text"].strip() and row["family"].strip() and row["target"].strip(), row["_where"]
    ids = Counter(row["id"] for row in rows())
    assert [key for key, n in ids.items() if n > 1] == []


def test_category_agrees_with_labels() -> None:
    for row in rows():
        validate_labels(row["labels"])
        if row["category"] in LABELS:
            assert row["category"] in row["labels"], row["_where"]
        else:
            assert row["category"] in BENIGN and row["labels"] == [], row["_where"]


def test_families_pair_harm_with_benign_siblings_in_one_language() -> None:
    families: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows():
        families[row["family"]].append(row)
    contrastive = 0
    for name, members in families.items():
        assert len({row["language"] for row in members}) == 1, name
        benign = [row for row in members if not row["labels"]]
        assert benign, f"family {name} has no benign sibling"
        contrastive += len(benign) < len(members)
    # Most families hold a harmful statement with its stance flips; the rest are hard negatives only.
    assert contrastive >= 0.7 * len(families)


def test_every_seed_language_teaches_every_stance_flip() -> None:
    by_language: dict[str, Counter[str]] = defaultdict(Counter)
    for row in rows():
        by_language[row["language"]][row["category"]] += 1
    assert set(by_language) == set(SEED_LANGUAGES)
    for language, counts in by_language.items():
        assert sum(counts.values()) >= MIN_ROWS_PER_LANGUAGE, (language, sum(counts.values()))
        for kind in (*STANCE_TYPES, *LABELS):
            assert counts[kind] >= (MIN_ROWS_PER_STANCE_TYPE if kind in STANCE_TYPES else 3), (language, kind)


def test_no_text_is_written_twice() -> None:
    seen: dict[str, str] = {}
    duplicates = []
    for row in rows():
        key = normalize(row["text"]).casefold()
        if key in seen:
            duplicates.append((seen[key], row["_where"]))
        seen[key] = row["_where"]
    # Siblings differ by design; an identical text twice would only be weight, or a label conflict.
    assert len(duplicates) <= 0.01 * len(rows()), duplicates[:5]


# -- preparation: families stay whole ------------------------------------------------------------------


def _example(order: int, group: str | None, labels: tuple[str, ...] = ()) -> Example:
    return Example(
        id=f"d/{order}",
        text=f"text {order}",
        labels=labels,
        language="en",
        source="chat",
        dataset="d",
        hint="auto",
        where="here",
        order=order,
        group=group,
    )


def test_a_family_shares_one_split_and_is_thinned_whole() -> None:
    examples = [_example(i, f"f{i // 5}", ("violent_threat",) if i % 5 == 0 else ()) for i in range(1000)]
    assign_splits(examples, SplitSpec(seed=3, validation=0.1, test=0.1))
    by_family: dict[str, set[str | None]] = defaultdict(set)
    for row in examples:
        by_family[row.group or ""].add(row.split)
    assert all(len(splits) == 1 for splits in by_family.values())
    shares = Counter(row.split for row in examples)
    assert 60 <= shares["test"] <= 140 and 60 <= shares["validation"] <= 140  # 200 families, 10% each

    sample_train(examples, fraction=0.5, max_rows=None, seed=3)
    alive: dict[str, set[bool]] = defaultdict(set)
    for row in examples:
        if row.split == "train":
            alive[row.group or ""].add(row.alive)
    assert all(len(states) == 1 for states in alive.values())
    kept = sum(states == {True} for states in alive.values())
    assert 0.35 * len(alive) <= kept <= 0.65 * len(alive)


def test_prepared_report_counts_categories_by_split_and_language(tmp_path: Path) -> None:
    report = prepare(CONFIG, tmp_path / "stance")
    categories = report["categories"]
    assert set(categories["train"]) == set(SEED_LANGUAGES)
    total = sum(n for split in categories.values() for by_kind in split.values() for n in by_kind.values())
    duplicates = report["exact_duplicates"]["within_dataset"]  # a text written twice is kept once
    assert duplicates <= 0.01 * len(rows())
    assert total == sum(report["splits"].values()) == len(rows()) - duplicates
    for language in SEED_LANGUAGES:
        assert {*STANCE_TYPES, *LABELS} <= set(categories["train"][language]), language


# -- wrappers --------------------------------------------------------------------------------------------


def test_every_seed_language_has_condemning_and_endorsing_frames() -> None:
    frames = load_frames()
    assert set(frames) == set(SEED_LANGUAGES)
    for language, kinds in frames.items():
        assert len(kinds.condemn) >= 4 and len(kinds.endorse) >= 2, language
        assert all(template.count(QUOTE) == 1 for template in (*kinds.condemn, *kinds.endorse))


def test_wrapping_frames_harmful_chat_rows_only_and_flips_condemned_ones() -> None:
    texts = ["they should all be shot", "share your screen", "they should all be shot", "x " * 200]
    wrapped = wrap_harmful(
        texts * 50,
        [True, False, True, True] * 50,
        ["en", "en", "en", "en"] * 50,
        ["chat", "chat", "caption", "chat"] * 50,
        rate=1.0,
        endorse_share=0.3,
        max_chars=192,
        seed=1,
    )
    assert wrapped and all(item.index % 4 == 0 for item in wrapped)  # not benign, caption or too long
    assert all("they should all be shot" in item.text and item.text != texts[0] for item in wrapped)
    endorsed = [item for item in wrapped if not item.benign]
    assert 0.15 * len(wrapped) <= len(endorsed) <= 0.45 * len(wrapped)
    frames = load_frames()["en"]
    for item in wrapped:
        pool = frames.condemn if item.benign else frames.endorse
        assert item.text in {t.replace(QUOTE, texts[0]) for t in pool}


def test_evaluation_caps_keep_families_whole_and_do_not_depend_on_the_mixture() -> None:
    from textguard.data.splits import cap_eval

    def rows() -> list[Example]:
        made = [_example(i, f"f{i // 4}") for i in range(400)]
        for row in made:
            row.split = "test" if row.order < 200 else "validation"
        return made

    first = rows()
    assert cap_eval(first, max_rows=98, seed=5) == {"test": (200, 100), "validation": (200, 100)}
    kept = {row.id for row in first if row.alive}
    assert len(kept) == 200  # 98 rows reach into a 25th family of 4, kept whole
    by_family: dict[str, set[bool]] = defaultdict(set)
    for row in first:
        by_family[row.group or ""].add(row.alive)
    assert all(len(states) == 1 for states in by_family.values())
    # Another mixture (rows renumbered, more datasets around) keeps the same rows.
    second = rows()
    for row in second:
        row.order += 1000
    cap_eval(second, max_rows=98, seed=5)
    assert {row.id for row in second if row.alive} == kept
