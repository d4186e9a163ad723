"""Bootstrap, paired tests, `compare` and the regression gate on synthetic per-row predictions (no model)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import binomtest

from textguard.errors import ConfigError, TextguardError
from textguard.evaluation.bootstrap import bootstrap, resample_weights
from textguard.evaluation.compare import RunInfo, compare_predictions
from textguard.evaluation.compare_report import write_report
from textguard.evaluation.config import GateConfig
from textguard.evaluation.gate import check_inputs, check_regression
from textguard.evaluation.named_metrics import metric_function
from textguard.evaluation.predictions import CLEAN, build_frame, partitions, suite_partition
from textguard.labels import LABELS

N = 400


def _gold(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.random((N, len(LABELS))) < 0.3).astype(float)


def _model(gold: np.ndarray, seed: int, noise: float = 0.35) -> np.ndarray:
    """Probabilities that track gold with label noise: a decent, imperfect model."""
    rng = np.random.default_rng(seed)
    return np.clip(0.25 + 0.5 * gold + rng.normal(0, noise, gold.shape), 0, 1)


def _frame(gold: np.ndarray, probs: np.ndarray, never: str | None = None) -> pd.DataFrame:
    decisions = probs >= 0.5
    if never is not None:
        decisions[:, LABELS.index(never)] = False
    frame = build_frame(
        CLEAN,
        [f"row-{i}" for i in range(N)],
        LABELS,
        gold,
        probs,
        decisions,
        {
            "language": ["en" if i % 4 else "fr" for i in range(N)],
            "source": ["chat" if i % 2 else "caption" for i in range(N)],
            "dataset": ["d1"] * N,
        },
    )
    suite = build_frame(
        suite_partition("toy_suite"),
        [f"case-{i}" for i in range(60)],
        LABELS,
        np.full((60, len(LABELS)), np.nan),
        probs[:60],
        decisions[:60],
        {
            "language": ["en"] * 60,
            "functionality": ["threat_h" if i % 2 else "counter_nh" for i in range(60)],
            "hateful": [float(i % 2) for i in range(60)],
        },
    )
    return pd.concat([frame, suite], ignore_index=True)


RUNS = [RunInfo("a" * 32, "champion"), RunInfo("b" * 32, "candidate")]


def test_resampling_is_seeded_and_counts_rows() -> None:
    first = np.vstack(list(resample_weights(50, 250, seed=3, partition=CLEAN)))
    again = np.vstack(list(resample_weights(50, 250, seed=3, partition=CLEAN)))
    other = np.vstack(list(resample_weights(50, 250, seed=4, partition=CLEAN)))
    assert first.shape == (250, 50) and np.array_equal(first, again) and not np.array_equal(first, other)
    assert np.all(first.sum(axis=1) == 50)


def test_identical_runs_have_no_winner_and_p_one() -> None:
    gold = _gold()
    frame = _frame(gold, _model(gold, 1))
    comparison = compare_predictions(RUNS, [frame, frame.copy()], resamples=200)
    assert comparison.rows and all(row.winners == [None] for row in comparison.rows)
    defined = [row for row in comparison.rows if not np.isnan(row.differences[0].p_value)]
    assert defined and all(row.differences[0].p_value == 1.0 for row in defined)
    assert all(item.p_value == 1.0 for item in comparison.mcnemar)


def test_planted_label_regression_is_a_significant_loss_on_that_label_only() -> None:
    gold = _gold()
    probs = _model(gold, 1)
    comparison = compare_predictions(
        RUNS, [_frame(gold, probs), _frame(gold, probs, never="violent_threat")], resamples=400, seed=1
    )
    rows = {row.name: row for row in comparison.rows}
    loss = rows["f1_violent_threat"]
    assert loss.differences[0].delta < -0.5 and loss.differences[0].high < 0
    assert loss.adjusted_p[0] < 0.05 and loss.winners == [0]
    assert rows["macro_f1"].winners == [0]
    # Scores are unchanged, so every ranking metric ties; other labels' decisions are untouched.
    assert rows["pr_auc_violent_threat"].differences[0].delta == 0 and rows[
        "pr_auc_violent_threat"
    ].winners == [None]
    assert rows["f1_hate_dehumanization"].winners == [None]
    assert rows["slice.language.fr.macro_f1"].winners == [0]
    mcnemar = {(m.partition, m.label): m for m in comparison.mcnemar}
    planted = mcnemar[(CLEAN, "violent_threat")]
    assert planted.run_only_correct > 0 or planted.reference_only_correct > 0
    assert planted.p_value == pytest.approx(
        binomtest(
            planted.reference_only_correct, planted.reference_only_correct + planted.run_only_correct
        ).pvalue
    )
    assert mcnemar[(CLEAN, "extremist_glorification")].p_value == 1.0
    wins = {(w["section"]): w for w in comparison.wins()}
    assert wins["labels"]["losses"] >= 1 and wins["labels"]["wins"] == 0


def test_confidence_intervals_cover_the_estimate_and_shrink_with_data() -> None:
    gold = _gold()
    part = partitions(_frame(gold, _model(gold, 2)))[CLEAN]
    metric = metric_function("macro_f1")
    result = bootstrap([metric], [{CLEAN: part}], resamples=300, seed=0)
    interval = result.intervals["macro_f1"][0]
    assert interval.low <= interval.value <= interval.high
    name = "slice.language.fr.macro_f1"
    small = bootstrap([metric_function(name)], [{CLEAN: part}], resamples=300, seed=0).intervals[name][0]
    assert small.high - small.low > interval.high - interval.low  # a quarter of the rows: a wider interval


def test_report_is_markdown_html_and_json(tmp_path: Path) -> None:
    gold = _gold()
    probs = _model(gold, 1)
    comparison = compare_predictions(
        RUNS,
        [_frame(gold, probs), _frame(gold, probs, never="violent_threat")],
        resamples=200,
        min_slice_rows=50,
    )
    paths = write_report(comparison, tmp_path / "report")
    markdown = paths["markdown"].read_text(encoding="utf-8")
    page = paths["html"].read_text(encoding="utf-8")
    assert "## Per label" in markdown and "f1_violent_threat" in markdown and "McNemar" in markdown
    assert page.count("data:image/png;base64,") >= 3 and "plots/" not in page.split("<body>", 1)[1]
    data = json.loads(paths["json"].read_text(encoding="utf-8"))
    assert data["reference"] == RUNS[0].run_id and data["resamples"] == 200
    row = next(item for item in data["metrics"] if item["name"] == "f1_violent_threat")
    assert row["differences"][0]["winner"] == RUNS[0].run_id


def test_runs_on_different_rows_are_refused_and_partial_overlap_is_noted() -> None:
    gold = _gold()
    frame = _frame(gold, _model(gold, 1))
    other = frame.copy()
    other["row_id"] = "x" + other["row_id"]
    with pytest.raises(TextguardError, match="share no rows"):
        compare_predictions(RUNS, [frame, other], resamples=100)
    fewer = frame[frame["row_id"] != "row-0"]
    comparison = compare_predictions(RUNS, [frame, fewer], resamples=100)
    assert comparison.common_rows[CLEAN] == N - 1
    assert any("rows all runs share" in note for note in comparison.notes)


def test_gate_passes_identical_models_and_fails_a_planted_regression() -> None:
    gold = _gold()
    probs = _model(gold, 1)
    config = GateConfig(min_slice_rows=80, resamples=200)
    same = check_regression(_frame(gold, probs), _frame(gold, probs), config)
    assert same.passed and "passed" in same.message()
    assert {"macro_f1", "slice.language.en.macro_f1", "slice.source.chat.macro_f1"} <= {
        c.metric for c in same.checks
    }
    failed = check_regression(_frame(gold, probs), _frame(gold, probs, never="violent_threat"), config)
    assert not failed.passed
    regressed = {check.metric for check in failed.failures}
    assert {"f1_violent_threat", "macro_f1"} <= regressed and "f1_hate_dehumanization" not in regressed
    assert "f1_violent_threat" in failed.message()


def test_gate_margin_and_significance() -> None:
    gold = _gold()
    probs = _model(gold, 1)
    # A small, mixed change on one label: 8 new false positives, 2 false negatives fixed (F1 -0.0075).
    worse = probs.copy()
    worse[np.flatnonzero((gold[:, 0] == 0) & (probs[:, 0] < 0.5))[:8], 0] = 0.6
    worse[np.flatnonzero((gold[:, 0] == 1) & (probs[:, 0] < 0.5))[:2], 0] = 0.6
    base, cand = _frame(gold, probs), _frame(gold, worse)
    strict = GateConfig(
        metrics=["f1_violent_threat"], slice_metrics=[], margin=0.0, require_significance=False
    )
    assert not check_regression(base, cand, strict).passed
    noisy = strict.model_copy(update={"require_significance": True, "resamples": 300})
    result = check_regression(base, cand, noisy)
    assert result.passed and "not significant" in result.checks[0].reason
    wide = strict.model_copy(update={"margins": {"f1_violent_threat": 0.5}})
    assert check_regression(base, cand, wide).passed


def test_gate_config_rejects_unknown_metrics_and_missing_partitions() -> None:
    with pytest.raises(ConfigError, match="not an evaluation metric name"):
        GateConfig(metrics=["f1score"])
    gold = _gold()
    frame = _frame(gold, _model(gold, 1))
    config = GateConfig(metrics=["perturb.leetspeak.macro_f1"], slice_metrics=[])
    with pytest.raises(ConfigError, match="perturb:leetspeak"):
        check_regression(frame, frame, config)
    # The CLI checks this before scoring anything.
    suite_gate = GateConfig(metrics=["suite.hatecheck_en.balanced_accuracy"])
    with pytest.raises(ConfigError, match=r"suite:hatecheck_en.*--suite"):
        check_inputs(suite_gate, ["meeting_functional"], ["typos"])
    check_inputs(suite_gate, ["hatecheck_en"], [])


def test_suite_metrics_follow_the_functional_definition() -> None:
    gold = _gold()
    part = partitions(_frame(gold, _model(gold, 1)))[suite_partition("toy_suite")]
    hateful = part.attributes["hateful"] == 1.0
    correct = part.flagged == hateful
    balanced = metric_function("suite.toy_suite.balanced_accuracy").value(part)
    assert balanced == pytest.approx((correct[hateful].mean() + correct[~hateful].mean()) / 2)
    assert metric_function("suite.toy_suite.hard_negative.accuracy").value(part) == pytest.approx(
        correct[~hateful].mean()
    )
    assert metric_function("suite.toy_suite.func.threat_h.accuracy").value(part) == pytest.approx(
        correct[hateful].mean()
    )


def test_shipped_evaluation_configs_are_valid() -> None:
    from textguard.evaluation.config import (
        DEFAULT_CONFIG,
        DEFAULT_GATE,
        load_evaluation_config,
        load_gate_config,
    )
    from textguard.paths import project_root

    settings = load_evaluation_config(project_root() / DEFAULT_CONFIG, ("max_fpr=0.005",))
    assert settings.max_fpr == 0.005 and settings.split == "test"
    gate = load_gate_config(project_root() / DEFAULT_GATE)
    assert "macro_f1" in gate.metrics and gate.margin_for("slice.language.fr.macro_pr_auc") == 0.01
    with pytest.raises(ConfigError, match="unknown key"):
        load_evaluation_config(project_root() / DEFAULT_CONFIG, ("max_fp=0.005",))
