"""Hard-negative mining: benign training rows that a previous model flags.

A model that flags counter-speech, quotes or identity mentions shows where the training data fails to
teach stance. Mining scores the benign rows of a prepared dataset's training split with that model (the
library's scorer at the model's own calibrated thresholds: the decision every transport makes) and
writes the flagged ones, hardest first, to a JSONL file; `training.hard_negatives` then repeats them in
the next run. Only training rows are mined, so validation and test stay untouched.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from textguard.errors import DataError

#: The fields of one mined row (JSON Lines).
MINED_FIELDS = ("id", "text", "language", "source", "dataset", "flagged", "margin", "scores")


@dataclass(frozen=True)
class MinedRow:
    id: str
    text: str
    language: str
    source: str
    dataset: str
    #: Labels the model flagged although the row is benign.
    flagged: list[str]
    #: Largest (probability - threshold) over the flagged labels: how wrong the model was.
    margin: float
    scores: dict[str, float]


def mine_hard_negatives(
    predict_proba: Callable[[list[str]], np.ndarray],
    labels: list[str],
    thresholds: list[float],
    rows: Any,
    *,
    max_rows: int | None = None,
    batch_size: int = 256,
    progress: Callable[[int], None] | None = None,
) -> list[MinedRow]:
    """Benign rows of `rows` (a datasets split) flagged at `thresholds`, hardest first."""
    benign = [index for index, row_labels in enumerate(rows["labels"]) if not row_labels]
    texts = [rows["text"][index] for index in benign] if benign else []
    limits = np.asarray(thresholds, dtype=np.float64)[None, :]
    mined: list[MinedRow] = []
    for start in range(0, len(texts), batch_size):
        chunk = texts[start : start + batch_size]
        probs = np.asarray(predict_proba(chunk), dtype=np.float64)
        over = probs - limits
        for offset in np.flatnonzero((over >= 0).any(axis=1)):
            index = benign[start + int(offset)]
            mined.append(
                MinedRow(
                    id=str(rows["id"][index]),
                    text=chunk[int(offset)],
                    language=str(rows["language"][index]),
                    source=str(rows["source"][index]),
                    dataset=str(rows["dataset"][index]),
                    flagged=[label for label, hit in zip(labels, over[offset] >= 0, strict=True) if hit],
                    margin=round(float(over[offset].max()), 6),
                    scores={label: round(float(p), 6) for label, p in zip(labels, probs[offset], strict=True)},
                )
            )
        if progress is not None:
            progress(len(chunk))
    mined.sort(key=lambda row: (-row.margin, row.id))
    return mined[:max_rows] if max_rows is not None else mined


def write_mined(rows: list[MinedRow], path: Path, provenance: dict[str, Any]) -> dict[str, Any]:
    """Write the mined rows (JSONL) and a summary beside them (`<name>.summary.json`); returns the summary."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    with partial.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(asdict(row), ensure_ascii=False) + "\n")
    os.replace(partial, path)
    summary = {
        **provenance,
        "rows": len(rows),
        "by_language": dict(Counter(row.language for row in rows).most_common()),
        "by_dataset": dict(Counter(row.dataset for row in rows).most_common()),
        "by_label": dict(Counter(label for row in rows for label in row.flagged).most_common()),
    }
    summary_path = path.with_name(path.stem + ".summary.json")
    summary_path.write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return summary


def read_mined_ids(path: Path) -> list[str]:
    """The ids of a mined file, in file order; a malformed line is a DataError naming it."""
    if not path.is_file():
        raise DataError(f"training.hard_negatives.file {path} not found (write it with `textguard data mine-negatives`)")
    ids: list[str] = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                ids.append(str(record["id"]))
            except (json.JSONDecodeError, KeyError, TypeError):
                raise DataError(f"{path}:{number}: not a mined row (a JSON object with an 'id')") from None
    return ids
