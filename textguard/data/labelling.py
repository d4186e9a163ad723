"""Source labels -> taxonomy labels, as the `labels` section of a data config declares.

Order per row: `allowed_values` checks (unexpected value -> error), `drop` rules, then every rule
adds labels (a union; no match = benign). A `map` rule meeting a value it does not list is an
error too, so a new class in a re-released dataset can never become "benign" by accident.
Cells compare numerically when both sides are numbers ("2.0" == 2), else as trimmed strings.
"""

from __future__ import annotations

import functools
import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from textguard.data.dataconfig import (
    AllOf,
    AnyOf,
    Compare,
    Condition,
    FromColumnRule,
    LabelSpec,
    MapRule,
    NotOf,
    WhenRule,
)
from textguard.data.problems import RowProblem
from textguard.labels import LABELS

_LABEL_SET = frozenset(LABELS)
_INTEGER = re.compile(r"^\s*[+-]?\d+\s*$")


def is_missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float):
        return math.isnan(value)
    if isinstance(value, str):
        return not value.strip()
    return False


def as_number(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return None
    return None


def canonical(value: Any) -> tuple[str, Any]:
    """A hashable key under which "0", 0 and 0.0 meet, and "x " meets "x"."""
    if isinstance(value, bool):
        return ("s", str(value).lower())
    # Integers stay exact (tweet ids exceed float precision); 2 == 2.0 still meet, as Python's
    # int and float compare and hash alike.
    if isinstance(value, int):
        return ("n", value)
    if isinstance(value, str) and _INTEGER.match(value):
        return ("n", int(value))
    number = as_number(value)
    if number is not None and not math.isnan(number):
        return ("n", number)
    text = str(value).strip()
    return ("s", text.lower()) if text.lower() in ("true", "false") else ("s", text)


def shown(value: Any) -> str:
    return repr(value) if isinstance(value, str) else str(value)


# --------------------------------------------------------------------------- conditions


def evaluate(condition: Condition, row: Mapping[str, Any]) -> bool:
    if isinstance(condition, AllOf):
        return all(evaluate(part, row) for part in condition.all)
    if isinstance(condition, AnyOf):
        return any(evaluate(part, row) for part in condition.any)
    if isinstance(condition, NotOf):
        return not evaluate(condition.not_, row)
    return _compare(condition, row.get(condition.column))


def _compare(condition: Compare, cell: Any) -> bool:
    op = condition.op
    if op == "missing":
        return is_missing(cell)
    if op == "present":
        return not is_missing(cell)
    if is_missing(cell):
        return False
    value = condition.value
    if op in ("==", "!="):
        equal = canonical(cell) == canonical(value)
        return equal if op == "==" else not equal
    if op in ("in", "not_in"):
        assert isinstance(value, list)
        inside = canonical(cell) in {canonical(item) for item in value}
        return inside if op == "in" else not inside
    if op == "contains":
        return str(value) in str(cell)
    if op == "has":
        tokens = {token.strip() for token in str(cell).split(condition.sep)}
        return str(value) in tokens
    if op == "matches":
        return _pattern(str(value)).search(str(cell)) is not None
    number = as_number(cell)
    if number is None or math.isnan(number):
        raise RowProblem("not_a_number", condition.column, f"expected a number, got {shown(cell)}")
    limit = as_number(value)
    if limit is None:
        raise RowProblem(
            "not_a_number", condition.column, f"the config compares with {value!r}, not a number"
        )
    if op == ">":
        return number > limit
    if op == ">=":
        return number >= limit
    if op == "<":
        return number < limit
    return number <= limit


@functools.lru_cache(maxsize=256)
def _pattern(expression: str) -> re.Pattern[str]:
    return re.compile(expression, re.IGNORECASE)


def describe_condition(condition: Condition) -> str:
    """Readable form for reports and data cards: `violence >= 0.5`, `all of (a; b)`."""
    if isinstance(condition, AllOf):
        return " and ".join(_grouped(part) for part in condition.all)
    if isinstance(condition, AnyOf):
        return " or ".join(_grouped(part) for part in condition.any)
    if isinstance(condition, NotOf):
        return f"not {_grouped(condition.not_)}"
    column = condition.column
    if condition.op in ("missing", "present"):
        return f"{column} is {condition.op}"
    if condition.op == "has":
        return f"{column} has token {condition.value!r} (split on {condition.sep!r})"
    if condition.op == "matches":
        return f"{column} matches /{condition.value}/i"
    if isinstance(condition.value, list):
        return f"{column} {condition.op.replace('_', ' ')} {', '.join(map(str, condition.value))}"
    return f"{column} {condition.op} {condition.value}"


def _grouped(condition: Condition) -> str:
    text = describe_condition(condition)
    return f"({text})" if isinstance(condition, AllOf | AnyOf) else text


# --------------------------------------------------------------------------- the mapper


@dataclass(frozen=True)
class MappingRow:
    """One line of a mapping table: the condition, the resulting labels, and why."""

    kind: str  # "label" | "drop" | "check"
    condition: str
    labels: tuple[str, ...] | None  # None: the row is dropped
    why: str


def describe_spec(spec: LabelSpec) -> list[MappingRow]:
    rows: list[MappingRow] = []
    for column, values in spec.allowed_values.items():
        rows.append(
            MappingRow(
                "check", f"{column} in {', '.join(map(str, values))}", (), "any other value is an error"
            )
        )
    for drop in spec.drop:
        rows.append(MappingRow("drop", describe_condition(drop.when), None, drop.why))
    for rule in spec.rules:
        if isinstance(rule, WhenRule):
            rows.append(MappingRow("label", describe_condition(rule.when), tuple(rule.labels), rule.why))
        elif isinstance(rule, MapRule):
            for raw, target in rule.map.items():
                condition = (
                    f"{rule.column} == {raw}" if rule.sep is None else f"{rule.column} has token {raw}"
                )
                labels = None if target == "drop" else tuple(target)
                rows.append(MappingRow("drop" if labels is None else "label", condition, labels, rule.why))
        else:
            rows.append(MappingRow("label", f"labels listed in {rule.from_column}", (), rule.why))
    return rows


@dataclass
class LabelMapper:
    """Applies one LabelSpec; counts how often each rule fired (for the report and card)."""

    spec: LabelSpec
    hits: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self._allowed = {
            column: {canonical(value) for value in values}
            for column, values in self.spec.allowed_values.items()
        }
        self._maps = [
            {canonical(key): target for key, target in rule.map.items()} if isinstance(rule, MapRule) else {}
            for rule in self.spec.rules
        ]

    def labels(self, row: Mapping[str, Any]) -> list[str] | None:
        """Canonical-order labels for `row`, or None when a drop rule or `drop` map value applies."""
        for column, allowed in self._allowed.items():
            cell = row.get(column)
            if not is_missing(cell) and canonical(cell) not in allowed:
                raise RowProblem(
                    "unknown_label_value",
                    column,
                    f"unknown label value {shown(cell)} (expected one of "
                    f"{', '.join(map(str, self.spec.allowed_values[column]))})",
                )
        for index, drop in enumerate(self.spec.drop):
            if evaluate(drop.when, row):
                self.hits[f"drop[{index}]"] += 1
                return None
        found: set[str] = set()
        for index, rule in enumerate(self.spec.rules):
            if isinstance(rule, WhenRule):
                if evaluate(rule.when, row):
                    self.hits[f"rules[{index}]"] += 1
                    found.update(rule.labels)
                continue
            added = (
                self._lookup(index, rule, row.get(rule.column))
                if isinstance(rule, MapRule)
                else _from_column(rule, row.get(rule.from_column))
            )
            if added is None:
                self.hits[f"rules[{index}]:drop"] += 1
                return None
            if added:
                self.hits[f"rules[{index}]"] += 1
            found.update(added)
        return [label for label in LABELS if label in found]

    def _lookup(self, index: int, rule: MapRule, cell: Any) -> Iterable[str] | None:
        table = self._maps[index]
        if is_missing(cell):
            raise RowProblem(
                "unknown_label_value", rule.column, "empty label value (the map has no entry for it)"
            )
        values = (
            [cell] if rule.sep is None else [token for token in str(cell).split(rule.sep) if token.strip()]
        )
        found: set[str] = set()
        for value in values:
            target = table.get(canonical(value))
            if target is None:
                expected = ", ".join(map(str, rule.map))
                raise RowProblem(
                    "unknown_label_value",
                    rule.column,
                    f"unknown label value {shown(value)} (expected one of {expected})",
                )
            if target == "drop":
                return None
            found.update(target)
        return found


def _from_column(rule: FromColumnRule, cell: Any) -> list[str]:
    if is_missing(cell):
        return []
    if isinstance(cell, list | tuple):
        names = [str(name).strip() for name in cell]
    elif rule.sep is not None:
        names = [name.strip() for name in str(cell).split(rule.sep)]
    else:
        names = [str(cell).strip()]
    names = [name for name in names if name]
    unknown = [name for name in names if name not in _LABEL_SET]
    if unknown:
        raise RowProblem(
            "unknown_label_value",
            rule.from_column,
            f"unknown label(s) {unknown}; the taxonomy has {list(LABELS)}",
        )
    return names


def rule_descriptions(spec: LabelSpec) -> dict[str, str]:
    """Hit-counter key -> readable rule, to label the counts in the report."""
    described: dict[str, str] = {}
    for index, drop in enumerate(spec.drop):
        described[f"drop[{index}]"] = f"drop when {describe_condition(drop.when)}"
    for index, rule in enumerate(spec.rules):
        if isinstance(rule, WhenRule):
            names = ", ".join(rule.labels) or "benign"
            described[f"rules[{index}]"] = f"{names} when {describe_condition(rule.when)}"
        elif isinstance(rule, MapRule):
            described[f"rules[{index}]"] = f"labels from map on {rule.column}"
            described[f"rules[{index}]:drop"] = f"drop by map on {rule.column}"
        else:
            described[f"rules[{index}]"] = f"labels listed in {rule.from_column}"
    return described
