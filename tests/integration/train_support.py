"""Helpers shared by the training tests: a small prepared dataset written from the seed set."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from textguard.paths import resources_dir


def write_prepared(directory: Path, per_split: dict[str, int]) -> Path:
    """A prepared folder (the data contract) from the seed set: first rows to train, then validation, test."""
    from textguard.data.examples import Example
    from textguard.data.prepared import write_report, write_split
    from textguard.text import normalize

    rows = [
        json.loads(line)
        for line in (resources_dir() / "seed" / "seed.jsonl").read_text().splitlines()
        if line
    ]
    rng = np.random.default_rng(0)
    rows = [rows[i] for i in rng.permutation(len(rows))]
    directory.mkdir(parents=True)
    start, counts = 0, {}
    for split, size in per_split.items():
        examples = [
            Example(
                id=row["id"],
                text=normalize(row["text"]),
                labels=tuple(row["labels"]),
                language=row["language"],
                source=row["source"],
                dataset="seed",
                hint="auto",
                where="seed.jsonl",
                split=split,
            )
            for row in rows[start : start + size]
        ]
        start += size
        counts[split] = write_split(examples, directory / f"{split}.parquet")["rows"]
    write_report({"name": "seed-sample", "splits": counts, "licenses": {"seed": "CC-BY-4.0"}}, directory)
    return directory
