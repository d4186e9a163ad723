"""One dataset's sources -> examples: read, join, map labels, normalise, assign ids and split hints."""

from __future__ import annotations

import html
import os
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from textguard.data.dataconfig import BCP47, JoinSpec, LoadedConfig, SourceSpec
from textguard.data.examples import Example
from textguard.data.labelling import LabelMapper, canonical, is_missing, rule_descriptions, shown
from textguard.data.problems import Problems, RowProblem
from textguard.data.readers import Record, open_table, resolve_path
from textguard.errors import DataError

_URL = re.compile(r"(?:https?://|www\.)\S+")
_MENTION = re.compile(r"(?<![\w@])@\w{1,30}")


@dataclass
class SourceStats:
    name: str
    path: str
    rows_read: int = 0
    rows_kept: int = 0
    dropped_by_rule: int = 0
    skipped: int = 0


@dataclass
class DatasetRows:
    name: str
    examples: list[Example]
    sources: list[SourceStats]
    #: Readable rule -> rows it applied to.
    rule_hits: dict[str, int] = field(default_factory=dict)


def missing_source_files(loaded: LoadedConfig) -> list[str]:
    """The files of a dataset's sources that are not on this machine (hub sources are never missing)."""
    missing = []
    for source in loaded.config.sources:
        if source.kind == "hub" or source.path is None:
            continue
        try:
            path = resolve_path(source.path, source.base, loaded.directory)
        except DataError as exc:  # the shared datasets folder itself is missing
            missing.append(str(exc))
            continue
        if not path.exists():
            missing.append(str(path))
    return missing


def load_dataset_rows(loaded: LoadedConfig, problems: Problems, *, progress: bool = False) -> DatasetRows:
    """Every usable row of one (non-combined) dataset, texts normalised, labels mapped."""
    from tqdm.auto import tqdm

    from textguard.text import normalize

    config = loaded.config
    examples: list[Example] = []
    stats: list[SourceStats] = []
    hits: Counter[str] = Counter()
    seen_ids: set[str] = set()
    for source in config.sources:
        spec = source.labels or config.labels
        assert spec is not None  # the schema guarantees a labels section
        mapper = LabelMapper(spec)
        limit = config.max_rows_per_source or source.max_rows
        joined = {column for join in source.join for column in join.column_map().values()}
        needed = _source_columns(source, spec.columns())
        table = open_table(source, loaded.directory, problems, required=needed - joined, limit=limit)
        joins = [_JoinIndex.build(join, loaded, problems) for join in source.join]
        folder_splits = _folder_splits(source, loaded)
        stat = SourceStats(source.name, table.path)
        skipped_before = problems.counts.total()
        records = tqdm(
            table.records, desc=f"read {config.name}/{source.name}", unit=" rows", disable=not progress
        )
        for record in _joined(records, joins, problems):
            stat.rows_read += 1
            try:
                example = _to_example(record, source, config.name, mapper, normalize, folder_splits, seen_ids)
            except RowProblem as problem:
                problems.report_problem(problem, record.where)
                continue
            if example is None:
                stat.dropped_by_rule += 1
                continue
            if config.eval_only:
                example.hint = "test"
            seen_ids.add(example.id)
            examples.append(example)
            stat.rows_kept += 1
        stat.skipped = problems.counts.total() - skipped_before
        described = rule_descriptions(spec)
        for key, count in mapper.hits.items():
            hits[f"{source.name}: {described.get(key, key)}"] += count
        stats.append(stat)
    return DatasetRows(config.name, examples, stats, dict(hits))


def _source_columns(source: SourceSpec, label_columns: set[str]) -> set[str]:
    needed = {source.text_column} | label_columns
    for column in (
        source.id_column,
        source.language_column,
        source.source_column,
        source.split_column,
        source.category_column,
        source.group_column,
    ):
        if column is not None:
            needed.add(column)
    provided: set[str] = set()
    for join in source.join:
        for column in [join.key, *join.verify.values()]:
            if column is not None and column not in provided:
                needed.add(column)
        provided |= set(join.column_map().values())
    return needed


