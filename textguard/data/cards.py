"""Data cards: Markdown written from a prepared folder, its data config and the dataset's SOURCE.md.

The card holds statistics and prose, never rows. Headings follow the Hugging Face dataset-card
template (Dataset Description, Dataset Structure, Dataset Creation, Considerations for Using the
Data, Additional Information) plus the taxonomy's label definitions and intended / out-of-scope use.
Prose comes from the config's `card` section, provenance from SOURCE.md, numbers from the data.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from textguard.data.dataconfig import (
    SPLITS,
    DropRule,
    LabelSpec,
    LoadedConfig,
    MemberSpec,
    WhenRule,
    load_members,
)
from textguard.data.labelling import describe_condition, describe_spec, rule_descriptions
from textguard.data.prepared import read_report, read_split_table
from textguard.errors import DataError
from textguard.labels import DEFINITIONS, LABELS, TAXONOMY_VERSION
from textguard.paths import project_root, shared_datasets_dir

_FIELD = re.compile(r"^- \*\*(?P<key>[^*]+?):\*\*\s*(?P<value>.+)$")


@dataclass
class SourceCard:
    """What a dataset's SOURCE.md says (empty when there is none)."""

    title: str = ""
    fields: dict[str, str] = field(default_factory=dict)
    sections: dict[str, list[str]] = field(default_factory=dict)

    def get(self, key: str, default: str = "") -> str:
        return self.fields.get(key, default)

    def bullets(self, section: str) -> list[str]:
        return [line[2:].strip() for line in self.sections.get(section, []) if line.startswith("- ")]


def parse_source_card(path: Path) -> SourceCard:
    card = SourceCard()
    if not path.is_file():
        return card
    section = ""
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("# ") and not card.title:
            card.title = line[2:].strip()
        elif line.startswith("## "):
            section = line[3:].strip()
            card.sections[section] = []
        elif section:
            card.sections[section].append(line)
        else:
            match = _FIELD.match(line.strip())
            if match:
                card.fields[match.group("key").strip()] = match.group("value").strip()
    return card


def default_card_path(name: str) -> Path:
    return project_root() / "data_cards" / f"{name}.md"


def write_card(loaded: LoadedConfig, prepared_dir: str | Path, output: str | Path | None = None) -> Path:
    path = Path(output) if output is not None else default_card_path(loaded.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_card(loaded, prepared_dir), encoding="utf-8")
    return path


# --------------------------------------------------------------------------- statistics


@dataclass
class _Stats:
    rows: dict[str, int]
    label_split: dict[str, Counter[str]]
    by_language_source: dict[tuple[str, str], Counter[str]]
    by_dataset: dict[str, Counter[str]]
    lengths: dict[str, list[int]]
    words: dict[str, list[int]]


def _collect(prepared_dir: Path) -> _Stats:
    stats = _Stats({}, {}, {}, {}, {}, {})
    for split in SPLITS:
        table = read_split_table(prepared_dir, split)
        columns = {
            name: table.column(name).to_pylist()
            for name in ("text", "labels", "language", "source", "dataset")
        }
        stats.rows[split] = table.num_rows
        per_label: Counter[str] = Counter()
        for text, labels, language, source, dataset in zip(
            columns["text"],
            columns["labels"],
            columns["language"],
            columns["source"],
            columns["dataset"],
            strict=True,
        ):
            names = labels or ["benign"]
            per_label.update(names)
            stats.by_language_source.setdefault((language, source), Counter()).update([*names, "rows"])
            stats.by_dataset.setdefault(dataset, Counter()).update([*names, "rows", f"split:{split}"])
            stats.lengths.setdefault(split, []).append(len(text))
            stats.words.setdefault(split, []).append(len(text.split()))
        stats.label_split[split] = per_label
    return stats


def _percentiles(values: list[int]) -> list[str]:
    if not values:
        return ["-"] * 6
    ordered = sorted(values)
    picks = []
    for share in (0.05, 0.25, 0.5, 0.75, 0.95):
        picks.append(str(ordered[min(len(ordered) - 1, int(share * (len(ordered) - 1) + 0.5))]))
    return [*picks, str(ordered[-1])]


