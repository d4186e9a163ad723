"""Seeded, vectorised bootstrap: confidence intervals per run and paired differences between runs.

Resamples are drawn as count weights [b, n] (row i drawn k times -> weight k) in chunks, so one matrix
product evaluates a metric on hundreds of resamples at once. The same weights are applied to every run
of a comparison (the rows are aligned first), which makes the difference test paired: it measures how
much the gap between two models on *these* rows could move, not how much each model's score could.
Slice metrics resample the whole split and keep the slice's rows, so slice sizes vary as they would.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from textguard.evaluation.named_metrics import MetricCache, NamedMetric
from textguard.evaluation.predictions import Partition

DEFAULT_RESAMPLES = 1000
CHUNK = 100
CONFIDENCE = 0.95


def resample_weights(n: int, resamples: int, seed: int, partition: str = "") -> Iterator[np.ndarray]:
    """Bootstrap count weights in chunks of [<=CHUNK, n]; the same (n, resamples, seed, partition) gives
    the same weights. The partition name enters the seed so adding a partition never moves another's CIs."""
    rng = np.random.default_rng([seed, zlib.crc32(partition.encode("utf-8"))])
    done = 0
    while done < resamples:
        b = min(CHUNK, resamples - done)
        drawn = rng.integers(0, n, size=(b, n))
        flat = (np.arange(b)[:, None] * n + drawn).ravel()
        # float32 holds these small integer counts exactly and halves the memory traffic.
        yield np.bincount(flat, minlength=b * n).reshape(b, n).astype(np.float32)
        done += b


def format_p(value: float) -> str:
    if value is None or np.isnan(value):
        return "n/a"
    return "<1e-4" if value < 1e-4 else f"{value:.4f}"


@dataclass(frozen=True)
class Interval:
    value: float
    low: float
    high: float


@dataclass(frozen=True)
class Difference:
    """run - reference on the same rows: estimate, paired bootstrap CI and two-sided p-value."""

    delta: float
    low: float
    high: float
    p_value: float
    resamples: int


def percentile_interval(samples: np.ndarray, value: float, confidence: float = CONFIDENCE) -> Interval:
    defined = samples[~np.isnan(samples)]
    if defined.size == 0 or np.isnan(value):
        return Interval(value, float("nan"), float("nan"))
    tail = (1.0 - confidence) / 2.0 * 100.0
    low, high = np.percentile(defined, [tail, 100.0 - tail])
    return Interval(value, float(low), float(high))


def paired_difference(deltas: np.ndarray, observed: float, confidence: float = CONFIDENCE) -> Difference:
    """Percentile CI of the paired differences, and the two-sided p-value of "no difference" from the
    bootstrap standard error (z = delta / SE). A p-value counted from resamples could never go below
    1/resamples, which a Holm correction over dozens of slices would turn into "never significant"."""
    from scipy.stats import norm

    defined = deltas[~np.isnan(deltas)]
    if defined.size < 2 or np.isnan(observed):
        return Difference(observed, float("nan"), float("nan"), float("nan"), int(defined.size))
    interval = percentile_interval(defined, observed, confidence)
    spread = float(np.std(defined, ddof=1))
    if spread == 0.0:
        # Every resample gives the same difference: none at all, or one that no resample can undo.
        p_value = 1.0 if observed == 0.0 else 0.0
    else:
        p_value = float(2.0 * norm.sf(abs(observed) / spread))
    return Difference(observed, interval.low, interval.high, p_value, int(defined.size))


@dataclass(frozen=True)
class BootstrapResult:
    """For each metric: one Interval per run, and one Difference per run after the first (vs the first)."""

    intervals: dict[str, list[Interval]]
    differences: dict[str, list[Difference]]
    resamples: int
    seed: int


def bootstrap(
    metrics: Sequence[NamedMetric],
    runs: Sequence[dict[str, Partition]],
    *,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    confidence: float = CONFIDENCE,
) -> BootstrapResult:
    """Intervals and paired differences for `metrics` over runs whose partitions are already aligned
    (same rows, same order: see `predictions.align`). The first run is the reference."""
    intervals: dict[str, list[Interval]] = {}
    differences: dict[str, list[Difference]] = {}
    by_partition: dict[str, list[NamedMetric]] = {}
    for metric in metrics:
        by_partition.setdefault(metric.partition, []).append(metric)
    for partition_name, group in by_partition.items():
        parts = [run[partition_name] for run in runs]
        size = parts[0].size
        observed = {m.name: [m.value(part) for part in parts] for m in group}
        samples: dict[str, list[list[np.ndarray]]] = {m.name: [[] for _ in parts] for m in group}
        caches = [MetricCache() for _ in parts]
        for weights in resample_weights(size, resamples, seed, partition_name):
            for cache in caches:
                cache.new_chunk()
            for metric in group:
                for index, part in enumerate(parts):
                    samples[metric.name][index].append(metric.function(part, weights, caches[index]))
        for metric in group:
            stacked = [np.concatenate(chunks) for chunks in samples[metric.name]]
            values = observed[metric.name]
            intervals[metric.name] = [
                percentile_interval(run_samples, value, confidence)
                for run_samples, value in zip(stacked, values, strict=True)
            ]
            differences[metric.name] = [
                paired_difference(stacked[index] - stacked[0], values[index] - values[0], confidence)
                for index in range(1, len(parts))
            ]
    return BootstrapResult(intervals, differences, resamples, seed)