def _to_example(
    record: Record,
    source: SourceSpec,
    dataset: str,
    mapper: LabelMapper,
    normalize: Any,
    folder_splits: dict[str, str],
    seen_ids: set[str],
) -> Example | None:
    values = record.values
    cell = values.get(source.text_column)
    text = "" if is_missing(cell) else normalize(clean_text(str(cell), source))
    if not text:
        raise RowProblem("empty_text", source.text_column, "empty text (after normalisation)")
    labels = mapper.labels(values)
    if labels is None:
        return None
    raw_id = values.get(source.id_column) if source.id_column else None
    if source.id_column is not None:
        if is_missing(raw_id):
            raise RowProblem("missing_id", source.id_column, "empty id")
        raw_id = str(raw_id).strip()
        example_id = f"{dataset}/{raw_id}"
    else:
        example_id = f"{dataset}/{source.name}/{record.number}"
    if example_id in seen_ids:
        raise RowProblem("duplicate_id", source.id_column, f"duplicate id {example_id!r}")
    return Example(
        id=example_id,
        text=text,
        labels=tuple(labels),
        language=_language(source, values),
        source=_source_kind(source, values),
        dataset=dataset,
        hint=_split_hint(source, values, raw_id, folder_splits),
        where=str(record.where),
        category=_optional_cell(values, source.category_column),
        group=_optional_cell(values, source.group_column),
    )


def _optional_cell(values: dict[str, Any], column: str | None) -> str | None:
    if column is None:
        return None
    cell = values.get(column)
    return None if is_missing(cell) else str(cell).strip() or None


def clean_text(text: str, source: SourceSpec) -> str:
    """The source's own clean-ups, before normalize(); masks match MLMA's and ToLD-Br's ("@user", "@url")."""
    for old, new in source.replace.items():
        text = text.replace(old, new)
    if "html_unescape" in source.clean:
        text = html.unescape(text)
    if "mask_urls" in source.clean:
        text = _URL.sub("@url", text)
    if "mask_mentions" in source.clean:
        text = _MENTION.sub(
            lambda match: match.group() if match.group() in ("@user", "@url") else "@user", text
        )
    return text


def _language(source: SourceSpec, values: dict[str, Any]) -> str | None:
    if source.language is not None:
        return source.language
    if source.language_column is None:
        return None
    cell = values.get(source.language_column)
    if is_missing(cell):
        return None
    raw = str(cell).strip()
    tag = source.language_map.get(raw, raw)
    if not BCP47.match(tag):
        raise RowProblem(
            "bad_language", source.language_column, f"{raw!r} is not a BCP-47 tag (add it to language_map)"
        )
    return tag


def _source_kind(source: SourceSpec, values: dict[str, Any]) -> str:
    if source.source_column is None:
        return source.source
    cell = values.get(source.source_column)
    if is_missing(cell):
        return source.source
    kind = str(cell).strip()
    if kind not in ("chat", "caption"):
        raise RowProblem(
            "bad_source", source.source_column, f"source must be chat or caption, got {shown(cell)}"
        )
    return kind


def _split_hint(
    source: SourceSpec, values: dict[str, Any], raw_id: Any, folder_splits: dict[str, str]
) -> str:
    if raw_id is not None and raw_id in folder_splits:
        return folder_splits[raw_id]
    if source.split_column is not None:
        cell = values.get(source.split_column)
        table = {canonical(key): value for key, value in source.split_map.items()}
        hint = table.get(canonical(cell)) if not is_missing(cell) else None
        if hint is None:
            expected = ", ".join(map(str, source.split_map))
            raise RowProblem(
                "unknown_split_value",
                source.split_column,
                f"unknown split value {shown(cell)} (expected one of {expected})",
            )
        return hint
    return source.split