# --------------------------------------------------------------------------- rendering helpers


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += [
        "| " + " | ".join(cell.replace("|", "\\|").replace("\n", " ") for cell in row) + " |" for row in rows
    ]
    return "\n".join(lines)


def _bullets(items: list[str], empty: str = "None recorded.") -> str:
    return "\n".join(f"- {item}" for item in items) if items else empty


def _number(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) else str(value)


_LABEL_COLUMNS = [*LABELS, "benign"]


def render_card(loaded: LoadedConfig, prepared_dir: str | Path) -> str:
    """The Markdown card for `loaded`, from the prepared data in `prepared_dir`."""
    prepared_dir = Path(prepared_dir)
    report = read_report(prepared_dir)
    if report.get("name") != loaded.name:
        raise DataError(
            f"{prepared_dir}: prepared from config {report.get('name')!r}, not {loaded.name!r}; "
            "pass the matching --prepared folder"
        )
    stats = _collect(prepared_dir)
    members = load_members(loaded)
    sources = {
        member.name: parse_source_card(shared_datasets_dir() / member.config.source_card)
        if member.config.source_card
        else SourceCard()
        for member, _ in members
    }
    config = loaded.config
    card = config.card
    total = sum(stats.rows.values())
    parts: list[str] = []
    add = parts.append

    add(f"# Dataset card: {config.name}\n")
    add(
        "> Generated by `textguard data card` from the prepared data, the data config "
        f"(`configs/data/{loaded.path.name}`, hash `{report.get('config_hash', '?')}`) and the dataset's "
        "SOURCE.md. Edit the config's `card` section and regenerate rather than editing this file. "
        "This card holds statistics and prose only, never rows.\n"
    )

    # ------------------------------------------------------------------ description
    add("## Dataset Description\n")
    add(f"### Dataset Summary\n\n{card.summary or config.description}\n")
    if card.summary:
        add(f"{config.description}\n")
    add(
        f"Prepared rows: **{total:,}** (train {stats.rows['train']:,} / validation "
        f"{stats.rows['validation']:,} / test {stats.rows['test']:,}); taxonomy version "
        f"{report.get('taxonomy_version', TAXONOMY_VERSION)}, normaliser version "
        f"{report.get('normalizer_version', '?')}.\n"
    )
    languages = sorted({language for language, _ in stats.by_language_source})
    add(f"### Languages\n\n{', '.join(f'`{tag}`' for tag in languages) or 'None'} (BCP-47).\n")
    add("### Supported Tasks\n\nMulti-label text classification into the textguard taxonomy.\n")
    add(f"### Label Definitions (taxonomy {TAXONOMY_VERSION})\n")
    add(
        _table(
            ["label", "definition", "includes"],
            [[label.value, text.summary, "; ".join(text.includes)] for label, text in DEFINITIONS.items()],
        )
        + "\n\nNo label = benign. Labels are independent (multi-label): a row may carry several.\n"
    )

    # ------------------------------------------------------------------ uses
    add("## Uses\n")
    add(f"### Intended Use\n\n{card.intended_use or 'Training and evaluating textguard classifiers.'}\n")
    out_of_scope = card.out_of_scope or "Anything other than training and evaluating content classifiers."
    add(
        f"### Out-of-Scope Use\n\n{out_of_scope} Never use this data to profile, identify or judge "
        "the people who wrote the texts.\n"
    )
    if config.eval_only:
        add("**Evaluation only:** every row is in the test split; preparation refuses to put it in train.\n")

    # ------------------------------------------------------------------ structure
    add("## Dataset Structure\n")
    add(
        "### Data Instances\n\nOne row per text. Rows are not reproduced here; load them with "
        f'`textguard.data.prepared.load_prepared("data/prepared/{config.name}")`.\n'
    )
    add("### Data Fields\n")
    add(
        _table(
            ["field", "type", "meaning"],
            [
                [
                    "id",
                    "string",
                    "stable id: `<dataset>/<source id>` or `<dataset>/<source>/<row>`; `#caption` copies",
                ],
                ["text", "string", "the text after dataset clean-ups and `textguard.text.normalize`"],
                ["labels", "list[string]", "taxonomy labels in canonical order; empty = benign"],
                ["language", "string", "BCP-47 tag"],
                ["source", "string", "`chat` or `caption` (caption-style text)"],
                ["dataset", "string", "the dataset the row comes from"],
                ["split", "string", "`train`, `validation` or `test`"],
            ],
        )
        + "\n"
    )
    add("### Data Splits\n")
    add(_table(["split", "rows", *_LABEL_COLUMNS], _split_rows(stats)) + "\n")
    add(_split_policy(config, members) + "\n")
    add("### Labels by Language and Source (all splits)\n")
    add(
        _table(
            ["language", "source", "rows", *_LABEL_COLUMNS],
            [
                [
                    language,
                    source,
                    _number(counts["rows"]),
                    *(_number(counts[label]) for label in _LABEL_COLUMNS),
                ]
                for (language, source), counts in sorted(stats.by_language_source.items())
            ],
        )
        + "\n"
    )
    if len(stats.by_dataset) > 1:
        add("### Labels by Dataset (all splits)\n")
        add(
            _table(
                ["dataset", "train", "validation", "test", *_LABEL_COLUMNS],
                [
                    [
                        name,
                        *(_number(counts[f"split:{split}"]) for split in SPLITS),
                        *(_number(counts[label]) for label in _LABEL_COLUMNS),
                    ]
                    for name, counts in sorted(stats.by_dataset.items())
                ],
            )
            + "\n"
        )
    add("### Text Length\n\nCharacters (and words) per text after normalisation.\n")
    add(
        _table(
            ["split", "p5", "p25", "median", "p75", "p95", "max"],
            [[f"{split} (chars)", *_percentiles(stats.lengths.get(split, []))] for split in SPLITS]
            + [[f"{split} (words)", *_percentiles(stats.words.get(split, []))] for split in SPLITS],
        )
        + "\n"
    )

    # ------------------------------------------------------------------ creation
    add("## Dataset Creation\n")
    add(f"### Curation Rationale\n\n{card.curation_rationale or config.description}\n")
    add("### Source Data\n")
    add(_source_table(members, sources, report) + "\n")
    add("#### Cleaning and De-duplication\n")
    add(_cleaning(report, members) + "\n")
    add("### Annotations\n")
    add(f"#### Annotation Process\n\n{card.annotator_notes or 'See the source datasets.'}\n")
    for member, _ in members:
        scheme = [line for line in sources[member.name].sections.get("Label scheme", []) if line.strip()]
        if scheme:
            prefix = f"{member.name}: " if len(members) > 1 else ""
            add(f"Source label scheme ({prefix}from SOURCE.md): " + " ".join(scheme) + "\n")
    add("#### Label Mapping\n")
    add(_mapping(members, report) + "\n")
    add("#### Label Fixes\n")
    add(_fixes(members, report) + "\n")
    add("### Personal and Sensitive Information\n")
    add(_personal(members) + "\n")

    # ------------------------------------------------------------------ considerations
    add("## Considerations for Using the Data\n")
    add(f"### Social Impact of Dataset\n\n{card.social_impact or 'See the member datasets.'}\n")
    add("### Discussion of Biases\n")
    add(_bullets(card.biases) + "\n")
    add("### Other Known Limitations\n")
    caveats = list(card.caveats)
    if len(members) == 1:
        caveats += [f"(SOURCE.md) {item}" for item in sources[config.name].bullets("Caveats")]
    add(_bullets(caveats) + "\n")
    add("### Known Gaps\n")
    gaps = list(card.known_gaps)
    for label in LABELS:
        if not any(stats.label_split[split][label] for split in SPLITS):
            gaps.append(f"No row carries `{label}`.")
    add(_bullets(gaps) + "\n")

    # ------------------------------------------------------------------ additional
    add("## Additional Information\n")
    add("### Licensing Information\n")
    if len(members) == 1:
        licence = sources[config.name].get("Licence") or config.license
        add(f"{licence}\n")
    else:
        add(f"{config.license}\n")
        add(
            _table(
                ["dataset", "licence"],
                [
                    [member.name, sources[member.name].get("Licence") or member.config.license]
                    for member, _ in members
                ],
            )
            + "\n"
        )
    add("### Citation Information\n")
    citations = []
    for member, _ in members:
        citation = sources[member.name].get("Citation") or member.config.citation
        citations.append(f"{member.name}: {citation}" if len(members) > 1 else citation)
    add(_bullets(citations) + "\n")
    return "\n".join(parts).rstrip() + "\n"


