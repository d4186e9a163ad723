"""Bad input: where it is, and whether it stops the run (strict) or is skipped and counted (lenient).

Row-level problems (an empty text, an unknown label value, a malformed line) go through `Problems`;
problems that make a whole file unusable (missing column, unreadable or truncated file) always
raise `DataError`, because skipping every row of a file is never what a lenient run means.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from textguard.errors import DataError

#: How many skipped rows the report lists by location (the counts cover all of them).
MAX_EXAMPLES = 25


@dataclass(frozen=True)
class Location:
    """A row in a file: `unit` is "line" for text formats (physical line) and "row" otherwise."""

    path: str
    number: int
    unit: str = "line"

    def __str__(self) -> str:
        return f"{self.path} {self.unit} {self.number}"


def row_message(where: Location, column: str | None, message: str) -> str:
    if column is None:
        return f"{where}: {message}"
    return f"{where}: field {column!r}: {message}"


class RowProblem(Exception):
    """Raised inside row processing; `Problems.report` decides whether it stops the run."""

    def __init__(self, reason: str, column: str | None, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.column = column
        self.message = message


@dataclass
class Problems:
    strict: bool = True
    counts: Counter[str] = field(default_factory=Counter)
    examples: list[dict[str, str]] = field(default_factory=list)

    def report(self, reason: str, where: Location, column: str | None, message: str) -> None:
        """Strict: raise DataError. Lenient: count the row under `reason`; the caller skips it."""
        text = row_message(where, column, message)
        if self.strict:
            raise DataError(f"{text} (use --lenient to skip bad rows and count them)")
        self.counts[reason] += 1
        if len(self.examples) < MAX_EXAMPLES:
            self.examples.append({"reason": reason, "where": str(where), "message": text})

    def report_problem(self, problem: RowProblem, where: Location) -> None:
        self.report(problem.reason, where, problem.column, problem.message)
