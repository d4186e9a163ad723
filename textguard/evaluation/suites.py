"""Functional test suites in HateCheck format: loading, and turning scores into per-case outcomes.

Accepted columns: functionality, test_case, label_gold (hateful | non-hateful) are required; case_id,
language, target (or HateCheck's target_ident) and labels (semicolon-separated taxonomy labels) are
optional. Both the project's meeting suite and the original English HateCheck CSV load as they are.
A model "flags" a case when any label is over its threshold; the case passes when that matches gold.
A case written as segments ("first part || second part") is decided as a caption stream by the
Moderator (see `evaluation.runner`): each segment with the earlier ones as its context, as the service does.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from textguard.errors import DataError
from textguard.evaluation.naming import safe
from textguard.labels import LABELS, UnknownLabelError, validate_labels

REQUIRED = ("functionality", "test_case", "label_gold")
GOLD_VALUES = {"hateful": True, "non-hateful": False}
#: Separates the caption segments of one case that arrive separately (decided as a stream).
SEGMENT_SEPARATOR = " || "
UNDETERMINED_LANGUAGE = "und"
_GENERIC_STEMS = {"test_suite_cases", "all_cases", "cases", "suite"}


@dataclass(frozen=True)
class Suite:
    name: str
    path: Path
    case_ids: list[str]
    texts: list[str]
    hateful: np.ndarray  # [n] bool
    functionality: list[str]
    language: list[str]
    target: list[str]
    #: [n, L] float multi-hot gold; NaN rows where the suite gives no per-label gold (HateCheck).
    gold: np.ndarray
    #: Each case's segments, in the order they arrive (one segment for most cases).
    segments: list[list[str]]

    @property
    def size(self) -> int:
        return len(self.texts)

    @property
    def has_label_gold(self) -> bool:
        return bool((~np.isnan(self.gold).any(axis=1)).any())


def default_name(path: Path) -> str:
    """The file's stem (`meeting_functional`), or its folder for generic names (`hatecheck_en` for
    .../hatecheck_en/test_suite_cases.csv)."""
    stem = path.stem
    return safe(path.parent.name if stem in _GENERIC_STEMS and path.parent.name else stem)


def parse_suite_argument(argument: str) -> tuple[str | None, Path]:
    """`name=path` or a bare path."""
    if "=" in argument and not Path(argument).exists():
        name, _, raw = argument.partition("=")
        return safe(name), Path(raw)
    return None, Path(argument)


def load_suite(argument: str) -> Suite:
    name, path = parse_suite_argument(argument)
    if not path.is_file():
        raise DataError(
            f"functional suite {path} not found (give a HateCheck-format CSV, optionally as name=path)"
        )
    try:
        with path.open(encoding="utf-8", newline="") as handle:
            rows = list(csv.DictReader(handle))
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    if not rows:
        raise DataError(f"{path}: the suite has no cases")
    missing = [column for column in REQUIRED if column not in rows[0]]
    if missing:
        raise DataError(
            f"{path}: missing column(s) {missing}; a HateCheck-format suite needs {list(REQUIRED)}"
        )
    has_labels = "labels" in rows[0]
    case_ids, texts, hateful, functionality, language, target = [], [], [], [], [], []
    segments: list[list[str]] = []
    gold = np.full((len(rows), len(LABELS)), np.nan)
    for index, row in enumerate(rows):
        line = index + 2  # the header is line 1
        verdict = (row["label_gold"] or "").strip()
        if verdict not in GOLD_VALUES:
            raise DataError(
                f"{path}: line {line}: label_gold must be hateful or non-hateful, got {verdict!r}"
            )
        text = row["test_case"] or ""
        if not text.strip():
            raise DataError(f"{path}: line {line}: test_case is empty")
        case_ids.append((row.get("case_id") or row.get("") or str(index)).strip())
        texts.append(text.replace(SEGMENT_SEPARATOR, " "))
        segments.append([part for part in text.split(SEGMENT_SEPARATOR) if part.strip()] or [text])
        hateful.append(GOLD_VALUES[verdict])
        functionality.append((row["functionality"] or "").strip())
        language.append((row.get("language") or "").strip() or UNDETERMINED_LANGUAGE)
        target.append((row.get("target") or row.get("target_ident") or "").strip())
        if has_labels:
            names = [item.strip() for item in (row["labels"] or "").split(";") if item.strip()]
            try:
                gold[index] = [1.0 if label in validate_labels(names) else 0.0 for label in LABELS]
            except UnknownLabelError as exc:
                raise DataError(f"{path}: line {line}: labels: {exc}") from None
            if bool(gold[index].any()) != GOLD_VALUES[verdict]:
                raise DataError(f"{path}: line {line}: labels {names} contradict label_gold {verdict!r}")
    return Suite(
        name=name or default_name(path),
        path=path,
        case_ids=case_ids,
        texts=texts,
        hateful=np.asarray(hateful, dtype=bool),
        functionality=functionality,
        language=language,
        target=target,
        gold=gold,
        segments=segments,
    )
