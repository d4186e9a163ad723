from __future__ import annotations

import pytest

from textguard.labels import LABELS, UnknownLabelError, from_multi_hot, to_multi_hot, validate_labels


def test_canonical_order_and_round_trip() -> None:
    assert LABELS == ("violent_threat", "extremist_glorification", "hate_dehumanization")
    names = ["hate_dehumanization", "violent_threat", "violent_threat"]
    assert validate_labels(names) == ["violent_threat", "hate_dehumanization"]
    assert from_multi_hot(to_multi_hot(names)) == ["violent_threat", "hate_dehumanization"]
    assert to_multi_hot([]) == [0.0, 0.0, 0.0]


def test_unknown_label_is_named() -> None:
    with pytest.raises(UnknownLabelError, match="violence"):
        validate_labels(["violence"])
