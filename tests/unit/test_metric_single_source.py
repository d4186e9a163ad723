"""Each metric has one implementation (textguard/evaluation/measures.py) and it agrees with scikit-learn.

The import check reads every library module: no metric function is defined twice, no module computes a
metric formula or a calibration binning inline, nothing imports scikit-learn's metrics, and every
consumer (the evaluate modules loaded by path, training, calibration, figures, compare and the gate)
reaches the same `measures` module object.
"""

from __future__ import annotations

import ast
import importlib
import re
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn import metrics as skm

import textguard
from textguard.evaluation import measures, modules

LIBRARY = Path(textguard.__file__).parent
MEASURES = LIBRARY / "evaluation" / "measures.py"
#: Function names that would be (re)implementations of a metric.
METRIC_NAMES = re.compile(
    r"^_?(f1|f1_score|precision|recall|roc_auc|average_precision|pr_auc|auc|expected_calibration_error"
    r"|calibration_error|ece|brier(_score)?|accuracy|balanced|balanced_accuracy|bin_index|reliability_bins"
    r"|recall_at_fpr|confusion_counts)$"
)
#: Formulas and binning rules written inline instead of called.
INLINE = {
    "F1 from precision and recall": re.compile(r"2(\.0)?\s*\*\s*(precision|prec|p)\s*\*\s*(recall|rec|r)\b"),
    "precision/recall from counts": re.compile(r"\btp\s*/\s*\(\s*tp\s*\+\s*(fp|fn)\b"),
    "probability binning": re.compile(r"\*\s*n_bins\)?\s*\)?\.astype|np\.digitize|np\.histogram"),
    "trapezoid AUC": re.compile(r"np\.trapz|np\.trapezoid"),
    "cumulative PR/ROC counts": re.compile(r"np\.cumsum\([^)]*(truth|gold|label)"),
}


def _library_files() -> list[Path]:
    return sorted(path for path in LIBRARY.rglob("*.py") if path != MEASURES)


def test_no_second_implementation_of_any_metric() -> None:
    problems = []
    for path in _library_files():
        source = path.read_text(encoding="utf-8")
        tree = ast.parse(source)
        where = path.relative_to(LIBRARY.parent)
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                ("sklearn.metrics", "sklearn.calibration")
            ):
                problems.append(f"{where}: imports {node.module}")
            if isinstance(node, ast.Import) and any(
                alias.name.startswith(("sklearn.metrics", "sklearn.calibration")) for alias in node.names
            ):
                problems.append(f"{where}: imports scikit-learn metrics")
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and METRIC_NAMES.match(node.name):
                body = ast.get_source_segment(source, node) or ""
                if "measures." not in body:
                    problems.append(f"{where}:{node.lineno}: {node.name}() does not delegate to measures")
        for what, pattern in INLINE.items():
            for match in pattern.finditer(source):
                line = source.count("\n", 0, match.start()) + 1
                problems.append(f"{where}:{line}: {what} written inline")
    assert problems == []


def test_every_consumer_uses_the_same_measures_module() -> None:
    for name in (
        "textguard.calibration",
        "textguard.training.metrics",
        "textguard.evaluation.named_metrics",
        "textguard.evaluation.compare",
        "textguard.evaluation.runner",
        "textguard.evaluation.metrics.calibration_ece.calibration_ece",
    ):
        module = importlib.import_module(name) if "metrics." not in name else None
        if module is not None:
            assert getattr(module, "measures", measures) is measures, name
    # The evaluate modules are loaded by path (a copy in evaluate's module cache), offline, and still
    # call this package's implementation.
    for name in modules.METRIC_MODULES:
        loaded = modules.load_metric(name)
        script = sys.modules[type(loaded).__module__]
        assert script.measures is measures, name
        assert "measures." in ast.get_source_segment(
            Path(script.__file__).read_text(encoding="utf-8"),
            next(
                node
                for node in ast.walk(ast.parse(Path(script.__file__).read_text(encoding="utf-8")))
                if isinstance(node, ast.FunctionDef) and node.name == "_compute"
            ),
        )


def _scores(seed: int, n: int = 500) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    gold = (rng.random((n, 3)) < [0.25, 0.1, 0.5]).astype(int)
    probs = np.clip(0.3 * gold + 0.7 * rng.random((n, 3)), 0.0, 1.0)
    return gold, probs


@pytest.mark.parametrize("seed", [0, 1])
def test_training_metrics_equal_scikit_learn_and_the_evaluate_modules(seed: int) -> None:
    from textguard.training.metrics import classification_metrics

    gold, probs = _scores(seed)
    thresholds = [0.5, 0.4, 0.6]
    decisions = probs >= np.asarray(thresholds)
    training = classification_metrics(gold, probs, thresholds, ["a", "b", "c"])
    evaluation = modules.classification_metrics(gold, probs, decisions, ["a", "b", "c"])
    assert training["macro_f1"] == pytest.approx(skm.f1_score(gold, decisions, average="macro"))
    assert training["micro_f1"] == pytest.approx(skm.f1_score(gold, decisions, average="micro"))
    for j, label in enumerate("abc"):
        assert training[f"pr_auc_{label}"] == pytest.approx(
            skm.average_precision_score(gold[:, j], probs[:, j])
        )
        assert training[f"roc_auc_{label}"] == pytest.approx(skm.roc_auc_score(gold[:, j], probs[:, j]))
    shared = set(training) & set(evaluation)
    assert {"macro_f1", "micro_f1", "macro_pr_auc", "f1_a", "recall_b", "precision_c"} <= shared
    assert all(training[name] == pytest.approx(evaluation[name]) for name in shared)


