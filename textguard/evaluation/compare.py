"""`textguard compare`: evaluation runs side by side, with bootstrap CIs and paired significance tests.

The first run is the reference (usually the champion); every other run is compared with it on the
rows both were evaluated on. For each metric: the value and 95% CI per run (percentile bootstrap over
rows), the paired difference with its CI and p-value (same resamples for both runs), Holm-adjusted
within each section so that testing many labels and slices does not manufacture "significant" wins,
and the winner where the adjusted difference is significant. Decisions are also compared per label
with McNemar's exact test (which rows one model gets right and the other wrong).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from textguard.errors import TextguardError
from textguard.evaluation import measures, naming
from textguard.evaluation.bootstrap import Difference, Interval, bootstrap
from textguard.evaluation.named_metrics import NamedMetric, metric_function
from textguard.evaluation.predictions import CLEAN, Partition, align, partitions

SECTIONS = ("overall", "labels", "slices", "robustness", "suites")
OVERALL_MEASURES = ("f1", "precision", "recall", "pr_auc", "roc_auc")
SLICE_MEASURES = ("macro_f1", "macro_pr_auc")
ROBUSTNESS_MEASURES = ("macro_f1", "micro_f1", "macro_pr_auc")


@dataclass(frozen=True)
class RunInfo:
    run_id: str
    label: str
    tags: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    started: str = ""
    experiment_id: str = ""

    @property
    def short_id(self) -> str:
        return self.run_id[:8]


@dataclass
class MetricRow:
    section: str
    name: str
    higher_is_better: bool
    intervals: list[Interval]
    #: One per non-reference run: run - reference.
    differences: list[Difference]
    adjusted_p: list[float] = field(default_factory=list)
    #: One per non-reference run: index of the winning run, or None (no significant difference).
    winners: list[int | None] = field(default_factory=list)


@dataclass(frozen=True)
class McNemarRow:
    partition: str
    label: str  # a taxonomy label, or "any" (the flag/no-flag decision)
    run_index: int
    reference_only_correct: int
    run_only_correct: int
    p_value: float
    adjusted_p: float


@dataclass
class Comparison:
    runs: list[RunInfo]
    rows: list[MetricRow]
    mcnemar: list[McNemarRow]
    common_rows: dict[str, int]
    notes: list[str]
    resamples: int
    seed: int
    alpha: float
    parts: dict[str, list[Partition]] = field(default_factory=dict, repr=False)
    #: What differs between the runs' inputs (data, suites, seed, labels), compared anyway on request.
    mismatches: list[str] = field(default_factory=list)

    def _run_id(self, index: int | None) -> str | None:
        return None if index is None else self.runs[index].run_id

    def section(self, name: str) -> list[MetricRow]:
        return [row for row in self.rows if row.section == name]

    def wins(self) -> list[dict[str, Any]]:
        """Per non-reference run and section: metrics won, lost, and not significantly different."""
        summary = []
        for index in range(1, len(self.runs)):
            for section in SECTIONS:
                rows = self.section(section)
                if not rows:
                    continue
                winners = [row.winners[index - 1] for row in rows]
                summary.append(
                    {
                        "run": self.runs[index].label,
                        "section": section,
                        "wins": sum(winner == index for winner in winners),
                        "losses": sum(winner == 0 for winner in winners),
                        "no_significant_difference": sum(winner is None for winner in winners),
                    }
                )
        return summary

    def to_dict(self) -> dict[str, Any]:
        return {
            "runs": [{"run_id": run.run_id, "label": run.label} for run in self.runs],
            "reference": self.runs[0].run_id,
            "resamples": self.resamples,
            "seed": self.seed,
            "alpha": self.alpha,
            "common_rows": self.common_rows,
            "mismatches": self.mismatches,
            "notes": self.notes,
            "metrics": [
                {
                    "section": row.section,
                    "name": row.name,
                    "higher_is_better": row.higher_is_better,
                    "runs": [{"value": i.value, "ci_low": i.low, "ci_high": i.high} for i in row.intervals],
                    "differences": [
                        {
                            "run": self.runs[index + 1].run_id,
                            "delta": d.delta,
                            "ci_low": d.low,
                            "ci_high": d.high,
                            "p_value": d.p_value,
                            "p_holm": row.adjusted_p[index],
                            "winner": self._run_id(row.winners[index]),
                        }
                        for index, d in enumerate(row.differences)
                    ],
                }
                for row in self.rows
            ],
            "mcnemar": [vars(item) for item in self.mcnemar],
            "wins": self.wins(),
        }


def _fpr_measure(runs: Sequence[RunInfo]) -> str:
    raw = runs[0].params.get("max_fpr")
    try:
        return naming.fpr_measure(float(raw)) if raw else naming.fpr_measure(0.01)
    except ValueError:
        return naming.fpr_measure(0.01)


def metric_plan(
    aligned: dict[str, list[Partition]], runs: Sequence[RunInfo], min_slice_rows: int
) -> list[tuple[str, str]]:
    """(section, metric name) pairs to compare, from the partitions all runs share."""
    plan: list[tuple[str, str]] = []
    if CLEAN in aligned:
        clean = aligned[CLEAN][0]
        labels = clean.labels
        measures_all = [*OVERALL_MEASURES, _fpr_measure(runs), "ece"]
        for measure in measures_all:
            plan += [("overall", f"macro_{measure}"), ("overall", f"micro_{measure}")]
        for label in labels:
            plan += [("labels", f"{measure}_{label}") for measure in measures_all]
        for dimension in naming.SLICE_DIMENSIONS:
            values = clean.attributes.get(dimension)
            if values is None:
                continue
            counts = pd.Series(values).value_counts()
            for value in sorted(counts.index):
                if counts[value] < min_slice_rows or len(counts) < 2:
                    continue
                prefix = naming.slice_prefix(dimension, str(value))
                plan += [("slices", f"{prefix}{measure}") for measure in SLICE_MEASURES]
                plan += [("slices", f"{prefix}f1_{label}") for label in labels]
    for name in sorted(aligned):
        if name.startswith("perturb:"):
            prefix = naming.perturb_prefix(name.split(":", 1)[1])
            plan += [("robustness", f"{prefix}{measure}") for measure in ROBUSTNESS_MEASURES]
    for name in sorted(aligned):
        if not name.startswith("suite:"):
            continue
        suite = name.split(":", 1)[1]
        part = aligned[name][0]
        plan += [("suites", naming.suite_metric(suite, m)) for m in ("accuracy", "balanced_accuracy")]
        plan += [("suites", naming.suite_metric(suite, "accuracy", g)) for g in naming.SUITE_SUMMARY_GROUPS]
        if (~np.isnan(part.gold).any(axis=1)).any():
            plan.append(("suites", naming.suite_metric(suite, "label_exact_match")))
        for functionality in sorted(set(part.attributes["functionality"].tolist())):
            plan.append(("suites", naming.suite_metric(suite, "accuracy", "func", functionality)))
        languages = sorted(set(part.attributes["language"].tolist()))
        if len(languages) > 1:
            hard = measures.is_hard_negative(part.attributes["functionality"])
            for code in languages:
                plan.append(("suites", naming.suite_metric(suite, "balanced_accuracy", "language", code)))
                if (hard & (part.attributes["language"] == code)).any():
                    name = naming.suite_metric(suite, "accuracy", "language", code, subgroup="hard_negative")
                    plan.append(("suites", name))
    return plan


def _winner(
    difference: Difference, adjusted: float, higher_is_better: bool, alpha: float, index: int
) -> int | None:
    if np.isnan(adjusted) or adjusted >= alpha or np.isnan(difference.delta) or difference.delta == 0:
        return None
    better = difference.delta > 0 if higher_is_better else difference.delta < 0
    return index if better else 0


def _holm_by_section(rows: list[MetricRow], n_runs: int, alpha: float) -> None:
    for row in rows:
        row.adjusted_p = [float("nan")] * (n_runs - 1)
        row.winners = [None] * (n_runs - 1)
    for section in SECTIONS:
        members = [row for row in rows if row.section == section]
        for index in range(n_runs - 1):
            tested = [row for row in members if not np.isnan(row.differences[index].p_value)]
            adjusted = measures.holm([row.differences[index].p_value for row in tested])
            for row, p in zip(tested, adjusted, strict=True):
                row.adjusted_p[index] = p
                row.winners[index] = _winner(
                    row.differences[index], p, row.higher_is_better, alpha, index + 1
                )


def _mcnemar(aligned: dict[str, list[Partition]]) -> list[McNemarRow]:
    raw: list[tuple[str, str, int, int, int, float]] = []
    for name, parts in aligned.items():
        reference = parts[0]
        if name == CLEAN:
            columns: list[tuple[str, Any]] = [(label, j) for j, label in enumerate(reference.labels)]
            columns.append(("any", None))
        elif name.startswith("suite:"):
            columns = [("any", None)]
        else:
            continue
        for label, column in columns:
            if column is None:
                gold = (
                    reference.attributes["hateful"] == 1.0
                    if name != CLEAN
                    else (reference.gold == 1.0).any(axis=1)
                )
                correct = [part.flagged == gold for part in parts]
            else:
                gold = reference.gold[:, column] == 1.0
                correct = [part.decisions[:, column] == gold for part in parts]
            for index in range(1, len(parts)):
                only_ref, only_run, p = measures.mcnemar(correct[0], correct[index])
                raw.append((name, label, index, only_ref, only_run, p))
    adjusted = measures.holm([item[5] for item in raw]) if raw else []
    return [McNemarRow(*item, adjusted_p=p) for item, p in zip(raw, adjusted, strict=True)]


def compare_predictions(
    runs: Sequence[RunInfo],
    frames: Sequence[pd.DataFrame],
    *,
    resamples: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    min_slice_rows: int = 30,
    ece_bins: int = measures.DEFAULT_ECE_BINS,
) -> Comparison:
    """Compare runs from their per-row predictions (the first run is the reference)."""
    if len(runs) < 2:
        raise TextguardError("compare needs at least two evaluation runs")
    by_run = [partitions(frame) for frame in frames]
    notes: list[str] = []
    shared = [name for name in by_run[0] if all(name in other for other in by_run[1:])]
    for index, run_parts in enumerate(by_run):
        for name in sorted(set(run_parts) - set(shared)):
            notes.append(f"partition {name!r} is only in run {runs[index].short_id}; not compared")
    aligned: dict[str, list[Partition]] = {}
    common_rows: dict[str, int] = {}
    for name in shared:
        parts = align([run_parts[name] for run_parts in by_run])
        aligned[name] = parts
        common_rows[name] = parts[0].size
        largest = max(run_parts[name].size for run_parts in by_run)
        if parts[0].size < largest:
            notes.append(
                f"partition {name!r}: compared on the {parts[0].size} rows all runs share (of {largest})"
            )
        if name == CLEAN or name.startswith("suite:"):
            gold = [part.gold for part in parts]
            if not all(np.array_equal(gold[0], other, equal_nan=True) for other in gold[1:]):
                notes.append(
                    f"partition {name!r}: the runs disagree on gold labels for some rows (data changed?)"
                )
    if not aligned:
        raise TextguardError("the runs share no evaluated partition; evaluate them on the same data")
    plan = metric_plan(aligned, runs, min_slice_rows)
    metrics: list[NamedMetric] = [metric_function(name, ece_bins) for _, name in plan]
    aligned_runs = [{name: parts[index] for name, parts in aligned.items()} for index in range(len(runs))]
    result = bootstrap(metrics, aligned_runs, resamples=resamples, seed=seed)
    rows = [
        MetricRow(
            section=section,
            name=name,
            higher_is_better=naming.higher_is_better(name),
            intervals=result.intervals[name],
            differences=result.differences[name],
        )
        for section, name in plan
    ]
    _holm_by_section(rows, len(runs), alpha)
    return Comparison(
        runs=list(runs),
        rows=rows,
        mcnemar=_mcnemar(aligned),
        common_rows=common_rows,
        notes=notes,
        resamples=resamples,
        seed=seed,
        alpha=alpha,
        parts=aligned,
    )


def run_info(fetched: Any) -> RunInfo:
    """RunInfo from a `textguard.tracking.evaluation.FetchedRun`."""
    from datetime import UTC, datetime

    started = (
        datetime.fromtimestamp(fetched.start_time / 1000, UTC).isoformat(timespec="seconds")
        if fetched.start_time
        else ""
    )
    return RunInfo(
        fetched.run_id, fetched.model_label, fetched.tags, fetched.params, started, fetched.experiment_id
    )


class RunsNotComparable(TextguardError):
    """The runs' inputs differ, so their row-by-row differences would mean nothing (exit code 2)."""


