"""Comparison figures (several runs in one plot). Single-run figures come from `textguard.plots`.

Built without pyplot (no global backend state), like `textguard.plots`; save them with
`textguard.plots.save_figure`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from textguard.evaluation.bootstrap import Difference, Interval
from textguard.evaluation.predictions import Partition

FIGURE_DPI = 110


def interval_chart(
    names: Sequence[str], runs: Sequence[str], intervals: Sequence[Sequence[Interval]], title: str = ""
) -> Any:
    """Each metric (rows) with one marker and 95% CI bar per run."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7.5, 0.45 * len(names) + 1.4), dpi=FIGURE_DPI, layout="constrained")
    axis = figure.subplots()
    offsets = np.linspace(-0.25, 0.25, len(runs)) if len(runs) > 1 else np.zeros(1)
    for run_index, run in enumerate(runs):
        ys = np.arange(len(names)) + offsets[run_index]
        values = np.array([intervals[row][run_index].value for row in range(len(names))])
        lows = np.array([intervals[row][run_index].low for row in range(len(names))])
        highs = np.array([intervals[row][run_index].high for row in range(len(names))])
        errors = np.vstack([np.nan_to_num(values - lows), np.nan_to_num(highs - values)])
        axis.errorbar(values, ys, xerr=errors, fmt="o", capsize=3, label=run)
    axis.set_yticks(np.arange(len(names)))
    axis.set_yticklabels(list(names))
    axis.invert_yaxis()
    axis.set_xlabel("value (95% bootstrap CI)")
    axis.legend(loc="best", fontsize="small")
    if title:
        axis.set_title(title)
    return figure


def delta_chart(names: Sequence[str], differences: Sequence[Difference], title: str = "") -> Any:
    """Paired difference (run - reference) per metric with its 95% CI; red where significant."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7.5, 0.4 * len(names) + 1.4), dpi=FIGURE_DPI, layout="constrained")
    axis = figure.subplots()
    ys = np.arange(len(names))
    deltas = np.array([d.delta for d in differences])
    errors = np.vstack(
        [
            np.nan_to_num(deltas - np.array([d.low for d in differences])),
            np.nan_to_num(np.array([d.high for d in differences]) - deltas),
        ]
    )
    colours = ["tab:red" if d.low > 0 or d.high < 0 else "tab:grey" for d in differences]
    axis.barh(ys, np.nan_to_num(deltas), xerr=errors, color=colours, capsize=3)
    axis.axvline(0.0, color="black", linewidth=0.8)
    axis.set_yticks(ys)
    axis.set_yticklabels(list(names))
    axis.invert_yaxis()
    axis.set_xlabel("difference vs reference (95% paired bootstrap CI)")
    if title:
        axis.set_title(title)
    return figure


def pr_overlay(parts: Sequence[Partition], runs: Sequence[str], title: str = "") -> Any:
    """PR curves of every run, one panel per label, on the same rows."""
    from matplotlib.figure import Figure

    from textguard.evaluation.measures import average_precision, pr_curve_points

    labels = parts[0].labels
    figure = Figure(figsize=(4.2 * len(labels), 3.8), dpi=FIGURE_DPI, layout="constrained")
    axes = figure.subplots(1, len(labels), squeeze=False)[0]
    for column, (axis, label) in enumerate(zip(axes, labels, strict=True)):
        truth = parts[0].gold[:, column] == 1.0
        if not truth.any():
            axis.text(0.5, 0.5, "no positives", ha="center", va="center")
        else:
            for part, run in zip(parts, runs, strict=True):
                recall, precision = pr_curve_points(truth, part.probs[:, column])
                ap = float(average_precision(truth, part.probs[:, column])[0])
                axis.plot(recall, precision, drawstyle="steps-pre", label=f"{run} (AP {ap:.3f})")
            axis.legend(loc="lower left", fontsize="small")
        axis.set(title=label, xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02))
    if title:
        figure.suptitle(title)
    return figure


def reliability_per_label(
    gold: np.ndarray, probs: np.ndarray, labels: Sequence[str], n_bins: int, title: str = ""
) -> Any:
    """One reliability panel per label (mean probability vs observed frequency per non-empty bin)."""
    from matplotlib.figure import Figure

    from textguard.evaluation.measures import reliability_bins

    figure = Figure(figsize=(3.6 * len(labels), 3.6), dpi=FIGURE_DPI, layout="constrained")
    axes = figure.subplots(1, len(labels), squeeze=False)[0]
    for column, (axis, label) in enumerate(zip(axes, labels, strict=True)):
        bins = reliability_bins(gold[:, column], probs[:, column], n_bins)
        axis.plot([0, 1], [0, 1], linestyle=":", color="grey")
        axis.plot(
            [item["mean_probability"] for item in bins],
            [item["observed_frequency"] for item in bins],
            marker="o",
        )
        axis.set(
            title=label,
            xlabel="mean predicted probability",
            ylabel="observed frequency",
            xlim=(0, 1),
            ylim=(0, 1),
        )
    if title:
        figure.suptitle(title)
    return figure
