"""The caption view: a live-caption-style copy (source=caption) of a seeded fraction of rows.

A copy keeps its original's labels, language, dataset and split (a copy in another split would be
a leak by construction) and gets the id `<id>#caption` (`<id>#caption:<n>` per segment in
"segments" mode). The transform itself is `textguard.caption`; this module only chooses the rows.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from textguard.caption import CAPTION_SUFFIX, caption_variants
from textguard.data.dataconfig import CaptionSpec
from textguard.data.examples import Example
from textguard.data.splits import unit

__all__ = ["CAPTION_SUFFIX", "caption_copies"]


def caption_copies(
    rows: list[Example], spec: CaptionSpec, *, progress: bool = False
) -> tuple[list[Example], dict[str, Any]]:
    """Caption copies of the chosen rows (rows that already are captions are left alone)."""
    from tqdm.auto import tqdm

    chosen = [
        row
        for row in rows
        if row.alive
        and not row.anchor
        and row.source == "chat"
        and row.split in spec.splits
        and unit(spec.seed, "caption", row.id) < spec.fraction
    ]
    copies: list[Example] = []
    per_split: Counter[str] = Counter()
    empty = 0
    for row in tqdm(chosen, desc="caption copies", unit=" rows", disable=not progress):
        # Seeded by (seed, text) inside textguard.caption: the same text always gets the same caption.
        texts = caption_variants(row.id, row.text, row.language or "en", spec)
        if not texts:
            empty += 1
            continue
        assert row.split is not None
        for identifier, text in texts:
            copies.append(
                Example(
                    id=identifier,
                    text=text,
                    labels=row.labels,
                    language=row.language,
                    source="caption",
                    dataset=row.dataset,
                    hint=row.hint,
                    where=f"caption copy of {row.where}",
                    split=row.split,
                    order=row.order,
                    category=row.category,
                    group=row.group,
                )
            )
            per_split[row.split] += 1
    report = {
        "enabled": True,
        "mode": spec.mode,
        "fraction": spec.fraction,
        "seed": spec.seed,
        "filler_rate": spec.filler_rate,
        "rows_chosen": len(chosen),
        "copies": len(copies),
        "per_split": dict(per_split),
        "empty_after_transform": empty,
    }
    return copies, report
