"""`prepare(config)`: raw datasets -> a prepared folder (train/validation/test Parquet + report.json).

Steps, in order (each one's counts land in the report):

1. read every dataset's sources: join, map labels, normalise, skip or stop on bad rows;
2. identify the language of rows that have none;
3. exact duplicates inside each dataset: keep the copy in the dataset's own highest split,
   labels by the conflict rule;
4. near-duplicate pairs (MinHash LSH) over every remaining row, once for all datasets;
5. near duplicates inside each dataset: drop (or, where dropping is off, keep them together);
6. splits per dataset (stratified, seeded), then drop rows whose near-duplicate sits in a
   higher split (a test row's near-duplicate never reaches train or validation);
7. duplicates across datasets and against decontamination sets, by the same split precedence;
8. thin training rows by each member's weight (combined configs);
9. caption copies; 10. write the files and the report.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from textguard.config import config_hash
from textguard.data.caption_view import CAPTION_SUFFIX, caption_copies
from textguard.data.dataconfig import (
    SPLITS,
    LoadedConfig,
    MemberSpec,
    load_data_config,
    load_decontamination,
    load_optional_decontamination,
    load_members,
)
from textguard.data.dedup import CONFLICT_RULE, exact_key, near_duplicate_pairs, resolve_labels
from textguard.data.examples import HINT_RANK, SPLIT_RANK, Example
from textguard.data.langid import fill_languages
from textguard.data.prepared import default_output_dir, write_report, write_split
from textguard.data.problems import Problems
from textguard.data.sources import DatasetRows, load_dataset_rows, missing_source_files
from textguard.data.splits import assign_splits, cap_eval, sample_train
from textguard.errors import ConfigError
from textguard.labels import LABELS, TAXONOMY_VERSION

Edge = tuple[Example, Example]


@dataclass
class _Member:
    loaded: LoadedConfig
    spec: MemberSpec
    rows: DatasetRows

    @property
    def name(self) -> str:
        return self.loaded.name


class _Timer:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = round(self.seconds.get(name, 0.0) + time.perf_counter() - start, 3)


def prepare(
    config: str | Path | LoadedConfig,
    output_dir: str | Path | None = None,
    *,
    strict: bool = True,
    overrides: list[str] | tuple[str, ...] = (),
    progress: bool = False,
) -> dict[str, Any]:
    """Prepare the dataset a data config describes; returns the report (also written as report.json).

    strict: stop at the first bad row with a DataError naming file, line and field;
    lenient (strict=False): skip bad rows and count them per reason in the report.
    """
    from textguard.text import NORMALIZER_VERSION

    loaded = config if isinstance(config, LoadedConfig) else load_data_config(config, overrides)
    top = loaded.config
    output = Path(output_dir) if output_dir is not None else default_output_dir(top.name)
    timer = _Timer()
    problems = Problems(strict=strict)
    tally: defaultdict[str, Counter[str]] = defaultdict(Counter)
    conflicts: Counter[str] = Counter()
    started = time.perf_counter()

    with timer.step("read"):
        members = [
            _Member(member_loaded, spec, load_dataset_rows(member_loaded, problems, progress=progress))
            for member_loaded, spec in load_members(loaded)
        ]
        skipped_suites: dict[str, str] = {}
        anchors = _read_anchors(loaded, members, problems, progress, skipped_suites)
    examples = [row for member in members for row in member.rows.examples]
    for order, row in enumerate([*examples, *anchors]):
        row.order = order

    with timer.step("language_id"):
        language_reports = {
            member.name: fill_languages(member.rows.examples, member.loaded.config.language_id)
            for member in members
        }

    with timer.step("exact_dedup"):
        for row in [*examples, *anchors]:
            row.key = exact_key(row.text)
        for member in members:
            if member.loaded.config.dedup.exact:
                _exact_within(member.rows.examples, tally, conflicts)

    near = top.dedup.near
    with timer.step("near_pairs"):
        edges: list[Edge] = []
        if near.enabled:
            pool = [row for row in [*examples, *anchors] if row.alive]
            edges = [
                (pool[i], pool[j])
                for i, j, _ in near_duplicate_pairs([row.text for row in pool], near, progress=progress)
            ]

    with timer.step("splits"):
        for member in members:
            own = [
                (a, b)
                for a, b in edges
                if a.dataset == b.dataset == member.name and not (a.anchor or b.anchor)
            ]
            groups = _near_within(member, own, tally)
            settings = member.loaded.config
            assign_splits(
                [row for row in member.rows.examples if row.alive],
                settings.split,
                eval_only=settings.eval_only,
                groups=groups,
            )
            _split_leaks(own, tally)

    with timer.step("cross_dataset"):
        if top.dedup.exact:
            _exact_across([*examples, *anchors], tally, conflicts)
        _near_across(edges, tally, skip_same_text=top.dedup.exact)

    sampling: dict[str, dict[str, int]] = {}
    for member in members:
        if member.spec.train_fraction < 1.0 or member.spec.max_train_rows is not None:
            before, after = sample_train(
                member.rows.examples,
                fraction=member.spec.train_fraction,
                max_rows=member.spec.max_train_rows,
                seed=top.seed,
            )
            sampling[member.name] = {"before": before, "after": after}

    eval_caps: dict[str, dict[str, dict[str, int]]] = {}
    for member in members:
        if member.spec.max_eval_rows is not None:
            capped = cap_eval(member.rows.examples, max_rows=member.spec.max_eval_rows, seed=top.seed)
            if capped:
                eval_caps[member.name] = {
                    split: {"before": before, "after": after} for split, (before, after) in capped.items()
                }

    kept = [row for row in examples if row.alive]
    copies: list[Example] = []
    caption_report: dict[str, Any] = {"enabled": False}
    if top.caption.enabled:
        with timer.step("caption"):
            copies, caption_report = caption_copies(kept, top.caption, progress=progress)

    with timer.step("write"):
        output.mkdir(parents=True, exist_ok=True)
        ordered = sorted(
            [*kept, *copies],
            # A caption copy shares its original's order and follows it.
            key=lambda row: (row.order, CAPTION_SUFFIX in row.id, row.id),
        )
        files = {
            f"{split}.parquet": write_split(
                [row for row in ordered if row.split == split], output / f"{split}.parquet"
            )
            for split in SPLITS
        }
    timer.seconds["total"] = round(time.perf_counter() - started, 3)

    report = {
        "name": top.name,
        "description": top.description,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "config_path": str(loaded.path),
        "config_hash": config_hash(top),
        "config": top.model_dump(mode="json", by_alias=True),
        "taxonomy_version": TAXONOMY_VERSION,
        "normalizer_version": NORMALIZER_VERSION,
        "mode": "strict" if strict else "lenient",
        "output": str(output),
        "members": [_member_report(member, tally, sampling, language_reports) for member in members],
        "rows_read": sum(stat.rows_read for member in members for stat in member.rows.sources),
        "dropped_by_rule": sum(stat.dropped_by_rule for member in members for stat in member.rows.sources),
        "skipped_rows": dict(sorted(problems.counts.items())),
        "skipped_examples": problems.examples,
        "language_id": _merge_language_reports(language_reports.values()),
        "exact_duplicates": {
            "within_dataset": _total(tally, "exact_within"),
            "across_datasets": _total(tally, "exact_across"),
        },
        "near_duplicates": {
            "enabled": near.enabled,
            "threshold": near.threshold,
            "num_perm": near.num_perm,
            "shingles": f"{near.shingle} {near.size}-grams",
            "min_chars": near.min_chars,
            "pairs": len(edges),
            "removed_within_dataset": _total(tally, "near_within"),
            "removed_across_datasets": _total(tally, "near_across"),
            "label_disagreements": _total(tally, "near_label_disagreement"),
        },
        "label_conflicts": {
            "rule": CONFLICT_RULE,
            "groups": conflicts["majority"] + conflicts["union"],
            "resolved_by_majority": conflicts["majority"],
            "resolved_by_union": conflicts["union"],
        },
        "leaks_removed": {
            "exact": _total(tally, "leak_exact"),
            "near": _total(tally, "leak_near"),
            "decontamination": _total(tally, "leak_decontamination"),
            "total": _total(tally, "leak_exact")
            + _total(tally, "leak_near")
            + _total(tally, "leak_decontamination"),
        },
        "decontamination": {
            "configs": [*top.decontaminate, *(n for n in top.decontaminate_if_present if n not in skipped_suites)],
            "rows": len(anchors),
            "skipped": skipped_suites,
        },
        "sampling": sampling,
        "eval_caps": eval_caps,
        "caption": caption_report,
        "splits": {split: files[f"{split}.parquet"]["rows"] for split in SPLITS},
        "labels": _label_counts(ordered),
        "categories": _category_counts(ordered),
        "files": files,
        "timings_s": timer.seconds,
    }
    write_report(report, output)
    return report


# --------------------------------------------------------------------------- reading


def _read_anchors(
    loaded: LoadedConfig, members: list[_Member], problems: Problems, progress: bool, skipped: dict[str, str]
) -> list[Example]:
    """Rows of the decontamination suites; optional suites whose files are missing go to `skipped`."""
    names = {member.name for member in members}
    anchors: list[Example] = []
    required = load_decontamination(loaded)
    for anchor in [*required, *load_optional_decontamination(loaded)]:
        if anchor.name in names:
            raise ConfigError(f"{loaded.path}: {anchor.name!r} is both included and in decontaminate")
        if anchor not in required:
            missing = missing_source_files(anchor)
            if missing:
                skipped[anchor.name] = f"not on this machine: {missing[0]}"
                continue
        for row in load_dataset_rows(anchor, problems, progress=progress).examples:
            row.anchor = True
            row.hint = row.split = "test"
            anchors.append(row)
    return anchors


# --------------------------------------------------------------------------- within one dataset


def _exact_within(
    rows: list[Example], tally: defaultdict[str, Counter[str]], conflicts: Counter[str]
) -> None:
    groups: defaultdict[str, list[Example]] = defaultdict(list)
    for row in rows:
        if row.alive:
            groups[row.key].append(row)
    for group in groups.values():
        if len(group) < 2:
            continue
        labels, how = resolve_labels(row.labels for row in group)
        conflicts[how] += 1
        keeper = max(group, key=lambda row: (HINT_RANK[row.hint], -row.order))
        keeper.labels = labels
        for row in group:
            if row is keeper:
                continue
            row.alive = False
            tally[row.dataset]["leak_exact" if _hint_leak(keeper, row) else "exact_within"] += 1


def _hint_leak(kept: Example, dropped: Example) -> bool:
    """A dropped copy is a leak when the kept one is the dataset's own test/validation row."""
    return kept.hint in ("test", "validation") and HINT_RANK[kept.hint] > HINT_RANK[dropped.hint]


