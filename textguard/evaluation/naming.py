"""The metric-name grammar: one scheme for every evaluation run, so MLflow's compare view lines runs up.

    <name>    := [<scope>.]<metric>
    <scope>   := slice.<dimension>.<value>          rows of one language / source / dataset
               | perturb.<kind>                     the split with one perturbation applied
               | suite.<suite>                      a functional test suite (its own metric set)
    <metric>  := <measure>_<label>                  per label, e.g. f1_violent_threat (as training logs it)
               | macro_<measure> | micro_<measure>  averaged over labels, e.g. macro_f1
               | n_rows                             rows in scope
    <measure> := precision | recall | f1 | pr_auc | roc_auc | recall_at_fpr_<p>pct | ece
               | support (gold positives) | predicted (flagged rows)

Examples: `macro_f1`, `pr_auc_hate_dehumanization`, `slice.language.fr.macro_f1`,
`slice.source.caption.n_rows`, `perturb.leetspeak.macro_f1`, `perturb.leetspeak.delta.macro_f1`,
`suite.hatecheck_en.balanced_accuracy`, `suite.meeting_functional.func.counter_quote_nh.accuracy`,
`suite.meeting_functional.language.fr.balanced_accuracy`,
`suite.meeting_functional.language.fr.hard_negative.accuracy` (the `*_nh` cases in French).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: Lower is better for these; every other measure is higher-is-better.
LOWER_IS_BETTER = ("ece",)
AVERAGES = ("macro", "micro")
SLICE_DIMENSIONS = ("language", "source", "dataset")
ROW_COUNT = "n_rows"

_UNSAFE = re.compile(r"[^A-Za-z0-9_\-]+")


def safe(value: str) -> str:
    """A name component MLflow accepts and that cannot break the dotted grammar ('pt-BR' stays)."""
    cleaned = _UNSAFE.sub("_", str(value)).strip("_")
    return cleaned or "unknown"


def fpr_measure(max_fpr: float) -> str:
    """`recall_at_fpr_1pct` for 0.01, `recall_at_fpr_0p5pct` for 0.005."""
    percent = f"{max_fpr * 100:g}".replace(".", "p")
    return f"recall_at_fpr_{percent}pct"


def parse_fpr_measure(measure: str) -> float | None:
    """0.01 for `recall_at_fpr_1pct`; None when `measure` is not a recall-at-FPR measure."""
    match = re.fullmatch(r"recall_at_fpr_([0-9]+(?:p[0-9]+)?)pct", measure)
    return float(match.group(1).replace("p", ".")) / 100.0 if match else None


def per_label(measure: str, label: str) -> str:
    return f"{measure}_{label}"


def averaged(average: str, measure: str) -> str:
    return f"{average}_{measure}"


def slice_prefix(dimension: str, value: str) -> str:
    return f"slice.{dimension}.{safe(value)}."


def perturb_prefix(kind: str) -> str:
    return f"perturb.{kind}."


def suite_prefix(suite: str) -> str:
    return f"suite.{safe(suite)}."


@dataclass(frozen=True)
class ClassificationName:
    """A parsed classification metric: scope + measure + (label or average)."""

    scope: str  # "" (whole split), "slice.language.fr", "perturb.leetspeak"
    measure: str
    label: str | None
    average: str | None

    @property
    def slice(self) -> tuple[str, str] | None:
        if not self.scope.startswith("slice."):
            return None
        _, dimension, value = self.scope.split(".", 2)
        return dimension, value

    @property
    def partition(self) -> str:
        """Which prediction partition the metric is computed on."""
        if self.scope.startswith("perturb."):
            return "perturb:" + self.scope.split(".", 1)[1]
        return "clean"


#: Measures that take a label suffix (`f1_violent_threat`) or an average prefix (`macro_f1`).
MEASURES = ("precision", "recall", "f1", "pr_auc", "roc_auc", "ece", "support", "predicted")
#: Per-label counts: no macro/micro form.
COUNTS = ("support", "predicted")
_FPR_MEASURE = re.compile(r"recall_at_fpr_[0-9]+(?:p[0-9]+)?pct")


def _split_measure(rest: str) -> tuple[str, str] | None:
    """`recall_at_fpr_1pct_x` -> (recall_at_fpr_1pct, x): the longest known measure wins over its prefixes."""
    match = _FPR_MEASURE.match(rest)
    if match and rest[match.end() : match.end() + 1] == "_":
        return match.group(0), rest[match.end() + 1 :]
    for measure in sorted(MEASURES, key=len, reverse=True):
        if rest.startswith(measure + "_") and len(rest) > len(measure) + 1:
            return measure, rest[len(measure) + 1 :]
    return None


def _is_measure(measure: str) -> bool:
    return measure in MEASURES or bool(_FPR_MEASURE.fullmatch(measure))


def parse_classification(name: str) -> ClassificationName | None:
    """Parse a classification metric name; None for names outside that part of the grammar.

    Labels are whatever follows the measure, so models with another label set parse too.
    """
    scope = ""
    rest = name
    if name.startswith("slice."):
        parts = name.split(".")
        if len(parts) < 4:
            return None
        scope, rest = ".".join(parts[:3]), ".".join(parts[3:])
    elif name.startswith("perturb."):
        parts = name.split(".")
        if len(parts) != 3:
            return None
        scope, rest = ".".join(parts[:2]), parts[2]
    elif "." in name:
        return None
    if rest == ROW_COUNT:
        return ClassificationName(scope, ROW_COUNT, None, None)
    for average in AVERAGES:
        measure = rest[len(average) + 1 :]
        if rest.startswith(average + "_") and _is_measure(measure) and measure not in COUNTS:
            return ClassificationName(scope, rest[len(average) + 1 :], None, average)
    split = _split_measure(rest)
    if split is None:
        return None
    return ClassificationName(scope, split[0], split[1], None)


def higher_is_better(name: str) -> bool:
    parsed = parse_classification(name)
    return parsed is None or parsed.measure not in LOWER_IS_BETTER


@dataclass(frozen=True)
class SuiteName:
    """A parsed suite metric: `suite.<suite>.<group>` where group is one of SUITE_GROUPS' forms."""

    suite: str
    group: str  # "all", "hateful", "non_hateful", "hard_negative", "func", "language"
    value: str | None  # the functionality or language for "func" / "language"
    measure: str  # "accuracy", "balanced_accuracy", "label_exact_match", "n_cases"
    #: Within one language: "hateful", "non_hateful" or "hard_negative" cases only.
    subgroup: str | None = None


