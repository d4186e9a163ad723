"""Overturned decisions -> labelled training rows (`textguard data import-reviews`).

The audit trail keeps no message text (only keyed digests), so the platform supplies the text of the
decisions its reviewers overturned, for the messages whose authors consented to their use, in a JSONL or
CSV file with the columns `decision_id`, `text` and `consent` (true/false, yes/no, 1/0). Each consented
row whose decision has an `overturn` review becomes one labelled row:

    {"id": "review-<decision_id>", "text": ..., "labels": [the reviewer's labels],
     "language": <audited>, "source": chat|caption, "category": "review_overturn",
     "decision_id": ..., "reviewed_at": ...}

the format `configs/data/reviews.yaml` reads (its source is named `reviews`, so its rows carry that source
tag through preparation, the data card and the evaluation slices). The labels are those of the latest
overturn review: the labels the reviewer gave, or none (benign) when a flagged decision was overturned
without labels.

When the audit store's hash key is given, each supplied text must hash to the audited decision's text
digest (after the same normalisation), so a wrong or edited text cannot enter the training data under a
reviewer's verdict. Everything is checked before anything is written: one bad row fails the import and
its error names the line.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from textguard.errors import DataError
from textguard.labels import LABELS

if TYPE_CHECKING:
    from textguard.audit import AuditStore, ReviewInfo

CATEGORY = "review_overturn"
REQUIRED = ("decision_id", "text", "consent")
_TRUE = {"true", "yes", "1", "y"}
_FALSE = {"false", "no", "0", "n", ""}


@dataclass
class ImportSummary:
    rows_read: int = 0
    written: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    labels: dict[str, int] = field(default_factory=dict)
    verified: bool = False

    def skip(self, reason: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1


def read_review_texts(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, row) from a JSONL or CSV file (by suffix)."""
    if not path.is_file():
        raise DataError(f"{path} does not exist")
    suffix = path.suffix.lower()
    with path.open(encoding="utf-8", newline="") as handle:
        if suffix == ".csv":
            reader = csv.DictReader(handle)
            missing = [name for name in REQUIRED if name not in (reader.fieldnames or [])]
            if missing:
                raise DataError(f"{path}: missing column(s) {', '.join(missing)} (needs {', '.join(REQUIRED)})")
            for row in reader:
                yield reader.line_num, row
        elif suffix in (".jsonl", ".ndjson"):
            for number, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DataError(f"{path} line {number}: not JSON ({exc.msg})") from None
                if not isinstance(row, dict):
                    raise DataError(f"{path} line {number}: expected a JSON object")
                yield number, row
        else:
            raise DataError(f"{path}: use a .jsonl or .csv file")


def _consent(value: Any, where: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value if value is not None else "").strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise DataError(f"{where}: consent must be true or false")


def import_reviews(
    store: AuditStore,
    source: Path,
    output: Path,
    *,
    tenant: str | None = None,
    verify_text: bool = True,
) -> ImportSummary:
    """Write the labelled rows of `source`'s consented, overturned decisions to `output` (JSONL)."""
    summary = ImportSummary(verified=verify_text)
    overturns: dict[str, ReviewInfo] = {}
    for review in store.reviews(outcome="overturn", tenant=tenant):
        overturns[review.decision_id] = review  # oldest first: the latest wins
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    for number, row in read_review_texts(source):
        where = f"{source} line {number}"
        summary.rows_read += 1
        missing = [name for name in REQUIRED if name not in row]
        if missing:
            raise DataError(f"{where}: missing {', '.join(missing)}")
        decision_id, text = str(row["decision_id"]).strip(), row["text"]
        if not _consent(row["consent"], where):
            summary.skip("no consent")
            continue
        if not isinstance(text, str) or not text.strip():
            raise DataError(f"{where}: text is empty")
        if decision_id in seen:
            raise DataError(f"{where}: decision {decision_id} appears twice")
        seen.add(decision_id)
        decision = store.decision(decision_id)
        if decision is None:
            raise DataError(f"{where}: no decision {decision_id!r} in the audit store")
        if tenant is not None and decision.tenant != tenant:
            raise DataError(f"{where}: decision {decision_id} belongs to another tenant than {tenant}")
        if decision_id not in overturns:
            summary.skip("not overturned")
            continue
        review = overturns[decision_id]
        if verify_text and store.hash_text(text) != decision.text_hash:
            raise DataError(
                f"{where}: the text does not match the audited decision {decision_id} "
                "(a different or edited text, or not the store's hash key)"
            )
        if review.labels is not None:
            labels = [label for label in LABELS if label in review.labels]
        elif decision.labels:
            labels = []  # a flagged decision overturned without labels: benign
        else:
            raise DataError(f"{where}: decision {decision_id} was an allow overturned without labels")
        for label in labels or ["benign"]:
            summary.labels[label] = summary.labels.get(label, 0) + 1
        rows.append(
            {
                "id": f"review-{decision_id}",
                "text": text,
                "labels": labels,
                "language": decision.language,
                "source": decision.source,
                "category": CATEGORY,
                "decision_id": decision_id,
                "reviewed_at": review.created_at.isoformat(),
            }
        )
    output.parent.mkdir(parents=True, exist_ok=True)
    temporary = output.with_name(f".{output.name}.tmp")
    with temporary.open("w", encoding="utf-8") as handle:
        for item in rows:
            handle.write(json.dumps(item, ensure_ascii=False) + "\n")
    temporary.replace(output)
    summary.written = len(rows)
    return summary
