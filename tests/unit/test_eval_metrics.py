"""The evaluation metric modules and their arithmetic agree with scikit-learn on the same predictions."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from textguard.evaluation import measures, modules, naming
from textguard.evaluation.named_metrics import metric_function
from textguard.evaluation.predictions import CLEAN, build_frame, partitions

LABELS = ["a", "b", "c"]


def _data(seed: int, n: int = 400) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    gold = (rng.random((n, 3)) < [0.3, 0.1, 0.5]).astype(int)
    # Informative but noisy scores, rounded so that ties occur (tie handling is where AP/ROC code breaks).
    probs = np.clip(np.round(0.35 * gold + rng.random((n, 3)) * 0.65, 2), 0.0, 1.0)
    return gold, probs, probs >= 0.5


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_classification_metrics_agree_with_sklearn(seed: int) -> None:
    gold, probs, decisions = _data(seed)
    got = modules.classification_metrics(gold, probs, decisions, LABELS, max_fpr=0.05)
    precision, recall, f1, support = skm.precision_recall_fscore_support(
        gold, decisions, zero_division=np.nan
    )
    for j, label in enumerate(LABELS):
        assert got[f"precision_{label}"] == pytest.approx(precision[j])
        assert got[f"recall_{label}"] == pytest.approx(recall[j])
        assert got[f"f1_{label}"] == pytest.approx(f1[j])
        assert got[f"support_{label}"] == support[j]
        assert got[f"pr_auc_{label}"] == pytest.approx(skm.average_precision_score(gold[:, j], probs[:, j]))
        assert got[f"roc_auc_{label}"] == pytest.approx(skm.roc_auc_score(gold[:, j], probs[:, j]))
        fpr, tpr, _ = skm.roc_curve(gold[:, j], probs[:, j], drop_intermediate=False)
        assert got[f"recall_at_fpr_5pct_{label}"] == pytest.approx(tpr[fpr <= 0.05].max())
    for average in ("macro", "micro"):
        assert got[f"{average}_f1"] == pytest.approx(skm.f1_score(gold, decisions, average=average))
        assert got[f"{average}_precision"] == pytest.approx(
            skm.precision_score(gold, decisions, average=average)
        )
        assert got[f"{average}_recall"] == pytest.approx(skm.recall_score(gold, decisions, average=average))
        assert got[f"{average}_pr_auc"] == pytest.approx(
            skm.average_precision_score(gold, probs, average=average)
        )
        assert got[f"{average}_roc_auc"] == pytest.approx(skm.roc_auc_score(gold, probs, average=average))
    assert got["n_rows"] == len(gold)


def test_micro_ece_is_the_training_calibration_ece() -> None:
    from textguard.calibration import calibration_error

    gold, probs, decisions = _data(3)
    got = modules.classification_metrics(gold, probs, decisions, LABELS, ece_bins=15)
    assert got["micro_ece"] == pytest.approx(calibration_error(probs, gold, n_bins=15))
    for j, label in enumerate(LABELS):
        assert got[f"ece_{label}"] == pytest.approx(calibration_error(probs[:, j], gold[:, j], n_bins=15))
    assert got["macro_ece"] == pytest.approx(np.mean([got[f"ece_{label}"] for label in LABELS]))


def test_undefined_values_are_left_out_not_zero() -> None:
    gold, probs, decisions = _data(4, n=60)
    gold[:, 1] = 0  # label b never occurs in this slice
    decisions[:, 2] = False  # label c is never predicted
    got = modules.classification_metrics(gold, probs, decisions, LABELS)
    assert "recall_b" not in got and "pr_auc_b" not in got and "roc_auc_b" not in got
    assert "precision_c" not in got and got["recall_c"] == 0.0
    # Macro over the labels where the value is defined: scikit-learn with zero_division=nan.
    assert got["macro_recall"] == pytest.approx(
        skm.recall_score(gold, decisions, average="macro", zero_division=np.nan)
    )
    assert got["macro_pr_auc"] == pytest.approx(
        np.mean([skm.average_precision_score(gold[:, j], probs[:, j]) for j in (0, 2)])
    )


def test_modules_load_by_path_from_the_package() -> None:
    import evaluate

    for name in modules.METRIC_MODULES:
        path = modules.metric_path(name)
        assert (path / f"{name}.py").is_file()
    # Both forms evaluate.load accepts: the module directory and the script itself.
    script = evaluate.load(
        str(modules.metric_path("recall_at_fpr") / "recall_at_fpr.py"), keep_in_memory=True
    )
    result = script.compute(predictions=[[0.9], [0.5], [0.4]], references=[[1], [0], [1]], max_fpr=0.0)
    assert result["recall_at_fpr_0pct_label_0"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="unknown metric module"):
        modules.metric_path("accuracy")


def test_weights_are_repeated_rows() -> None:
    """A bootstrap weight k must mean "this row drawn k times": the basis of every confidence interval."""
    gold, probs, decisions = _data(5, n=80)
    weights = np.random.default_rng(0).integers(0, 4, size=80)
    repeated = np.repeat(np.arange(80), weights)
    y, s, d = gold[:, 0], probs[:, 0], decisions[:, 0]
    for function in (measures.average_precision, measures.roc_auc):
        assert function(y, s, weights)[0] == pytest.approx(function(y[repeated], s[repeated])[0])
    assert measures.recall_at_fpr(y, s, 0.1, weights)[0] == pytest.approx(
        measures.recall_at_fpr(y[repeated], s[repeated], 0.1)[0]
    )
    assert measures.expected_calibration_error(y, s, weights)[0] == pytest.approx(
        measures.expected_calibration_error(y[repeated], s[repeated])[0]
    )
    counts = measures.confusion_counts(y, d, weights)
    assert measures.f1(counts)[0, 0] == pytest.approx(skm.f1_score(y[repeated], d[repeated]))


def test_named_metrics_reproduce_the_logged_values() -> None:
    gold, probs, decisions = _data(6, n=300)
    language = np.array(["en", "fr", "pt-BR"])[np.arange(300) % 3]
    frame = build_frame(
        CLEAN,
        [str(i) for i in range(300)],
        LABELS,
        gold,
        probs,
        decisions,
        {"language": language.tolist(), "source": ["chat"] * 300, "dataset": ["d"] * 300},
    )
    part = partitions(frame)[CLEAN]
    logged = modules.classification_metrics(gold, probs, decisions, LABELS)
    for name in ("macro_f1", "micro_pr_auc", "roc_auc_b", "recall_at_fpr_1pct_c", "macro_ece", "support_a"):
        assert metric_function(name).value(part) == pytest.approx(logged[name]), name
    rows = language == "pt-BR"
    in_slice = modules.classification_metrics(gold[rows], probs[rows], decisions[rows], LABELS)
    prefix = naming.slice_prefix("language", "pt-BR")
    assert prefix == "slice.language.pt-BR."
    for name in ("macro_f1", "f1_a", "pr_auc_c", "n_rows"):
        assert metric_function(prefix + name).value(part) == pytest.approx(in_slice[name]), name


def test_metric_names_parse_back() -> None:
    assert naming.fpr_measure(0.01) == "recall_at_fpr_1pct"
    assert naming.fpr_measure(0.005) == "recall_at_fpr_0p5pct"
    assert naming.parse_fpr_measure("recall_at_fpr_0p5pct") == pytest.approx(0.005)
    parsed = naming.parse_classification("slice.language.fr.f1_violent_threat")
    assert parsed is not None and parsed.slice == ("language", "fr") and parsed.label == "violent_threat"
    perturbed = naming.parse_classification("perturb.leetspeak.macro_pr_auc")
    assert (
        perturbed is not None and perturbed.partition == "perturb:leetspeak" and perturbed.average == "macro"
    )
    suite = naming.parse_suite("suite.hatecheck_en.func.counter_quote_nh.accuracy")
    assert suite is not None and (suite.group, suite.value) == ("func", "counter_quote_nh")
    assert naming.parse_classification("perturb.leetspeak.delta.macro_f1") is None
    assert not naming.higher_is_better("slice.source.chat.macro_ece")
    assert naming.higher_is_better("suite.x.balanced_accuracy")
    with pytest.raises(Exception, match="not an evaluation metric name"):
        metric_function("accuracy_of_everything")