def _folder_splits(source: SourceSpec, loaded: LoadedConfig) -> dict[str, str]:
    """File stem -> split, for datasets that ship a split as a folder of files (Stormfront)."""
    members: dict[str, str] = {}
    for split, folder in source.split_by_folder.items():
        path = resolve_path(folder, source.base, loaded.directory)
        if not path.is_dir():
            raise DataError(f"{path}: split_by_folder names a folder that does not exist")
        for name in os.listdir(path):
            members.setdefault(Path(name).stem, split)
    return members


# --------------------------------------------------------------------------- joins


@dataclass
class _JoinIndex:
    spec: JoinSpec
    path: str
    #: key -> (columns to take, values to verify against the row)
    by_key: dict[Any, tuple[dict[str, Any], dict[str, Any]]]
    by_row: list[tuple[dict[str, Any], dict[str, Any]]]

    @classmethod
    def build(cls, spec: JoinSpec, loaded: LoadedConfig, problems: Problems) -> _JoinIndex:
        from textguard.text import normalize

        right_key = spec.right_key or spec.key
        columns = spec.column_map()
        required = set(columns) | set(spec.verify) | ({right_key} if right_key else set())
        table = open_table(spec, loaded.directory, problems, required=required)
        by_key: dict[Any, tuple[dict[str, Any], dict[str, Any]]] = {}
        rows: list[tuple[dict[str, Any], dict[str, Any]]] = []
        for record in table.records:
            taken = (
                {target: record.values.get(column) for column, target in columns.items()},
                {target: record.values.get(column) for column, target in spec.verify.items()},
            )
            if spec.by_row:
                rows.append(taken)
                continue
            assert right_key is not None
            key = _join_key(record.values.get(right_key), spec.normalize_keys, normalize)
            if key in by_key:
                if spec.duplicates == "error":
                    raise DataError(
                        f"{record.where}: field {right_key!r}: duplicate join key "
                        f"{record.values.get(right_key)!r} (set duplicates: first to take the first match)"
                    )
                continue
            by_key[key] = taken
        return cls(spec, table.path, by_key, rows)


def _join_key(value: Any, normalise_keys: bool, normalize: Any) -> Any:
    if is_missing(value):
        return None
    if normalise_keys:
        return normalize(str(value)).casefold()
    return canonical(value)


def _joined(records: Iterator[Record], joins: list[_JoinIndex], problems: Problems) -> Iterator[Record]:
    if not joins:
        yield from records
        return
    from textguard.text import normalize

    for record in records:
        ok = True
        for join in joins:
            spec = join.spec
            if spec.by_row:
                match = join.by_row[record.number - 1] if record.number <= len(join.by_row) else None
                if match is None:
                    raise DataError(
                        f"{join.path}: has {len(join.by_row)} rows, fewer than the joined source "
                        f"({record.where}); by_row joins need tables of equal length"
                    )
            else:
                assert spec.key is not None
                match = join.by_key.get(
                    _join_key(record.values.get(spec.key), spec.normalize_keys, normalize)
                )
            if match is None:
                if spec.required:
                    problems.report(
                        "join_missing",
                        record.where,
                        spec.key,
                        f"no row with {record.values.get(spec.key or '')!r} in {join.path}",
                    )
                    ok = False
                    break
                continue
            taken, checks = match
            mismatch = next(
                (
                    column
                    for column, value in checks.items()
                    if canonical(value) != canonical(record.values.get(column))
                ),
                None,
            )
            if mismatch is not None:
                problems.report(
                    "join_mismatch",
                    record.where,
                    mismatch,
                    f"{shown(record.values.get(mismatch))} here but {shown(checks[mismatch])} in {join.path} "
                    "(the joined tables are not aligned)",
                )
                ok = False
                break
            record.values.update(taken)
        if ok:
            yield record