def _near_within(
    member: _Member, edges: list[Edge], tally: defaultdict[str, Counter[str]]
) -> dict[int, int] | None:
    """Drop near-duplicates inside the dataset; where dropping is off, group them instead.

    Returns the groups (row order -> group root order) for the split step, or None.
    """
    settings = member.loaded.config.dedup.near
    if not edges or not settings.enabled:
        return None
    if not settings.drop_within_dataset:
        return _union_find(edges)
    neighbours: defaultdict[int, list[Example]] = defaultdict(list)
    for a, b in edges:
        neighbours[a.order].append(b)
        neighbours[b.order].append(a)
    involved = {row.order: row for pair in edges for row in pair}
    kept: set[int] = set()
    for row in sorted(involved.values(), key=lambda row: (-HINT_RANK[row.hint], row.order)):
        near_kept = [other for other in neighbours[row.order] if other.order in kept]
        # A dataset's own test rows are never thinned: the test set stays as shipped.
        if row.hint == "test" or not near_kept:
            kept.add(row.order)
            continue
        row.alive = False
        closest = max(near_kept, key=lambda other: (HINT_RANK[other.hint], -other.order))
        tally[row.dataset]["leak_near" if _hint_leak(closest, row) else "near_within"] += 1
        if closest.labels != row.labels:
            tally[row.dataset]["near_label_disagreement"] += 1
    return None