def _split_rows(stats: _Stats) -> list[list[str]]:
    return [
        [
            split,
            _number(stats.rows[split]),
            *(_number(stats.label_split[split][label]) for label in _LABEL_COLUMNS),
        ]
        for split in SPLITS
    ]


def _split_policy(config: Any, members: list[tuple[LoadedConfig, MemberSpec]]) -> str:
    lines = []
    for member, spec in members:
        settings = member.config
        hints = sorted({hint for source in settings.sources for hint in source.split_hints()})
        if settings.eval_only:
            how = "evaluation only: every row is test"
        elif hints == ["auto"]:
            how = (
                f"split here: {settings.split.test:.0%} test, {settings.split.validation:.0%} validation, "
                f"stratified by label set and language, seed {settings.split.seed}"
            )
        else:
            how = (
                f"the dataset's own splits are kept ({', '.join(hints)}); validation is carved from training "
                f"files ({settings.split.validation:.0%}, seed {settings.split.seed}) where it has none"
            )
        weight = ""
        if spec.train_fraction < 1.0 or spec.max_train_rows is not None:
            weight = f"; training rows thinned to {spec.train_fraction:.0%}"
            if spec.max_train_rows is not None:
                weight += f" (at most {spec.max_train_rows:,})"
        lines.append(f"- {member.name}: {how}{weight}.")
    lines.append(
        "- A test row's exact or near duplicate never stays in train or validation; the copy in the lower "
        "split is removed (counted as a leak below)."
    )
    if config.caption.enabled:
        lines.append(
            f"- Caption copies ({config.caption.fraction:.0%} of chat rows) stay in their original's split."
        )
    return "\n".join(lines)


