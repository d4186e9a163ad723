"""Reproducible stratified splits and training-row sampling, driven by hashes of row ids.

Within each stratum (dataset x language x label set x pool) rows are ordered by a seeded hash of
their id, and row r of n gets the position q = (r + jitter) / n in [0, 1): the first `test`
fraction goes to test, the next `validation` fraction to validation. So every stratum is split in
proportion (a one-row stratum falls by its jitter), the same seed gives the same split, and a
row's assignment depends on its id, not on where the file lists it.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Callable, Iterable

from textguard.data.dataconfig import SplitSpec
from textguard.data.examples import SPLIT_RANK, Example


def unit(seed: int, *parts: str) -> float:
    """A stable pseudo-random number in [0, 1) for (seed, parts)."""
    payload = "\x1f".join((str(seed), *parts)).encode("utf-8", "surrogatepass")
    return int.from_bytes(hashlib.blake2b(payload, digest_size=8).digest(), "big") / 2**64


def positions(
    rows: list[Example], seed: int, salt: str, key: Callable[[Example], str] = lambda row: row.id
) -> dict[int, float]:
    """Row order -> stratified position q in [0, 1), for rows already in one stratum."""
    ranked = sorted(rows, key=lambda row: (unit(seed, salt, key(row)), row.order))
    size = len(ranked)
    return {
        row.order: (rank + unit(seed, salt, "jitter", key(row))) / size for rank, row in enumerate(ranked)
    }


def strata(
    rows: Iterable[Example], extra: Callable[[Example], str] = lambda row: ""
) -> dict[tuple[str, ...], list[Example]]:
    grouped: dict[tuple[str, ...], list[Example]] = defaultdict(list)
    for row in rows:
        grouped[(extra(row), row.dataset, row.language or "", "+".join(row.labels))].append(row)
    return grouped


def assign_splits(
    rows: list[Example], spec: SplitSpec, *, eval_only: bool = False, groups: dict[int, int] | None = None
) -> None:
    """Set `split` on every row of one dataset.

    Rows the dataset already places keep their place; `auto` rows are split three ways and
    `trainval` rows two ways (train / validation). `groups` (row order -> group root order) keeps
    near-duplicates that were not dropped together in one split.
    """
    if eval_only:
        for row in rows:
            row.split = "test"
        return
    group_of = groups or {}

    def group_key(row: Example) -> str:
        return by_order[group_of.get(row.order, row.order)].id

    by_order = {row.order: row for row in rows}
    pools = [row for row in rows if row.hint in ("auto", "trainval") and row.group is None]
    for row in rows:
        if row.hint not in ("auto", "trainval"):
            row.split = "train" if row.hint == "train" else row.hint
        elif row.group is not None:
            row.split = _family_split(row, spec)
    for members in strata(pools, extra=lambda row: row.hint).values():
        placed = positions(members, spec.seed, "split", key=group_key)
        for row in members:
            q = placed[row.order]
            if row.hint == "trainval":
                row.split = "validation" if q < spec.validation else "train"
            elif q < spec.test:
                row.split = "test"
            elif q < spec.test + spec.validation:
                row.split = "validation"
            else:
                row.split = "train"
    if group_of:
        _keep_groups_together(rows, group_of)


def _family_split(row: Example, spec: SplitSpec) -> str:
    """A family's split from a hash of its name: every sibling lands where the others do.

    Families are per language, so the fractions hold per language as they do in the strata; they
    are not stratified by label because a family holds both harmful and benign rows by design.
    """
    q = unit(spec.seed, "family", row.dataset, row.group or "")
    if row.hint == "trainval":
        return "validation" if q < spec.validation else "train"
    if q < spec.test:
        return "test"
    return "validation" if q < spec.test + spec.validation else "train"


def _keep_groups_together(rows: list[Example], group_of: dict[int, int]) -> None:
    members: dict[int, list[Example]] = defaultdict(list)
    for row in rows:
        if row.order in group_of:
            members[group_of[row.order]].append(row)
    for group in members.values():
        fixed = [row.split for row in group if row.hint not in ("auto", "trainval") and row.split]
        pool = fixed or [row.split for row in group if row.split]
        target = max(pool, key=lambda split: SPLIT_RANK[split])
        for row in group:
            if row.hint == "auto" or (row.hint == "trainval" and target != "test"):
                row.split = target


def cap_eval(rows: list[Example], *, max_rows: int, seed: int) -> dict[str, tuple[int, int]]:
    """Keep at most `max_rows` validation and `max_rows` test rows of one dataset; split -> (before, after).

    Rows are ranked by a seeded hash of their family (or id), so a family is kept or dropped whole and
    the kept rows do not depend on which other datasets share the mixture.
    """
    counts: dict[str, tuple[int, int]] = {}
    for split in ("validation", "test"):
        members = [row for row in rows if row.alive and row.split == split]
        if len(members) <= max_rows:
            continue
        members.sort(key=lambda row: (unit(seed, "eval-cap", row.group or row.id), row.order))
        kept, last = 0, None
        for row in members:
            key = row.group or row.id
            if kept < max_rows or key == last:  # the family that crosses the cap is kept whole
                kept, last = kept + 1, key
            else:
                row.alive = False
        counts[split] = (len(members), kept)
    return counts


def sample_train(rows: list[Example], *, fraction: float, max_rows: int | None, seed: int) -> tuple[int, int]:
    """Thin one dataset's training rows (stratified by language x labels); returns (before, after)."""
    train = [row for row in rows if row.alive and row.split == "train"]
    keep: list[Example] = []
    if fraction >= 1.0:
        keep = train
    else:
        # A family is kept or dropped whole: a harmful row without its stance-flipped siblings
        # would teach the topic again.
        keep = [
            row
            for row in train
            if row.group is not None and unit(seed, "family-sample", row.group) < fraction
        ]
        for members in strata([row for row in train if row.group is None]).values():
            placed = positions(members, seed, "sample")
            keep.extend(row for row in members if placed[row.order] < fraction)
    if max_rows is not None and len(keep) > max_rows:
        keep.sort(key=lambda row: (unit(seed, "cap", row.group or row.id), row.order))
        keep = keep[:max_rows]
    kept = {row.order for row in keep}
    for row in train:
        if row.order not in kept:
            row.alive = False
    return len(train), len(keep)
