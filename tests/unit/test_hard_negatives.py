"""Hard-negative mining and its use in training: the benign rows a model flags are found and repeated."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from datasets import Dataset

from textguard.data.mining import mine_hard_negatives, read_mined_ids, write_mined
from textguard.errors import DataError
from textguard.training.config import HardNegativesConfig
from textguard.training.data import repeat_hard_negatives

LABELS = ["violent_threat", "extremist_glorification", "hate_dehumanization"]


def split() -> Dataset:
    texts = [
        "they posted 'kill them all', reported",
        "share your screen",
        "kill them all",
        "muslims are lovely",
    ]
    return Dataset.from_dict(
        {
            "id": ["s/1", "s/2", "s/3", "s/4"],
            "text": texts,
            "labels": [[], [], ["violent_threat"], []],
            "language": ["en"] * 4,
            "source": ["chat"] * 4,
            "dataset": ["s"] * 4,
        }
    )


def keyword_model(texts: list[str]) -> np.ndarray:
    """Flags by topic, as a plain fine-tune does: 'kill' -> threat, 'muslims' -> hate."""
    return np.asarray(
        [[0.9 if "kill" in t else 0.1, 0.05, 0.6 if "muslims" in t else 0.1] for t in texts], dtype=np.float64
    )


def test_mining_returns_flagged_benign_rows_hardest_first(tmp_path: Path) -> None:
    mined = mine_hard_negatives(keyword_model, LABELS, [0.5, 0.5, 0.5], split(), batch_size=2)
    assert [row.id for row in mined] == ["s/1", "s/4"]  # the threat itself is not benign
    assert mined[0].flagged == ["violent_threat"] and mined[0].margin == pytest.approx(0.4)
    assert mined[1].flagged == ["hate_dehumanization"] and mined[1].margin == pytest.approx(0.1)
    assert [row.id for row in mine_hard_negatives(keyword_model, LABELS, [0.5] * 3, split(), max_rows=1)] == [
        "s/1"
    ]

    path = tmp_path / "mined.jsonl"
    summary = write_mined(mined, path, {"model": "m"})
    assert summary["rows"] == 2 and summary["by_label"] == {"violent_threat": 1, "hate_dehumanization": 1}
    assert read_mined_ids(path) == ["s/1", "s/4"]
    assert json.loads((tmp_path / "mined.summary.json").read_text())["model"] == "m"


def test_training_repeats_the_mined_benign_rows_only(tmp_path: Path) -> None:
    path = tmp_path / "mined.jsonl"
    # s/3 is harmful in this split (a stale file): never repeated as a negative; s/9 is not in the split.
    path.write_text("".join(json.dumps({"id": i}) + "\n" for i in ["s/1", "s/3", "s/9"]))
    train = repeat_hard_negatives(split(), HardNegativesConfig(file=path, repeat=3))
    assert train["id"].count("s/1") == 1 and train["id"][-2:] == ["s/1~hn1", "s/1~hn2"]
    assert len(train) == 6
    assert repeat_hard_negatives(split(), HardNegativesConfig(file=path, repeat=1)) is not None
    assert len(repeat_hard_negatives(split(), HardNegativesConfig())) == 4


def test_a_malformed_mined_file_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"id": "a"}\nnot json\n')
    with pytest.raises(DataError, match=r"bad.jsonl:2"):
        read_mined_ids(path)
    with pytest.raises(DataError, match="mine-negatives"):
        read_mined_ids(tmp_path / "missing.jsonl")