def test_ece_equals_the_one_from_scikit_learns_calibration_curve() -> None:
    from sklearn.calibration import calibration_curve

    gold, probs = _scores(2, n=2000)
    y, p = gold.ravel(), probs.ravel()
    for n_bins in (10, 15):
        observed, predicted = calibration_curve(y, p, n_bins=n_bins, strategy="uniform")
        # Same equal-width bins (no probability lies exactly on an edge here); weights = bin shares.
        counts = np.bincount(np.clip((p * n_bins).astype(int), 0, n_bins - 1), minlength=n_bins)
        shares = counts[counts > 0] / len(p)
        expected = float(np.sum(shares * np.abs(predicted - observed)))
        assert measures.expected_calibration_error(y, p, n_bins=n_bins)[0] == pytest.approx(expected)
        bins = measures.reliability_bins(y, p, n_bins)
        np.testing.assert_allclose([b["observed_frequency"] for b in bins], observed)
        np.testing.assert_allclose([b["mean_probability"] for b in bins], predicted)


def test_functional_accuracies_equal_scikit_learn() -> None:
    rng = np.random.default_rng(3)
    hateful = rng.random(300) < 0.6
    flagged = np.where(rng.random(300) < 0.8, hateful, ~hateful)
    functionality = np.where(hateful, "threat_h", np.where(rng.random(300) < 0.5, "negation_nh", "other"))
    language = rng.choice(["en", "fr", "ar"], size=300)
    report = modules.functional_metrics(flagged, hateful, functionality.tolist(), language.tolist())
    assert report["accuracy"] == pytest.approx(skm.accuracy_score(hateful, flagged))
    assert report["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(hateful, flagged))
    for code in ("en", "fr", "ar"):
        rows = language == code
        values = report["language"][code]
        assert values["balanced_accuracy"] == pytest.approx(
            skm.balanced_accuracy_score(hateful[rows], flagged[rows])
        )
        hard = rows & (functionality == "negation_nh")
        assert values["hard_negative_accuracy"] == pytest.approx(
            skm.accuracy_score(hateful[hard], flagged[hard])
        )
        assert values["hard_negative_n_cases"] == hard.sum()
        cell = report["functionality_language"]["negation_nh"][code]
        assert cell["accuracy"] == pytest.approx(values["hard_negative_accuracy"])


def test_pr_curve_points_are_scikit_learns_curve() -> None:
    gold, probs = _scores(4)
    recall, precision = measures.pr_curve_points(gold[:, 0], probs[:, 0])
    sk_precision, sk_recall, _ = skm.precision_recall_curve(gold[:, 0], probs[:, 0])
    # scikit-learn lists the points from low to high threshold and ends at (recall 0, precision 1).
    np.testing.assert_allclose(recall[1:], sk_recall[:-1][::-1])
    np.testing.assert_allclose(precision[1:], sk_precision[:-1][::-1])
    # The step sum over these points is the average precision.
    assert np.sum(np.diff(recall) * precision[1:]) == pytest.approx(
        skm.average_precision_score(gold[:, 0], probs[:, 0])
    )


def test_training_reliability_figure_draws_the_bins_of_the_ece_it_labels(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from textguard import plots
    from textguard.calibration import calibrate
    from textguard.postprocess import sigmoid
    from textguard.training.report import EvaluatedSplit, reliability_figure

    rng = np.random.default_rng(5)
    logits = rng.normal(0, 3, size=(600, 3))
    labels = (rng.random((600, 3)) < sigmoid(logits / 2.5)).astype(float)
    calibration = calibrate(logits, labels, ["a", "b", "c"])
    figures: list[object] = []
    monkeypatch.setattr(plots, "save_figure", lambda figure, path: figures.append(figure) or path)
    reliability_figure(EvaluatedSplit("validation", logits, labels, {}), calibration, tmp_path)
    (axis,) = figures[0].axes  # type: ignore[attr-defined]
    curves = [line for line in axis.get_lines() if line.get_label() != "perfect"]
    assert len(curves) == 2 and f"{calibration.ece_bins} bins" in axis.get_title()
    for line, probs, ece in (
        (curves[0], sigmoid(logits), calibration.ece_before),
        (curves[1], sigmoid(logits / calibration.temperature), calibration.ece_after),
    ):
        bins = measures.reliability_bins(labels.ravel(), probs.ravel(), calibration.ece_bins)
        assert len(line.get_xdata()) == len(bins)
        # The ECE in the legend is the weighted gap of exactly the points drawn.
        gap = (
            sum(b["count"] * abs(b["mean_probability"] - b["observed_frequency"]) for b in bins) / labels.size
        )
        assert gap == pytest.approx(ece) and f"ECE {ece:.3f}" in str(line.get_label())
