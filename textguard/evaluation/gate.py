"""The regression gate: does a candidate drop below its baseline on the same rows, by more than a margin?

A check fails when the candidate's value is worse than the baseline's by more than the configured
margin and, with `require_significance`, the paired bootstrap also finds the drop significant at
`alpha` (so noise on a small slice cannot block a release, and a real drop cannot hide inside the
margin of a large one). Metrics are named as the evaluation run logs them; slice checks are generated
for every slice with enough rows in the compared data.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from textguard.errors import ConfigError
from textguard.evaluation import naming
from textguard.evaluation.bootstrap import bootstrap, format_p
from textguard.evaluation.config import GateConfig
from textguard.evaluation.measures import DEFAULT_ECE_BINS
from textguard.evaluation.named_metrics import metric_function
from textguard.evaluation.predictions import CLEAN, Partition, align, partitions

#: Exit code of `textguard evaluate --fail-on-regression` when the gate fails.
REGRESSION_EXIT_CODE = 3


@dataclass(frozen=True)
class GateCheck:
    metric: str
    baseline: float
    candidate: float
    delta: float
    ci_low: float
    ci_high: float
    p_value: float
    margin: float
    regressed: bool
    reason: str


@dataclass(frozen=True)
class GateResult:
    passed: bool
    checks: list[GateCheck]
    require_significance: bool
    alpha: float
    rows: int

    @property
    def failures(self) -> list[GateCheck]:
        return [check for check in self.checks if check.regressed]

    def message(self, shown: int = 3) -> str:
        if self.passed:
            return f"regression gate passed: {len(self.checks)} checks on {self.rows} rows"
        failures = self.failures
        worst = "; ".join(
            f"{c.metric} {c.baseline:.4f} -> {c.candidate:.4f} "
            f"({c.delta:+.4f}, margin {c.margin}, p {format_p(c.p_value)})"
            for c in failures[:shown]
        )
        more = f"; and {len(failures) - shown} more" if len(failures) > shown else ""
        return f"regression gate failed ({len(failures)} of {len(self.checks)} checks): {worst}{more}"

    def to_dict(self) -> dict[str, object]:
        return {
            "passed": self.passed,
            "require_significance": self.require_significance,
            "alpha": self.alpha,
            "rows": self.rows,
            "checks": [
                {
                    key: (None if isinstance(value, float) and math.isnan(value) else value)
                    for key, value in asdict(check).items()
                }
                for check in self.checks
            ],
        }


def gate_metrics(config: GateConfig, clean: Partition) -> list[str]:
    """The configured metrics plus each slice metric on every slice with >= min_slice_rows rows."""
    names = list(config.metrics)
    for dimension in config.slice_dimensions:
        counts = pd.Series(clean.attributes[dimension]).value_counts()
        for value in sorted(counts.index):
            if counts[value] >= config.min_slice_rows:
                names += [
                    f"{naming.slice_prefix(dimension, str(value))}{metric}" for metric in config.slice_metrics
                ]
    return names


def check_inputs(config: GateConfig, suites: list[str], perturbations: list[str]) -> None:
    """Fail before any scoring when a gate metric needs a suite or perturbation that is not evaluated."""
    available = {CLEAN} | {f"suite:{name}" for name in suites} | {f"perturb:{kind}" for kind in perturbations}
    needed = {metric_function(name).partition for name in config.metrics}
    missing = sorted(needed - available)
    if missing:
        raise ConfigError(
            f"gate metrics need {missing}, which this evaluation does not produce (add the suite "
            "with --suite or the perturbation with --perturb, or remove the metric from the gate)"
        )


def check_regression(
    baseline: pd.DataFrame,
    candidate: pd.DataFrame,
    config: GateConfig,
    ece_bins: int = DEFAULT_ECE_BINS,
) -> GateResult:
    """Compare per-row predictions of a baseline and a candidate evaluated on the same data.

    `ece_bins`: the bins the evaluation computed its ECE with, so a gated ECE is the logged one."""
    base_parts, cand_parts = partitions(baseline), partitions(candidate)
    if CLEAN not in base_parts or CLEAN not in cand_parts:
        raise ConfigError("the gate needs the clean split's predictions of both models")
    aligned: dict[str, list[Partition]] = {}
    for name in set(base_parts) & set(cand_parts):
        aligned[name] = align([base_parts[name], cand_parts[name]])
    names = gate_metrics(config, aligned[CLEAN][0])
    metrics = [metric_function(name, ece_bins) for name in names]
    missing = sorted({metric.partition for metric in metrics} - set(aligned))
    if missing:
        raise ConfigError(
            f"gate metrics need {missing}, which this evaluation did not produce "
            "(add the suite with --suite or the perturbation with --perturb, "
            "or remove the metric from the gate)"
        )
    result = bootstrap(
        metrics,
        [
            {name: parts[0] for name, parts in aligned.items()},
            {name: parts[1] for name, parts in aligned.items()},
        ],
        resamples=config.resamples,
        seed=config.seed,
        confidence=1.0 - config.alpha,
    )
    checks = []
    for name in names:
        base, cand = result.intervals[name][0].value, result.intervals[name][1].value
        difference = result.differences[name][0]
        margin = config.margin_for(name)
        higher = naming.higher_is_better(name)
        drop = -difference.delta if higher else difference.delta
        if np.isnan(difference.delta):
            checks.append(
                GateCheck(
                    name,
                    base,
                    cand,
                    difference.delta,
                    difference.low,
                    difference.high,
                    difference.p_value,
                    margin,
                    False,
                    "undefined on these rows; not checked",
                )
            )
            continue
        beyond_margin = drop > margin
        significant = difference.p_value < config.alpha
        regressed = beyond_margin and (significant or not config.require_significance)
        if regressed:
            reason = f"dropped by {drop:.4f} > margin {margin}" + (
                f", significant (p {format_p(difference.p_value)})" if config.require_significance else ""
            )
        elif beyond_margin:
            reason = (
                f"dropped by {drop:.4f} > margin {margin}, not significant (p {format_p(difference.p_value)})"
            )
        else:
            reason = "within margin"
        checks.append(
            GateCheck(
                name,
                base,
                cand,
                difference.delta,
                difference.low,
                difference.high,
                difference.p_value,
                margin,
                regressed,
                reason,
            )
        )
    return GateResult(
        passed=not any(check.regressed for check in checks),
        checks=checks,
        require_significance=config.require_significance,
        alpha=config.alpha,
        rows=aligned[CLEAN][0].size,
    )