def _union_find(edges: list[Edge]) -> dict[int, int]:
    parent: dict[int, int] = {}

    def find(node: int) -> int:
        parent.setdefault(node, node)
        while parent[node] != node:
            parent[node] = parent[parent[node]]
            node = parent[node]
        return node

    for a, b in edges:
        root_a, root_b = find(a.order), find(b.order)
        if root_a != root_b:
            parent[max(root_a, root_b)] = min(root_a, root_b)
    return {node: find(node) for node in list(parent)}


def _split_leaks(edges: list[Edge], tally: defaultdict[str, Counter[str]]) -> None:
    """After splitting: of two near-duplicates in different splits, the lower-split one goes."""
    for a, b in sorted(edges, key=lambda pair: (pair[0].order, pair[1].order)):
        if a.alive and b.alive and a.split != b.split:
            assert a.split is not None and b.split is not None
            lower = a if SPLIT_RANK[a.split] < SPLIT_RANK[b.split] else b
            lower.alive = False
            tally[lower.dataset]["leak_near"] += 1


# --------------------------------------------------------------------------- across datasets


def _exact_across(
    rows: list[Example], tally: defaultdict[str, Counter[str]], conflicts: Counter[str]
) -> None:
    groups: defaultdict[str, list[Example]] = defaultdict(list)
    for row in rows:
        if row.alive:
            groups[row.key].append(row)
    for group in groups.values():
        if len({row.dataset for row in group}) < 2:
            continue
        real = [row for row in group if not row.anchor]
        if len(real) < len(group):
            for row in real:
                if row.split != "test":
                    row.alive = False
                    tally[row.dataset]["leak_decontamination"] += 1
        survivors = [row for row in real if row.alive]
        if len(survivors) < 2:
            continue
        labels, how = resolve_labels(row.labels for row in real)
        conflicts[how] += 1
        keeper = max(survivors, key=lambda row: (SPLIT_RANK[row.split or "train"], -row.order))
        keeper.labels = labels
        for row in survivors:
            if row is not keeper:
                row.alive = False
                tally[row.dataset]["leak_exact" if row.split != keeper.split else "exact_across"] += 1


