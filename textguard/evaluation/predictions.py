"""The per-row predictions table every evaluation run logs (predictions.parquet) and `compare` reads back.

One row per scored text and partition:
- partition: "clean" (the evaluated split), "perturb:<kind>", "suite:<name>";
- row_id: a hash of the row's id (see `redaction.row_key`), unique within a partition, so two runs on the
  same data pair up row by row;
- language, source, dataset (slice keys; suites: dataset = suite name, source = "suite"),
  functionality and hateful (suites only);
- gold_<label> (1.0 / 0.0; NaN where a suite gives no per-label gold), prob_<label> (calibrated
  probability), pred_<label> (the decision at the model's threshold);
- id and text only with --show-text.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from textguard.errors import TextguardError

CLEAN = "clean"
PREDICTIONS_FILE = "predictions.parquet"


def perturb_partition(kind: str) -> str:
    return f"perturb:{kind}"


def suite_partition(name: str) -> str:
    return f"suite:{name}"


def gold_column(label: str) -> str:
    return f"gold_{label}"


def prob_column(label: str) -> str:
    return f"prob_{label}"


def pred_column(label: str) -> str:
    return f"pred_{label}"


def unique_row_ids(row_ids: Sequence[str]) -> list[str]:
    """Make repeated ids unique (`x`, `x#1`, ...) so that pairing by row id is never ambiguous."""
    seen: dict[str, int] = {}
    out = []
    for row_id in row_ids:
        count = seen.get(row_id, 0)
        seen[row_id] = count + 1
        out.append(row_id if count == 0 else f"{row_id}#{count}")
    return out


def build_frame(
    partition: str,
    row_ids: Sequence[str],
    labels: Sequence[str],
    gold: np.ndarray,
    probs: np.ndarray,
    decisions: np.ndarray,
    attributes: dict[str, Sequence[object]],
) -> pd.DataFrame:
    n = len(row_ids)
    data: dict[str, object] = {"partition": [partition] * n, "row_id": unique_row_ids(row_ids)}
    for name in ("language", "source", "dataset", "functionality"):
        data[name] = list(attributes.get(name, [""] * n))
    data["hateful"] = np.asarray(attributes.get("hateful", [np.nan] * n), dtype=np.float32)
    for column, label in enumerate(labels):
        data[gold_column(label)] = np.asarray(gold, dtype=np.float32)[:, column]
        data[prob_column(label)] = np.asarray(probs, dtype=np.float64)[:, column]
        data[pred_column(label)] = np.asarray(decisions, dtype=bool)[:, column]
    for name in ("id", "text"):
        if name in attributes:
            data[name] = list(attributes[name])
    return pd.DataFrame(data)


@dataclass(frozen=True)
class Partition:
    """Arrays of one partition, in row order (what the bootstrap and the metric functions take)."""

    name: str
    labels: tuple[str, ...]
    row_ids: np.ndarray
    gold: np.ndarray  # [n, L] float (NaN = unknown)
    probs: np.ndarray  # [n, L]
    decisions: np.ndarray  # [n, L] bool
    attributes: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return int(self.row_ids.shape[0])

    @property
    def flagged(self) -> np.ndarray:
        return np.asarray(self.decisions.any(axis=1), dtype=bool)

    def select(self, order: np.ndarray) -> Partition:
        return Partition(
            self.name,
            self.labels,
            self.row_ids[order],
            self.gold[order],
            self.probs[order],
            self.decisions[order],
            {key: value[order] for key, value in self.attributes.items()},
        )


def labels_of(frame: pd.DataFrame) -> tuple[str, ...]:
    return tuple(column[len("prob_") :] for column in frame.columns if column.startswith("prob_"))


def partitions(frame: pd.DataFrame) -> dict[str, Partition]:
    labels = labels_of(frame)
    out: dict[str, Partition] = {}
    for name, group in frame.groupby("partition", sort=False):
        out[str(name)] = Partition(
            name=str(name),
            labels=labels,
            row_ids=group["row_id"].to_numpy(dtype=str),
            gold=group[[gold_column(label) for label in labels]].to_numpy(dtype=np.float64),
            probs=group[[prob_column(label) for label in labels]].to_numpy(dtype=np.float64),
            decisions=group[[pred_column(label) for label in labels]].to_numpy(dtype=bool),
            attributes={
                key: group[key].to_numpy(dtype=np.float64 if key == "hateful" else str)
                for key in ("language", "source", "dataset", "functionality", "hateful")
                if key in group
            },
        )
    return out


def align(items: Sequence[Partition]) -> list[Partition]:
    """The same partition of several runs restricted to their common rows, in one row order."""
    common = set(items[0].row_ids.tolist())
    for item in items[1:]:
        common &= set(item.row_ids.tolist())
    if not common:
        raise TextguardError(
            f"the runs share no rows in partition {items[0].name!r}: they were evaluated on different data"
        )
    ordered = np.array(sorted(common))
    aligned = []
    for item in items:
        position = {row_id: index for index, row_id in enumerate(item.row_ids.tolist())}
        aligned.append(item.select(np.array([position[row_id] for row_id in ordered], dtype=np.int64)))
    labels = {item.labels for item in aligned}
    if len(labels) != 1:
        raise TextguardError(f"the runs score different label sets {sorted(labels)}; they cannot be compared")
    return aligned
