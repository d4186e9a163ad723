"""The data-config schema: what a `configs/data/<name>.yaml` may say, and how it is loaded.

One YAML file describes one dataset: where its files are, which column holds the text, how each
source label becomes taxonomy labels, where its splits come from and how it is cleaned. A
"combined" config has no sources of its own: it includes other configs by name, each with a
training-sampling weight. Every model here is a `StrictModel`, so a misspelt key is a
`ConfigError` rather than a silently ignored setting.

The label mapping is declarative so that a reviewer can read it next to the dataset's SOURCE.md:
`rules` add labels (union over matching rules; no match means benign), `drop` rules remove rows,
`allowed_values` turns an unexpected source label into an error instead of a silent benign row.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from textguard.caption import CaptionConfig
from textguard.config import StrictModel, parse_override, read_yaml, validate
from textguard.errors import ConfigError
from textguard.labels import LABELS

SplitName = Literal["train", "validation", "test"]
#: `trainval` = a dataset's own training file: validation is carved out of it, test never is.
SplitHint = Literal["auto", "train", "trainval", "validation", "test"]
ReaderKind = Literal["csv", "tsv", "jsonl", "parquet", "text_folder", "hub"]
#: Where a relative path starts: the shared datasets folder, the checkout, the package resources
#: or the folder holding the config file.
PathBase = Literal["shared", "project", "resources", "config"]
Scalar = str | int | float | bool
#: Dataset-specific clean-ups applied before normalize(): HTML entities left in tweets, user
#: handles and links (chat text has names, not handles; masking keeps data and model free of them).
CleanStep = Literal["html_unescape", "mask_mentions", "mask_urls"]
CompareOp = Literal[
    "==", "!=", ">", ">=", "<", "<=", "in", "not_in", "contains", "has", "matches", "missing", "present"
]

SPLITS: tuple[SplitName, ...] = ("train", "validation", "test")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
BCP47 = re.compile(r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$")


def _check_labels(labels: list[str]) -> list[str]:
    unknown = [label for label in labels if label not in LABELS]
    if unknown:
        raise ValueError(f"unknown label(s) {unknown}; the taxonomy has {list(LABELS)}")
    return labels


# --------------------------------------------------------------------------- conditions


class Compare(StrictModel):
    """`{column: violence, op: ">=", value: 0.5}`; a missing cell never matches (except `missing`).

    `matches` searches the cell with a case-insensitive regular expression (a lexicon:
    `{column: text, op: matches, value: "flüchtl|migra|asyl"}`).
    """

    column: str
    op: CompareOp = "=="
    value: Scalar | list[Scalar] | None = None
    #: For `has`: the cell is a `sep`-joined list of tokens (MLMA's `hateful_offensive`).
    sep: str | None = None

    @model_validator(mode="after")
    def _value_fits_op(self) -> Compare:
        if self.op in ("missing", "present"):
            if self.value is not None:
                raise ValueError(f"op {self.op!r} takes no value")
        elif self.value is None:
            raise ValueError(f"op {self.op!r} needs a value")
        elif self.op in ("in", "not_in") and not isinstance(self.value, list):
            raise ValueError(f"op {self.op!r} needs a list value")
        elif self.op not in ("in", "not_in") and isinstance(self.value, list):
            raise ValueError(f"op {self.op!r} needs a single value, not a list")
        if self.op == "has" and not self.sep:
            raise ValueError("op 'has' needs sep (the token separator)")
        if self.op == "matches":
            try:
                re.compile(str(self.value))
            except re.error as error:
                raise ValueError(f"op 'matches' needs a regular expression: {error}") from None
        return self


class AllOf(StrictModel):
    all: list[Condition] = Field(min_length=1)


class AnyOf(StrictModel):
    any: list[Condition] = Field(min_length=1)


class NotOf(StrictModel):
    model_config = StrictModel.model_config | {"populate_by_name": True}

    not_: Condition = Field(alias="not")


Condition = Compare | AllOf | AnyOf | NotOf
AllOf.model_rebuild()
AnyOf.model_rebuild()
NotOf.model_rebuild()


def condition_columns(condition: Condition) -> set[str]:
    if isinstance(condition, Compare):
        return {condition.column}
    if isinstance(condition, AllOf):
        return set().union(*(condition_columns(part) for part in condition.all))
    if isinstance(condition, AnyOf):
        return set().union(*(condition_columns(part) for part in condition.any))
    return condition_columns(condition.not_)


# --------------------------------------------------------------------------- label rules


class LabelFix(StrictModel):
    """A rule that corrects a source's labels, with its measured precision.

    Someone read `sample` of the rows the rule changes and found the new outcome (the new label set,
    or removing the row) right by the taxonomy in `correct` of them. The data card lists every fix
    with its precision and the number of rows it changed in the prepared data.
    """

    #: The wrong lesson the source labels teach without the rule.
    lesson: str
    sample: int = Field(ge=1)
    correct: int = Field(ge=0)
    #: Who measured and when, e.g. "2026-12-05, 50 random changed rows read by one annotator".
    measured: str = ""

    @model_validator(mode="after")
    def _correct_fits_sample(self) -> LabelFix:
        if self.correct > self.sample:
            raise ValueError(f"correct ({self.correct}) cannot exceed sample ({self.sample})")
        return self

    @property
    def share_correct(self) -> float:
        """How many of the sampled changed rows the new outcome is right for (reported in the card)."""
        return self.correct / self.sample


class WhenRule(StrictModel):
    """Add `labels` to every row where `when` holds (`[]` documents a benign case; it adds nothing)."""

    when: Condition
    labels: list[str]
    why: str = ""
    #: Set when the rule corrects the source's labels (it changes rows, it does not just map them).
    fix: LabelFix | None = None

    _labels_known = field_validator("labels")(_check_labels)


class MapRule(StrictModel):
    """Look the cell up in `map`: a label list (`[]` = benign) or `drop`; any other value is an error."""

    column: str
    map: dict[Scalar, list[str] | Literal["drop"]] = Field(min_length=1)
    #: The cell holds several values joined by `sep`; every token must be in `map`.
    sep: str | None = None
    why: str = ""

    @field_validator("map")
    @classmethod
    def _map_labels_known(
        cls, value: dict[Scalar, list[str] | Literal["drop"]]
    ) -> dict[Scalar, list[str] | Literal["drop"]]:
        for labels in value.values():
            if labels != "drop":
                _check_labels(list(labels))
        return value


class FromColumnRule(StrictModel):
    """Labels already in taxonomy names (the seed set): a list cell, or a `sep`-joined string."""

    from_column: str
    sep: str | None = None
    why: str = ""


LabelRule = WhenRule | MapRule | FromColumnRule


class DropRule(StrictModel):
    when: Condition
    why: str = ""
    fix: LabelFix | None = None


class LabelSpec(StrictModel):
    #: column -> the only values it may hold; anything else is an "unknown label value" error.
    allowed_values: dict[str, list[Scalar]] = Field(default_factory=dict)
    rules: list[LabelRule] = Field(default_factory=list)
    drop: list[DropRule] = Field(default_factory=list)

    def columns(self) -> set[str]:
        used = set(self.allowed_values)
        for rule in self.rules:
            if isinstance(rule, WhenRule):
                used |= condition_columns(rule.when)
            elif isinstance(rule, MapRule):
                used.add(rule.column)
            else:
                used.add(rule.from_column)
        for drop in self.drop:
            used |= condition_columns(drop.when)
        return used


# --------------------------------------------------------------------------- tables and sources


class FolderSpec(StrictModel):
    """One text file per row (`<folder>/<key><suffix>`), keyed by a column of the annotation table."""

    path: str
    key_column: str
    suffix: str = ".txt"
    #: The column name the file's text is given in the row.
    text_column: str = "text"


class HubSpec(StrictModel):
    name: str
    config: str | None = None
    split: str = "train"
    revision: str | None = None


class TableSpec(StrictModel):
    """How to read one table (a source or a join table)."""

    kind: ReaderKind
    path: str | None = None
    base: PathBase = "shared"
    #: Field separator; defaults to "," for csv and a tab for tsv.
    delimiter: str | None = None
    #: `none` reads quote characters as text (csv.QUOTE_NONE), as GermEval's TSV needs.
    quoting: Literal["minimal", "none"] = "minimal"
    header: bool = True
    #: Column names for a file without a header row.
    column_names: list[str] | None = None
    encoding: str = "utf-8"
    folder: FolderSpec | None = None
    hub: HubSpec | None = None

    @model_validator(mode="after")
    def _kind_needs(self) -> TableSpec:
        if self.kind == "hub":
            if self.hub is None:
                raise ValueError("kind 'hub' needs a hub section (name, config, split)")
        elif self.path is None:
            raise ValueError(f"kind {self.kind!r} needs a path")
        if self.kind == "text_folder" and self.folder is None:
            raise ValueError("kind 'text_folder' needs a folder section (path, key_column)")
        if self.delimiter is not None and len(self.delimiter) != 1:
            raise ValueError("delimiter must be one character")
        if not self.header and not self.column_names:
            raise ValueError("a file without a header row needs column_names")
        if self.header and self.column_names:
            raise ValueError("column_names is only for header: false")
        return self


class JoinSpec(TableSpec):
    """Bring columns of a second table into each row, matched on a key or on the row position."""

    #: Key column in the row (it may come from an earlier join). Not called `on`: YAML 1.1 reads a
    #: bare `on` as the boolean true.
    key: str | None = None
    #: Key column in the joined table; defaults to `key`.
    right_key: str | None = None
    #: Match row N to row N (files shipped as parallel tables); both must have the same length.
    by_row: bool = False
    #: Columns to take: a list keeps names, a mapping renames (right -> row); an existing
    #: column of the same name is replaced (how a relabelled column supersedes the original).
    columns: list[str] | dict[str, str] = Field(min_length=1)
    #: Every row must find a match (else a row error); false leaves the columns missing.
    required: bool = True
    #: Compare keys after normalize() and casefold (texts used as keys differ in spaces).
    normalize_keys: bool = False
    duplicates: Literal["error", "first"] = "error"
    #: Right column -> row column that must hold the same value (checks that a by_row join
    #: really pairs the same rows); a mismatch is a row error.
    verify: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _key_given(self) -> JoinSpec:
        if self.by_row == (self.key is not None):
            raise ValueError("a join needs exactly one of `key` (a key column) or `by_row: true`")
        return self

    def column_map(self) -> dict[str, str]:
        if isinstance(self.columns, list):
            return {name: name for name in self.columns}
        return dict(self.columns)


class SourceSpec(TableSpec):
    """One input table of a dataset and how its rows become examples."""

    name: str
    text_column: str
    #: A stable id in the data; without one the id is `<dataset>/<source>/<record number>`.
    id_column: str | None = None
    #: A fixed BCP-47 tag; or `language_column`; neither = identify the language (py3langid).
    language: str | None = None
    language_column: str | None = None
    #: Raw language values -> BCP-47 tags.
    language_map: dict[str, str] = Field(default_factory=dict)
    source: Literal["chat", "caption"] = "chat"
    source_column: str | None = None
    #: A column naming what kind of row this is (a label or a hard-negative type such as
    #: `counter_speech`); counted per split and language in the report and the data card.
    category_column: str | None = None
    #: A column whose rows belong together (a contrastive family: a harmful statement and its
    #: stance-flipped siblings): they share one split and are thinned as a whole, so a model is
    #: never evaluated on the sibling of a row it trained on.
    group_column: str | None = None
    split: SplitHint = "auto"
    split_column: str | None = None
    split_map: dict[Scalar, SplitHint] = Field(default_factory=dict)
    #: split -> folder: rows whose id names a file in that folder get that split (Stormfront's
    #: sampled_test); other rows keep `split`.
    split_by_folder: dict[SplitName, str] = Field(default_factory=dict)
    join: list[JoinSpec] = Field(default_factory=list)
    #: Literal replacements in the text before cleaning (GermEval's "|LBR|" line-break marker).
    replace: dict[str, str] = Field(default_factory=dict)
    clean: list[CleanStep] = Field(default_factory=list)
    #: Overrides the dataset-level `labels` for this source.
    labels: LabelSpec | None = None
    max_rows: int | None = Field(default=None, ge=1)

    @field_validator("name")
    @classmethod
    def _name_ok(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError("use letters, digits, '_', '-' or '.'")
        return value

    @field_validator("language")
    @classmethod
    def _language_ok(cls, value: str | None) -> str | None:
        if value is not None and not BCP47.match(value):
            raise ValueError(f"{value!r} is not a BCP-47 tag like 'en' or 'pt-BR'")
        return value

    @model_validator(mode="after")
    def _one_language_way(self) -> SourceSpec:
        if self.language is not None and self.language_column is not None:
            raise ValueError("give language or language_column, not both")
        if self.split_map and self.split_column is None:
            raise ValueError("split_map needs split_column")
        if self.split_column is not None and not self.split_map:
            raise ValueError("split_column needs split_map (raw value -> split)")
        if self.split_by_folder and self.id_column is None:
            raise ValueError("split_by_folder matches file names against id_column; set id_column")
        return self

    def split_hints(self) -> set[str]:
        hints: set[str] = {self.split, *self.split_by_folder}
        hints.update(str(value) for value in self.split_map.values())
        return hints


# --------------------------------------------------------------------------- dataset-level settings


class SplitSpec(StrictModel):
    """Fractions of the `auto` pool (validation also of a `trainval` pool), and the seed."""

    seed: int = 13
    validation: float = Field(default=0.1, ge=0.0, lt=1.0)
    test: float = Field(default=0.1, ge=0.0, lt=1.0)

    @model_validator(mode="after")
    def _fractions_fit(self) -> SplitSpec:
        if self.validation + self.test >= 1.0:
            raise ValueError("validation + test must leave rows for train")
        return self


class NearDedupSpec(StrictModel):
    enabled: bool = True
    #: Estimated Jaccard similarity of shingle sets at or above which two texts are near-duplicates.
    threshold: float = Field(default=0.8, gt=0.0, le=1.0)
    num_perm: int = Field(default=64, ge=16, le=512)
    shingle: Literal["char", "word"] = "char"
    #: Shingle width: characters for `char`, words for `word`.
    size: int = Field(default=5, ge=1, le=20)
    #: Shorter texts only take part in exact de-duplication: a few shingles say too little.
    min_chars: int = Field(default=20, ge=1)
    #: Drop near-duplicates inside this dataset. Off for template suites (HateCheck), whose
    #: near-identical cases are the point; leaks across splits are still removed.
    drop_within_dataset: bool = True


class DedupSpec(StrictModel):
    exact: bool = True
    near: NearDedupSpec = Field(default_factory=NearDedupSpec)


class LanguageIdSpec(StrictModel):
    #: Restrict py3langid to these languages (empty = all it knows).
    candidates: list[str] = Field(default_factory=list)
    #: Below this probability the row gets "und" (undetermined).
    min_confidence: float = Field(default=0.0, ge=0.0, le=1.0)


class CaptionSpec(CaptionConfig):
    """The caption view (textguard.caption.CaptionConfig: filler_rate, segment length, emoji, urls,
    mode, seed) plus which rows get a copy: a seeded `fraction` of the chat rows in `splits`."""

    fraction: float = Field(default=1.0, gt=0.0, le=1.0)
    splits: list[SplitName] = Field(default_factory=lambda: list(SPLITS))


class CardSpec(StrictModel):
    """Prose for the data card; statistics come from the prepared data."""

    summary: str = ""
    curation_rationale: str = ""
    annotator_notes: str = ""
    social_impact: str = ""
    biases: list[str] = Field(default_factory=list)
    caveats: list[str] = Field(default_factory=list)
    known_gaps: list[str] = Field(default_factory=list)
    intended_use: str = ""
    out_of_scope: str = ""
    #: Label fixes that were tried and measured but not kept (with their measured precision).
    rejected_fixes: list[str] = Field(default_factory=list)


class MemberSpec(StrictModel):
    """One dataset in a combined config; the weights only thin the training split."""

    config: str
    #: Fraction of the member's training rows to keep (stratified by labels and language).
    train_fraction: float = Field(default=1.0, gt=0.0, le=1.0)
    max_train_rows: int | None = Field(default=None, ge=1)
    #: Cap on the member's validation and on its test rows (each; a seeded sample, families whole):
    #: keeps evaluation within minutes on CPU when a large corpus is in the mixture. The same seed and
    #: cap give the same rows in every mixture, so per-dataset test figures stay comparable.
    max_eval_rows: int | None = Field(default=None, ge=1)
    why: str = ""


class DataConfig(StrictModel):
    name: str
    description: str
    license: str
    #: Short citation; the card prefers the one in `source_card` when that file exists.
    citation: str = ""
    #: SOURCE.md of the dataset, relative to the shared datasets folder.
    source_card: str | None = None
    homepage: str = ""
    #: Evaluation-only data (HateCheck): every row goes to test; a config putting it in train fails.
    eval_only: bool = False
    #: Seed for training-row sampling in a combined config.
    seed: int = 13
    labels: LabelSpec | None = None
    sources: list[SourceSpec] = Field(default_factory=list)
    include: list[MemberSpec] = Field(default_factory=list)
    #: Configs whose rows are never output but whose (near-)duplicates are removed from train and
    #: validation: evaluation suites a model must not have seen.
    decontaminate: list[str] = Field(default_factory=list)
    #: As `decontaminate`, for suites that may not be on this machine (HateCheck lies in the shared
    #: datasets folder, which a user's machine may lack): used when their files exist, otherwise
    #: skipped and named in the report's `decontamination.skipped`.
    decontaminate_if_present: list[str] = Field(default_factory=list)
    split: SplitSpec = Field(default_factory=SplitSpec)
    dedup: DedupSpec = Field(default_factory=DedupSpec)
    language_id: LanguageIdSpec = Field(default_factory=LanguageIdSpec)
    caption: CaptionSpec = Field(default_factory=lambda: CaptionSpec.model_validate({}))
    #: Read at most this many rows from each source (quick runs and tests); wins over a source's max_rows.
    max_rows_per_source: int | None = Field(default=None, ge=1)
    #: How duplicate texts with different label sets are resolved.
    conflict_rule: Literal["majority_then_union"] = "majority_then_union"
    card: CardSpec = Field(default_factory=CardSpec)

    @field_validator("name")
    @classmethod
    def _name_ok(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError("use letters, digits, '_', '-' or '.'")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> DataConfig:
        if bool(self.sources) == bool(self.include):
            raise ValueError("a data config needs either sources (one dataset) or include (combined)")
        names = [source.name for source in self.sources]
        if len(set(names)) != len(names):
            raise ValueError(f"source names must be unique, got {names}")
        for source in self.sources:
            if source.labels is None and self.labels is None:
                raise ValueError(f"source {source.name!r} has no labels section and the dataset has none")
            if self.eval_only:
                wrong = sorted(source.split_hints() - {"auto", "test"})
                if wrong:
                    raise ValueError(
                        f"{self.name} is evaluation-only (eval_only: true) but source {source.name!r} "
                        f"puts rows in {wrong}; its rows may only go to test"
                    )
        return self

    @property
    def is_combined(self) -> bool:
        return bool(self.include)


# --------------------------------------------------------------------------- loading


@dataclass(frozen=True)
class LoadedConfig:
    """A validated config and the file it came from (relative paths and member names resolve there)."""

    config: DataConfig
    path: Path

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def directory(self) -> Path:
        return self.path.parent


def load_data_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> LoadedConfig:
    """Load and validate `configs/data/<name>.yaml`, with `--set key=value` overrides applied.

    Besides `a.b=value`, an override may step into a list by index or by an item's name:
    `sources.0.split=test` or `sources.en_test.max_rows=100`.
    """
    path = Path(path)
    data = apply_data_overrides(read_yaml(path), overrides)
    return LoadedConfig(validate(DataConfig, data, str(path)), path.resolve())


def apply_data_overrides(data: dict[str, Any], overrides: list[str] | tuple[str, ...]) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(json.dumps(data, default=str))
    for item in overrides:
        keys, value = parse_override(item)
        node: Any = result
        for key in keys[:-1]:
            if isinstance(node, list):
                node = _list_item(node, key, item)
                continue
            child = node.get(key)
            if not isinstance(child, dict | list):
                child = {}
                node[key] = child
            node = child
        last = keys[-1]
        if isinstance(node, list):
            index = _list_index(node, last, item)
            node[index] = value
        else:
            node[last] = value
    return result


def _list_index(items: list[Any], key: str, item: str) -> int:
    if key.isdigit() and int(key) < len(items):
        return int(key)
    for index, entry in enumerate(items):
        if isinstance(entry, dict) and entry.get("name", entry.get("config")) == key:
            return index
    raise ConfigError(f"override {item!r}: no list item {key!r} (use an index below {len(items)} or a name)")


def _list_item(items: list[Any], key: str, item: str) -> Any:
    return items[_list_index(items, key, item)]


def member_config_path(parent: LoadedConfig, name: str) -> Path:
    return parent.directory / f"{name}.yaml"


def load_members(loaded: LoadedConfig) -> list[tuple[LoadedConfig, MemberSpec]]:
    """The datasets a config stands for: itself, or each included config with its weights.

    A combined config's `max_rows_per_source` is passed down so a quick run stays quick.
    """
    config = loaded.config
    if not config.is_combined:
        return [(loaded, MemberSpec(config=config.name))]
    members: list[tuple[LoadedConfig, MemberSpec]] = []
    seen: set[str] = set()
    for member in config.include:
        if member.config in seen:
            raise ConfigError(f"{loaded.path}: include lists {member.config!r} twice")
        seen.add(member.config)
        members.append((_load_named(loaded, member.config, "include"), member))
    return members


def load_decontamination(loaded: LoadedConfig) -> list[LoadedConfig]:
    return [_load_named(loaded, name, "decontaminate") for name in loaded.config.decontaminate]


def load_optional_decontamination(loaded: LoadedConfig) -> list[LoadedConfig]:
    return [
        _load_named(loaded, name, "decontaminate_if_present")
        for name in loaded.config.decontaminate_if_present
    ]


def _load_named(parent: LoadedConfig, name: str, field: str) -> LoadedConfig:
    path = member_config_path(parent, name)
    if not path.is_file():
        raise ConfigError(f"{parent.path}: {field} names {name!r} but {path} does not exist")
    overrides = []
    if parent.config.max_rows_per_source is not None:
        overrides.append(f"max_rows_per_source={parent.config.max_rows_per_source}")
    child = load_data_config(path, overrides)
    if child.config.is_combined:
        raise ConfigError(
            f"{parent.path}: {field} names {name!r}, itself a combined config; nest one level only"
        )
    return child