def _source_table(
    members: list[tuple[LoadedConfig, MemberSpec]], sources: dict[str, SourceCard], report: dict[str, Any]
) -> str:
    by_name = {entry["name"]: entry for entry in report.get("members", [])}
    rows = []
    for member, _ in members:
        info = sources[member.name]
        entry = by_name.get(member.name, {})
        for source in entry.get("sources", []):
            rows.append(
                [
                    member.name,
                    source["name"],
                    Path(source["path"]).name,
                    _number(source["rows_read"]),
                    _number(source["dropped_by_rule"]),
                    _number(source["skipped"]),
                    _number(source["rows_kept"]),
                ]
            )
        origin = info.get("Source repository")
        if origin:
            commit = info.get("Commit")
            rows.append([member.name, "origin", origin + (f" @ {commit}" if commit else ""), "", "", "", ""])
    return _table(["dataset", "source", "file", "read", "dropped by rule", "skipped (bad)", "kept"], rows)


def _cleaning(report: dict[str, Any], members: list[tuple[LoadedConfig, MemberSpec]]) -> str:
    exact = report.get("exact_duplicates", {})
    near = report.get("near_duplicates", {})
    leaks = report.get("leaks_removed", {})
    conflicts = report.get("label_conflicts", {})
    language = report.get("language_id", {})
    steps = sorted(
        {step for member, _ in members for source in member.config.sources for step in source.clean}
    )
    lines = [
        "Every text goes through the dataset's clean-ups"
        + (f" ({', '.join(steps)})" if steps else "")
        + f" and then `textguard.text.normalize` (version {report.get('normalizer_version', '?')}); "
        "empty texts are errors (or skipped and counted in lenient runs).",
        "",
        _table(
            ["step", "rows"],
            [
                ["read", _number(report.get("rows_read", 0))],
                ["dropped by mapping rules", _number(report.get("dropped_by_rule", 0))],
                ["skipped as bad input", _number(sum(report.get("skipped_rows", {}).values()))],
                ["exact duplicates removed (within a dataset)", _number(exact.get("within_dataset", 0))],
                ["exact duplicates removed (across datasets)", _number(exact.get("across_datasets", 0))],
                [
                    "near duplicates removed (within a dataset)",
                    _number(near.get("removed_within_dataset", 0)),
                ],
                [
                    "near duplicates removed (across datasets)",
                    _number(near.get("removed_across_datasets", 0)),
                ],
                ["leaks removed (exact copy in a higher split)", _number(leaks.get("exact", 0))],
                ["leaks removed (near copy in a higher split)", _number(leaks.get("near", 0))],
                ["leaks removed (copy of a decontamination set)", _number(leaks.get("decontamination", 0))],
                ["duplicate groups with conflicting labels", _number(conflicts.get("groups", 0))],
                ["rows with language identified", _number(language.get("rows", 0))],
                ["caption copies added", _number(report.get("caption", {}).get("copies", 0))],
            ],
        ),
        "",
        f"Exact duplicates share the hash of their normalised, casefolded text. Near duplicates: MinHash "
        f"({near.get('num_perm', '?')} permutations) over {near.get('shingles', '?')} with LSH, confirmed at "
        f"estimated Jaccard >= {near.get('threshold', '?')}, texts of at least {near.get('min_chars', '?')} "
        f"characters. Label conflicts: {conflicts.get('rule', '')}.",
    ]
    if report.get("decontamination", {}).get("configs"):
        lines.append(
            f"Decontaminated against: {', '.join(report['decontamination']['configs'])} (their rows are not "
            "included; copies of them were removed from train and validation)."
        )
    if report.get("sampling"):
        lines.append("")
        lines.append(
            _table(
                ["dataset", "train rows before weighting", "after"],
                [[name, _number(s["before"]), _number(s["after"])] for name, s in report["sampling"].items()],
            )
        )
    skipped = report.get("decontamination", {}).get("skipped") or {}
    for name, reason in skipped.items():
        lines.append(f"Not decontaminated against {name}: {reason}.")
    if report.get("eval_caps"):
        lines.append("")
        lines.append(
            _table(
                ["dataset", "split", "rows before the evaluation cap", "after"],
                [
                    [name, split, _number(s["before"]), _number(s["after"])]
                    for name, caps in report["eval_caps"].items()
                    for split, s in caps.items()
                ],
            )
        )
    lines.extend(_category_table(report.get("categories") or {}))
    return "\n".join(lines)


