"""The in-memory row every preparation step works on, and the prepared-dataset column contract."""

from __future__ import annotations

from dataclasses import dataclass

#: Column order of every prepared Parquet file (the contract in docs/HELPERS_BRIEF.md).
COLUMNS: tuple[str, ...] = ("id", "text", "labels", "language", "source", "dataset", "split")

#: Split precedence when copies of one text disagree: the copy in the higher split survives,
#: because a text must never be trained on if it is also evaluated on.
SPLIT_RANK = {"train": 0, "validation": 1, "test": 2}

#: Which copy of a duplicate to keep before splits are assigned: a dataset's own test row first,
#: then its own validation row, then its own training row, then rows still to be split.
HINT_RANK = {"test": 4, "validation": 3, "train": 2, "trainval": 2, "auto": 0}


@dataclass(slots=True)
class Example:
    id: str
    text: str
    labels: tuple[str, ...]
    language: str | None
    source: str
    dataset: str
    #: Where the dataset puts the row ("auto" = ours to choose); see dataconfig.SplitHint.
    hint: str
    #: Location in the input, for messages.
    where: str
    split: str | None = None
    #: Position in reading order over all datasets: the tie-breaker that keeps runs reproducible.
    order: int = 0
    #: Hash of the normalised, casefolded text (exact-duplicate key).
    key: str = ""
    alive: bool = True
    #: Decontamination rows take part in de-duplication as test rows but are never written.
    anchor: bool = False
    #: The row's kind where the data names it (a label or a hard-negative type); report only.
    category: str | None = None
    #: Rows sharing a group (a contrastive family) are split and thinned together.
    group: str | None = None
