"""Plain-text tables that fit a width by leaving out their least important columns, never by folding.

Rich-style tables shrink every column to fit a narrow terminal, which turns ids and numbers into `…`
(and ids that are cut cannot be pasted back into a command). Here every shown cell is printed whole:
columns carry a priority, and when the table is wider than the target width the least important
columns are left out, and named, until it fits. Priority 0 columns are always shown.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

GAP = "  "


@dataclass(frozen=True)
class Column:
    header: str
    #: 0 = always shown; higher numbers are left out first when the table is too wide.
    priority: int = 0
    align: Literal["left", "right"] = "left"


@dataclass(frozen=True)
class FittedTable:
    text: str
    shown: list[str]
    left_out: list[str]


def _widths(columns: Sequence[Column], rows: Sequence[Sequence[str]], keep: Sequence[int]) -> list[int]:
    return [max([len(columns[index].header), *(len(row[index]) for row in rows)]) for index in keep]


def fit_table(columns: Sequence[Column], rows: Sequence[Sequence[str]], width: int | None) -> FittedTable:
    """Render `rows` under `columns`, leaving out columns (highest priority number first, then the
    rightmost) until the table is at most `width` characters wide; `width` None or <= 0: no limit."""
    keep = list(range(len(columns)))
    droppable = sorted(
        (index for index, column in enumerate(columns) if column.priority > 0),
        key=lambda index: (columns[index].priority, index),
        reverse=True,
    )
    left_out: list[str] = []
    while width and width > 0 and droppable:
        widths = _widths(columns, rows, keep)
        if sum(widths) + len(GAP) * (len(widths) - 1) <= width:
            break
        index = droppable.pop(0)
        keep.remove(index)
        left_out.append(columns[index].header)
    widths = _widths(columns, rows, keep)

    def line(cells: Sequence[str]) -> str:
        parts = []
        for position, index in enumerate(keep):
            cell = cells[index]
            aligned = (
                cell.rjust(widths[position])
                if columns[index].align == "right"
                else cell.ljust(widths[position])
            )
            parts.append(aligned)
        return GAP.join(parts).rstrip()

    lines = [line([column.header for column in columns])]
    lines.append(GAP.join("-" * size for size in widths))
    lines += [line(row) for row in rows]
    return FittedTable("\n".join(lines), [columns[index].header for index in keep], left_out)