def _category_table(categories: dict[str, dict[str, dict[str, int]]]) -> list[str]:
    """Training rows by language x category, for rows whose data names a category (seed, stance)."""
    train = categories.get("train") or {}
    if not train:
        return []
    kinds = sorted({kind for by_kind in train.values() for kind in by_kind})
    rows = [[language, *(_number(by_kind.get(kind, 0)) for kind in kinds)] for language, by_kind in train.items()]
    return [
        "",
        "Training rows by language and category (rows whose data names one: the seed and stance sets):",
        "",
        _table(["language", *kinds], rows),
    ]


def _mapping(members: list[tuple[LoadedConfig, MemberSpec]], report: dict[str, Any]) -> str:
    blocks = []
    by_name = {entry["name"]: entry for entry in report.get("members", [])}
    for member, spec in members:
        config = member.config
        specs = []
        if config.labels is not None:
            specs.append(("all sources", config.labels))
        specs += [
            (f"source {source.name}", source.labels) for source in config.sources if source.labels is not None
        ]
        rows = []
        for scope, label_spec in specs:
            for entry in describe_spec(label_spec):
                if entry.labels is None:
                    result = "drop row"
                elif entry.kind == "check":
                    result = "(check)"
                else:
                    result = ", ".join(entry.labels) or "benign"
                rows.append([scope, entry.condition, result, entry.why])
        heading = f"**{member.name}**" + (f" (weight: {spec.why})" if spec.why else "")
        hits = by_name.get(member.name, {}).get("label_rules", {})
        hit_table = _table(["rule", "rows"], [[rule, _number(count)] for rule, count in hits.items()])
        blocks.append(
            f"{heading}\n\nRows matching no rule are benign; rules add labels (union).\n\n"
            f"{_table(['applies to', 'condition', 'result', 'why'], rows)}\n\nRule hits:\n\n{hit_table}"
        )
    return "\n\n".join(blocks)


