"""Error analysis: per label, the most confident false positives and the least confident false negatives.

These are the rows a reviewer should read first: a high-scoring false positive is either a label error
or a blind spot (counter-speech, news, quoting), a low-scoring false negative is what the model misses
outright. Texts are replaced by keyed hashes unless --show-text was given.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np


def top_errors(
    *,
    labels: Sequence[str],
    gold: np.ndarray,
    probs: np.ndarray,
    decisions: np.ndarray,
    row_ids: Sequence[str],
    texts: Sequence[str],
    attributes: dict[str, Sequence[str]],
    k: int,
    redact: Callable[[str], str] | None,
) -> list[dict[str, Any]]:
    """Rows of the error table: label, kind (false_positive|false_negative), rank, probability, ..."""
    rows: list[dict[str, Any]] = []
    for column, label in enumerate(labels):
        truth = gold[:, column] == 1.0
        flagged = decisions[:, column]
        scores = probs[:, column]
        for kind, mask, descending in (
            ("false_positive", ~truth & flagged, True),
            ("false_negative", truth & ~flagged, False),
        ):
            candidates = np.flatnonzero(mask)
            # Stable tie-break on the row id keeps the table identical between runs.
            order = sorted(
                candidates.tolist(), key=lambda i: (-scores[i] if descending else scores[i], row_ids[i])
            )[:k]
            for rank, index in enumerate(order, start=1):
                rows.append(
                    {
                        "label": label,
                        "kind": kind,
                        "rank": rank,
                        "probability": round(float(scores[index]), 6),
                        "row_id": row_ids[index],
                        "text": texts[index] if redact is None else redact(texts[index]),
                        **{name: values[index] for name, values in attributes.items()},
                        "other_gold_labels": [
                            other for j, other in enumerate(labels) if j != column and gold[index, j] == 1.0
                        ],
                    }
                )
    return rows