def _near_across(edges: list[Edge], tally: defaultdict[str, Counter[str]], *, skip_same_text: bool) -> None:
    for a, b in sorted(edges, key=lambda pair: (pair[0].order, pair[1].order)):
        if a.dataset == b.dataset or not (a.alive and b.alive) or (a.anchor and b.anchor):
            continue
        if skip_same_text and a.key == b.key:
            continue
        if a.anchor or b.anchor:
            real = b if a.anchor else a
            if real.split != "test":
                real.alive = False
                tally[real.dataset]["leak_decontamination"] += 1
            continue
        assert a.split is not None and b.split is not None
        if a.split != b.split:
            lower = a if SPLIT_RANK[a.split] < SPLIT_RANK[b.split] else b
            lower.alive = False
            tally[lower.dataset]["leak_near"] += 1
        elif a.split != "test":
            later = b if b.order > a.order else a
            later.alive = False
            tally[later.dataset]["near_across"] += 1
            if a.labels != b.labels:
                tally[later.dataset]["near_label_disagreement"] += 1


# --------------------------------------------------------------------------- the report


def _total(tally: defaultdict[str, Counter[str]], key: str) -> int:
    return sum(counter[key] for counter in tally.values())


def _member_report(
    member: _Member,
    tally: defaultdict[str, Counter[str]],
    sampling: dict[str, dict[str, int]],
    language_reports: dict[str, dict[str, Any]],
) -> dict[str, Any]:
    config = member.loaded.config
    rows = [row for row in member.rows.examples if row.alive]
    counts = tally[member.name]
    return {
        "name": member.name,
        "config_path": str(member.loaded.path),
        "config_hash": config_hash(config),
        "license": config.license,
        "eval_only": config.eval_only,
        "train_fraction": member.spec.train_fraction,
        "max_train_rows": member.spec.max_train_rows,
        "max_eval_rows": member.spec.max_eval_rows,
        "sources": [vars(stat) for stat in member.rows.sources],
        "label_rules": member.rows.rule_hits,
        "language_id": language_reports.get(member.name, {}),
        "exact_duplicates": counts["exact_within"] + counts["exact_across"],
        "near_duplicates": counts["near_within"] + counts["near_across"],
        "leaks_removed": counts["leak_exact"] + counts["leak_near"] + counts["leak_decontamination"],
        "sampling": sampling.get(member.name),
        "rows": {split: sum(1 for row in rows if row.split == split) for split in SPLITS},
    }


def _merge_language_reports(reports: Any) -> dict[str, Any]:
    detected: Counter[str] = Counter()
    total = 0
    for report in reports:
        total += report.get("rows", 0)
        detected.update(report.get("detected", {}))
    return {"rows": total, "detected": dict(detected.most_common())}


def _category_counts(rows: list[Example]) -> dict[str, dict[str, dict[str, int]]]:
    """split -> language -> category -> rows, for rows whose data names a category (the stance set's
    hard-negative types reach training intact, language by language)."""
    counts: dict[str, dict[str, Counter[str]]] = {split: defaultdict(Counter) for split in SPLITS}
    for row in rows:
        if row.category is not None and row.split is not None:
            counts[row.split][row.language or "und"][row.category] += 1
    return {
        split: {language: dict(sorted(c.items())) for language, c in sorted(by_language.items())}
        for split, by_language in counts.items()
    }


def _label_counts(rows: list[Example]) -> dict[str, dict[str, int]]:
    counts: dict[str, dict[str, int]] = {}
    for split in SPLITS:
        in_split = [row for row in rows if row.split == split]
        per = {label: sum(1 for row in in_split if label in row.labels) for label in LABELS}
        per["benign"] = sum(1 for row in in_split if not row.labels)
        counts[split] = per
    return counts
