"""Which evaluation metrics become MLflow metrics; everything else goes to tables.

An evaluation computes several hundred values (every measure per label, per slice, per perturbation,
per suite functionality and language). Logged flat they bury the few numbers people compare runs on,
so an evaluation run logs only these headline metrics as MLflow metrics and writes the complete set
to `metrics.json` plus CSV tables (`tables/`, `slices.csv`, `suites/`), which the MLflow UI shows as
tables. `compare` and the regression gate recompute any metric from predictions.parquet, so nothing
they need depends on this choice.

Headline metrics:
- the evaluated split: n_rows; macro precision, recall, F1, PR-AUC, ROC-AUC and recall at the FPR
  budget; micro F1; micro ECE; F1 and PR-AUC per label;
- each perturbation: perturb.<kind>.delta.macro_f1 and perturb.<kind>.flip_rate;
- each functional suite: accuracy, balanced_accuracy, hard_negative.accuracy, label_exact_match,
  n_cases, and per language language.<code>.balanced_accuracy and language.<code>.hard_negative.accuracy.
"""

from __future__ import annotations

from collections.abc import Mapping

from textguard.evaluation.naming import parse_classification, parse_fpr_measure, parse_suite

_MACRO = ("f1", "precision", "recall", "pr_auc", "roc_auc")
_MICRO = ("f1", "ece")
_PER_LABEL = ("f1", "pr_auc")
_PERTURBATION = ("delta.macro_f1", "flip_rate")
_SUITE_WHOLE = ("accuracy", "balanced_accuracy", "label_exact_match", "n_cases")


def is_headline(name: str) -> bool:
    if name.startswith("perturb."):
        return name.split(".", 2)[-1] in _PERTURBATION
    suite = parse_suite(name)
    if suite is not None:
        if suite.group == "all":
            return suite.measure in _SUITE_WHOLE
        if suite.group == "hard_negative":
            return suite.measure == "accuracy"
        if suite.group == "language":
            return (suite.subgroup is None and suite.measure == "balanced_accuracy") or (
                suite.subgroup == "hard_negative" and suite.measure == "accuracy"
            )
        return False
    parsed = parse_classification(name)
    if parsed is None or parsed.scope:
        return False
    if parsed.measure == "n_rows":
        return True
    if parsed.average == "macro":
        return parsed.measure in _MACRO or parse_fpr_measure(parsed.measure) is not None
    if parsed.average == "micro":
        return parsed.measure in _MICRO
    return parsed.measure in _PER_LABEL


def headline(metrics: Mapping[str, float]) -> dict[str, float]:
    """The headline subset of an evaluation's metrics, in name order."""
    return {name: metrics[name] for name in sorted(metrics) if is_headline(name)}
