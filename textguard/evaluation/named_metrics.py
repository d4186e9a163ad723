"""Metric names -> weighted metric functions over a predictions partition.

`metric_function("slice.language.fr.macro_f1")` returns the partition it reads ("clean") and a function
(partition, weights [b, n], cache) -> values [b]. `compare` and the regression gate evaluate it under
bootstrap weights; with a single row of ones it reproduces the value the evaluation run logged (the
same `measures` arithmetic the metric modules use).

The cache is what keeps 1000 resamples of a few hundred metrics affordable: slice row masks are
computed once per partition, and a label's sorted PR/ROC curve once per chunk of resamples, then
shared by PR-AUC, ROC-AUC, recall-at-FPR and every macro/micro average that needs it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from textguard.errors import ConfigError
from textguard.evaluation import measures
from textguard.evaluation.naming import (
    ROW_COUNT,
    SUITE_SUMMARY_GROUPS,
    ClassificationName,
    SuiteName,
    parse_classification,
    parse_fpr_measure,
    parse_suite,
    safe,
)
from textguard.evaluation.predictions import Partition, suite_partition


@dataclass
class MetricCache:
    """Memo for one partition of one run: `rows` lives for the partition, `chunk` for one weights chunk."""

    rows: dict[Any, Any] = field(default_factory=dict)
    chunk: dict[Any, Any] = field(default_factory=dict)

    def new_chunk(self) -> None:
        self.chunk.clear()


MetricFn = Callable[[Partition, np.ndarray, MetricCache], np.ndarray]
_THRESHOLD: dict[str, Callable[[measures.Counts], np.ndarray]] = {
    "precision": measures.precision,
    "recall": measures.recall,
    "f1": measures.f1,
}


@dataclass(frozen=True)
class NamedMetric:
    name: str
    partition: str
    function: MetricFn

    def value(self, partition: Partition) -> float:
        return float(self.function(partition, np.ones((1, partition.size)), MetricCache())[0])


def _mask(part: Partition, dimension: str, wanted: str, cache: MetricCache) -> np.ndarray:
    key = ("mask", dimension, wanted)
    if key not in cache.rows:
        values = part.attributes[dimension]
        uniques, inverse = np.unique(values.astype(str), return_inverse=True)
        matching = [index for index, value in enumerate(uniques) if safe(str(value)) == wanted]
        cache.rows[key] = np.isin(inverse, matching)
    return cache.rows[key]  # type: ignore[no-any-return]


@dataclass(frozen=True)
class _Scope:
    """The rows of one slice (or of the whole partition) and their weights."""

    key: Any
    gold: np.ndarray
    probs: np.ndarray
    decisions: np.ndarray
    weights: np.ndarray


def _scope(parsed: ClassificationName, part: Partition, weights: np.ndarray, cache: MetricCache) -> _Scope:
    if parsed.slice is None:
        return _Scope(None, part.gold, part.probs, part.decisions, weights)
    dimension, value = parsed.slice
    rows = _mask(part, dimension, value, cache)
    data_key = ("slice-data", dimension, value)
    if data_key not in cache.rows:
        cache.rows[data_key] = (part.gold[rows], part.probs[rows], part.decisions[rows])
    weight_key = ("slice-weights", dimension, value)
    if weight_key not in cache.chunk:
        cache.chunk[weight_key] = weights[:, rows]
    gold, probs, decisions = cache.rows[data_key]
    return _Scope(parsed.slice, gold, probs, decisions, cache.chunk[weight_key])


def _curve(scope: _Scope, column: int | None, cache: MetricCache) -> measures.Curve:
    """The label's curve (column) or the pooled micro curve (None), once per chunk."""
    key = ("curve", scope.key, column)
    if key not in cache.chunk:
        if column is None:
            gold, probs = scope.gold.T.ravel(), scope.probs.T.ravel()
            weights = np.tile(scope.weights, scope.gold.shape[1])
        else:
            gold, probs, weights = scope.gold[:, column], scope.probs[:, column], scope.weights
        plan_key = ("plan", scope.key, column)
        if plan_key not in cache.rows:
            cache.rows[plan_key] = measures.curve_plan(gold, probs)
        cache.chunk[key] = measures.curve(gold, probs, weights, plan=cache.rows[plan_key])
    return cache.chunk[key]  # type: ignore[no-any-return]


def _score(measure: str, ece_bins: int) -> Callable[[_Scope, int | None, MetricCache], np.ndarray]:
    if measure == "pr_auc":
        return lambda scope, column, cache: measures.average_precision_of(_curve(scope, column, cache))
    if measure == "roc_auc":
        return lambda scope, column, cache: measures.roc_auc_of(_curve(scope, column, cache))
    max_fpr = parse_fpr_measure(measure)
    if max_fpr is not None:
        return lambda scope, column, cache: measures.recall_at_fpr_of(_curve(scope, column, cache), max_fpr)
    if measure == "ece":

        def calibration_gap(scope: _Scope, column: int | None, cache: MetricCache) -> np.ndarray:
            if column is None:
                gold, probs = scope.gold.T.ravel(), scope.probs.T.ravel()
                weights = np.tile(scope.weights, scope.gold.shape[1])
            else:
                gold, probs, weights = scope.gold[:, column], scope.probs[:, column], scope.weights
            return measures.expected_calibration_error(gold, probs, weights, n_bins=ece_bins)

        return calibration_gap
    raise ConfigError(f"unknown measure {measure!r}")