def check_comparable(infos: Sequence[RunInfo], allow_mismatch: bool) -> tuple[list[str], list[str]]:
    """(differences, unverified facts) of every run against the reference; refuses on a difference
    unless `allow_mismatch`."""
    from textguard.evaluation.provenance import Provenance, comparability

    reference = Provenance.from_run(infos[0].tags, infos[0].params)
    differences: list[str] = []
    unknown: list[str] = []
    for info in infos[1:]:
        found = comparability(
            reference, Provenance.from_run(info.tags, info.params), (infos[0].short_id, info.short_id)
        )
        differences += found.differences
        unknown += found.unknown
    if differences and not allow_mismatch:
        raise RunsNotComparable(
            "the runs were not evaluated on the same inputs, so a row-by-row comparison would mislead: "
            + "; ".join(differences)
            + ". Evaluate both models with the same --data, --suite files, --seed and label set, "
            "or pass --allow-mismatch to compare them anyway (the report then says what differs)"
        )
    return differences, unknown


def compare_runs(
    run_ids: Sequence[str],
    tracking_uri: str,
    *,
    resamples: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    min_slice_rows: int = 30,
    allow_mismatch: bool = False,
) -> Comparison:
    """Fetch evaluation runs (their predictions.parquet) and compare them; the first is the reference.

    Run ids may be unique prefixes. Runs evaluated on different data, suite files, perturbation
    seeds or label sets are refused (`RunsNotComparable`) unless `allow_mismatch`, in which case the
    differences are kept in `Comparison.mismatches` and in the report.
    """
    import tempfile
    from pathlib import Path

    from textguard.evaluation.predictions import PREDICTIONS_FILE
    from textguard.tracking.evaluation import fetch_run
    from textguard.tracking.run_index import resolve_run_ids

    resolved = resolve_run_ids(run_ids, tracking_uri)
    if len(set(resolved)) < 2:
        raise TextguardError("compare needs at least two different evaluation run ids")
    with tempfile.TemporaryDirectory(prefix="textguard-compare-") as workdir:
        fetched = [
            fetch_run(run_id, tracking_uri, (PREDICTIONS_FILE,), Path(workdir) / f"run-{index}")
            for index, run_id in enumerate(resolved)
        ]
        frames = [pd.read_parquet(run.files[PREDICTIONS_FILE]) for run in fetched]
    ece_bins = int(fetched[0].params.get("ece_bins", measures.DEFAULT_ECE_BINS))
    infos = [run_info(run) for run in fetched]
    differences, unknown = check_comparable(infos, allow_mismatch)
    labels = [info.label for info in infos]
    # Two runs of the same model version need telling apart in "winner" columns.
    infos = [
        RunInfo(
            info.run_id,
            f"{info.label} ({info.short_id})",
            info.tags,
            info.params,
            info.started,
            info.experiment_id,
        )
        if labels.count(info.label) > 1
        else info
        for info in infos
    ]
    comparison = compare_predictions(
        infos,
        frames,
        resamples=resamples,
        seed=seed,
        alpha=alpha,
        min_slice_rows=min_slice_rows,
        ece_bins=ece_bins,
    )
    comparison.mismatches = differences
    comparison.notes = [
        *(f"MISMATCH (compared anyway): {line}" for line in differences),
        *(f"unverified: {line}" for line in unknown),
        *comparison.notes,
    ]
    return comparison