SUITE_SUMMARY_GROUPS = ("hateful", "non_hateful", "hard_negative")
SUITE_MEASURES = ("accuracy", "balanced_accuracy", "label_exact_match", "n_cases")


def suite_metric(
    suite: str, measure: str, group: str = "all", value: str | None = None, subgroup: str | None = None
) -> str:
    """`suite.<suite>[.<group>[.<value>][.<subgroup>]].<measure>`, e.g.
    suite.meeting_multilingual.language.fr.hard_negative.accuracy."""
    prefix = suite_prefix(suite)
    if group == "all":
        return f"{prefix}{measure}"
    if group in SUITE_SUMMARY_GROUPS:
        return f"{prefix}{group}.{measure}"
    within = f"{subgroup}." if subgroup else ""
    return f"{prefix}{group}.{safe(value or '')}.{within}{measure}"


def parse_suite(name: str) -> SuiteName | None:
    parts = name.split(".")
    if len(parts) < 3 or parts[0] != "suite" or parts[-1] not in SUITE_MEASURES:
        return None
    suite, middle, measure = parts[1], parts[2:-1], parts[-1]
    if not middle:
        return SuiteName(suite, "all", None, measure)
    if len(middle) == 1 and middle[0] in SUITE_SUMMARY_GROUPS:
        return SuiteName(suite, middle[0], None, measure)
    if len(middle) == 2 and middle[0] in ("func", "language"):
        return SuiteName(suite, middle[0], middle[1], measure)
    if len(middle) == 3 and middle[0] == "language" and middle[2] in SUITE_SUMMARY_GROUPS:
        return SuiteName(suite, "language", middle[1], measure, subgroup=middle[2])
    return None