def _classification(parsed: ClassificationName, ece_bins: int) -> MetricFn:
    score = (
        None
        if parsed.measure in (*_THRESHOLD, ROW_COUNT, "support", "predicted")
        else _score(parsed.measure, ece_bins)
    )

    def compute(part: Partition, weights: np.ndarray, cache: MetricCache) -> np.ndarray:
        scope = _scope(parsed, part, weights, cache)
        labels = list(part.labels)
        if parsed.label is not None and parsed.label not in labels:
            return np.full(weights.shape[0], np.nan)
        columns = [labels.index(parsed.label)] if parsed.label else list(range(len(labels)))
        w = scope.weights
        if parsed.measure == ROW_COUNT:
            return w.sum(axis=1).astype(np.float64)  # type: ignore[no-any-return]
        if parsed.measure == "support":
            return (w @ scope.gold[:, columns[0]].astype(w.dtype)).astype(np.float64)  # type: ignore[no-any-return]
        if parsed.measure == "predicted":
            return (w @ scope.decisions[:, columns[0]].astype(w.dtype)).astype(np.float64)  # type: ignore[no-any-return]
        if parsed.measure in _THRESHOLD:
            threshold = _THRESHOLD[parsed.measure]
            key = ("counts", scope.key)
            if key not in cache.chunk:
                cache.chunk[key] = measures.confusion_counts(scope.gold, scope.decisions, w)
            counts: measures.Counts = cache.chunk[key]
            if parsed.average == "micro":
                return threshold(counts.summed())[:, 0]
            values = threshold(counts)
            return values[:, columns[0]] if parsed.label else measures.nanmean(values, axis=1)
        assert score is not None
        if parsed.average == "micro":
            return score(scope, None, cache)

        def per_label(column: int) -> np.ndarray:
            # Macro averages reuse the per-label values of the same chunk.
            key = ("score", parsed.measure, scope.key, column)
            if key not in cache.chunk:
                cache.chunk[key] = score(scope, column, cache)
            return cache.chunk[key]  # type: ignore[no-any-return]

        stacked = np.stack([per_label(column) for column in columns], axis=1)
        return stacked[:, 0] if parsed.label else measures.nanmean(stacked, axis=1)

    return compute


def _suite(parsed: SuiteName) -> MetricFn:
    def summary_rows(part: Partition, group: str) -> np.ndarray:
        hateful = part.attributes["hateful"] == 1.0
        if group == "hateful":
            return hateful  # type: ignore[no-any-return]
        if group == "non_hateful":
            return ~hateful  # type: ignore[no-any-return]
        return measures.is_hard_negative(part.attributes["functionality"])

    def rows_of(part: Partition, cache: MetricCache) -> np.ndarray:
        if parsed.group == "all":
            return np.ones(part.size, dtype=bool)
        if parsed.group in SUITE_SUMMARY_GROUPS:
            return summary_rows(part, parsed.group)
        dimension = "functionality" if parsed.group == "func" else "language"
        rows = _mask(part, dimension, parsed.value or "", cache)
        return rows & summary_rows(part, parsed.subgroup) if parsed.subgroup else rows

    def compute(part: Partition, weights: np.ndarray, cache: MetricCache) -> np.ndarray:
        rows = rows_of(part, cache)
        hateful = part.attributes["hateful"][rows] == 1.0
        w = weights[:, rows]
        correct = part.flagged[rows] == hateful
        if parsed.measure == "n_cases":
            return w.sum(axis=1).astype(np.float64)  # type: ignore[no-any-return]
        if parsed.measure == "accuracy":
            return measures.accuracy(correct, w)
        if parsed.measure == "balanced_accuracy":
            return measures.balanced_accuracy(correct, hateful, w)
        # label_exact_match: the flagged label set equals the gold set, on cases that give per-label gold.
        gold = part.gold[rows]
        known = ~np.isnan(gold).any(axis=1)
        exact = (part.decisions[rows] == (gold == 1.0)).all(axis=1)
        return measures.accuracy(exact[known], w[:, known])

    return compute


def metric_function(name: str, ece_bins: int = measures.DEFAULT_ECE_BINS) -> NamedMetric:
    """Resolve a metric name of the evaluation grammar (see `naming`); ConfigError for anything else."""
    classification = parse_classification(name)
    if classification is not None:
        return NamedMetric(name, classification.partition, _classification(classification, ece_bins))
    suite = parse_suite(name)
    if suite is not None:
        return NamedMetric(name, suite_partition(suite.suite), _suite(suite))
    raise ConfigError(
        f"metric {name!r} is not an evaluation metric name; examples: macro_f1, f1_violent_threat, "
        "slice.language.fr.macro_f1, perturb.leetspeak.macro_f1, suite.hatecheck_en.balanced_accuracy"
    )