#: Lexicon conditions run to hundreds of characters; the fixes table shows their start.
_FIX_CONDITION_CHARS = 120


def _fixes(members: list[tuple[LoadedConfig, MemberSpec]], report: dict[str, Any]) -> str:
    """Rules that correct a source's labels: what they change, how many rows, measured precision."""
    by_name = {entry["name"]: entry for entry in report.get("members", [])}
    rows: list[list[str]] = []
    rejected: list[str] = []
    for member, _ in members:
        config = member.config
        hits: dict[str, int] = by_name.get(member.name, {}).get("label_rules", {})
        specs: list[tuple[str, LabelSpec]] = []
        if config.labels is not None:
            specs.append(("all sources", config.labels))
        specs += [(f"source {s.name}", s.labels) for s in config.sources if s.labels is not None]
        for scope, spec in specs:
            described = rule_descriptions(spec)
            fixed: list[tuple[str, DropRule | WhenRule]] = [
                (f"drop[{index}]", rule) for index, rule in enumerate(spec.drop) if rule.fix is not None
            ]
            fixed += [
                (f"rules[{index}]", rule)
                for index, rule in enumerate(spec.rules)
                if isinstance(rule, WhenRule) and rule.fix is not None
            ]
            for key, rule in fixed:
                fix = rule.fix
                assert fix is not None
                outcome = "drop row" if isinstance(rule, DropRule) else (", ".join(rule.labels) or "benign")
                changed = sum(
                    count for hit, count in hits.items() if hit.split(": ", 1)[-1] == described[key]
                )
                condition = describe_condition(rule.when)
                if len(condition) > _FIX_CONDITION_CHARS:
                    condition = (
                        condition[:_FIX_CONDITION_CHARS].rstrip() + " … (in full in the mapping table)"
                    )
                rows.append(
                    [
                        member.name,
                        f"{scope}: {condition}",
                        outcome,
                        _number(changed),
                        f"{fix.correct}/{fix.sample} = {fix.share_correct:.0%}",
                        fix.lesson,
                        fix.measured,
                    ]
                )
        rejected += [
            f"{member.name}: {item}" if len(members) > 1 else item for item in config.card.rejected_fixes
        ]
    text = (
        "Rules that correct the source's labels where they teach the wrong lesson by the taxonomy. "
        "Precision: of a random sample of the rows a rule changes, the share whose new outcome "
        "(label set, or removal) is right by the taxonomy. Rows changed: in this prepared data, "
        "before de-duplication.\n\n"
    )
    if rows:
        text += _table(
            ["dataset", "rule", "new outcome", "rows changed", "precision", "wrong lesson fixed", "measured"],
            rows,
        )
    else:
        text += "None."
    if rejected:
        text += "\n\nTried and not kept:\n\n" + _bullets(rejected)
    return text


def _personal(members: list[tuple[LoadedConfig, MemberSpec]]) -> str:
    masked = sorted(
        {
            step
            for member, _ in members
            for source in member.config.sources
            for step in source.clean
            if step.startswith("mask")
        }
    )
    text = (
        "Texts are social-media posts and chat messages; they may name public figures and private people, "
        "and many contain slurs, threats and other harmful language by design."
    )
    if masked:
        text += f" User handles and links are masked ({', '.join(masked)}) where the config says so."
    return text
