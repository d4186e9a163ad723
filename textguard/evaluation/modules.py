"""Loading the project's `evaluate` metric modules by path and computing the classification metric set.

The modules live in `textguard/evaluation/metrics/<name>/<name>.py` (shipped as package data) and are
loaded with `evaluate.load(<directory>)`, never from the Hugging Face Hub. `evaluate` copies a script into
its module cache and imports it from there; the scripts import `textguard.evaluation.measures`, so the
arithmetic stays in one importable place that the bootstrap uses too.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from textguard.evaluation.measures import DEFAULT_ECE_BINS

CLASSIFICATION = "multilabel_classification"
RANKING = "multilabel_ranking"
RECALL_AT_FPR = "recall_at_fpr"
CALIBRATION = "calibration_ece"
FUNCTIONAL = "functional_accuracy"
METRIC_MODULES = (CLASSIFICATION, RANKING, RECALL_AT_FPR, CALIBRATION, FUNCTIONAL)


def metrics_dir() -> Path:
    return Path(__file__).resolve().parent / "metrics"


def metric_path(name: str) -> Path:
    """The directory of a shipped metric module (evaluate.load accepts it directly)."""
    path = metrics_dir() / name
    if not (path / f"{name}.py").is_file():
        raise ValueError(f"unknown metric module {name!r}; shipped modules: {list(METRIC_MODULES)}")
    return path


@functools.cache
def load_metric(name: str) -> Any:
    """The loaded module, once per process (loading copies and imports the script)."""
    import evaluate

    # keep_in_memory: no Arrow cache files or file locks under ~/.cache for every compute call.
    return evaluate.load(str(metric_path(name)), keep_in_memory=True)


def _rows(matrix: np.ndarray, dtype: type) -> list[list[Any]]:
    return np.asarray(matrix).astype(dtype).tolist()  # type: ignore[no-any-return]


def classification_metrics(
    gold: np.ndarray,
    probs: np.ndarray,
    decisions: np.ndarray,
    labels: Sequence[str],
    *,
    max_fpr: float = 0.01,
    ece_bins: int = DEFAULT_ECE_BINS,
) -> dict[str, float]:
    """The full per-label + macro/micro metric set of one scope (names per `textguard.evaluation.naming`).

    Undefined values (NaN) are left out: a metric that cannot be computed on a slice is absent rather
    than logged as 0 or NaN.
    """
    names = list(labels)
    gold_rows, prob_rows = _rows(gold, int), _rows(probs, float)
    results: dict[str, float] = {}
    results.update(
        load_metric(CLASSIFICATION).compute(
            predictions=_rows(decisions, int), references=gold_rows, label_names=names
        )
    )
    if len(gold_rows):
        results.update(
            load_metric(RANKING).compute(predictions=prob_rows, references=gold_rows, label_names=names)
        )
        fpr = load_metric(RECALL_AT_FPR).compute(
            predictions=prob_rows, references=gold_rows, max_fpr=max_fpr, label_names=names
        )
        results.update(fpr)
        results.update(
            load_metric(CALIBRATION).compute(
                predictions=prob_rows, references=gold_rows, n_bins=ece_bins, label_names=names
            )
        )
    return {key: float(value) for key, value in results.items() if not math.isnan(value)}


def functional_metrics(
    flagged: np.ndarray, hateful: np.ndarray, functionality: Sequence[str], language: Sequence[str]
) -> dict[str, Any]:
    return load_metric(FUNCTIONAL).compute(  # type: ignore[no-any-return]
        predictions=np.asarray(flagged).astype(int).tolist(),
        references=np.asarray(hateful).astype(int).tolist(),
        functionality=list(functionality),
        language=list(language),
    )
