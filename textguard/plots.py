"""Figures for training and evaluation reports: PR curves, confusion matrices, reliability diagrams.

Every function takes plain arrays and returns a `matplotlib.figure.Figure` built without pyplot, so no
global backend state is touched (works headless, in threads and in tests); save it with `save_figure`
or hand it to `TrainingRun.log_figure`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

FIGURE_DPI = 110


def _figure(columns: int, width: float = 4.2, height: float = 3.8) -> tuple[Any, list[Any]]:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width * columns, height), dpi=FIGURE_DPI, layout="constrained")
    axes = figure.subplots(1, columns, squeeze=False)[0]
    return figure, list(axes)


def pr_curve(y_true: np.ndarray, probs: np.ndarray, labels: Sequence[str], title: str = "") -> Any:
    """Precision-recall curve per label (one panel each, average precision in the legend)."""
    from textguard.evaluation.measures import average_precision, pr_curve_points

    y_true, probs = np.asarray(y_true), np.asarray(probs)
    figure, axes = _figure(len(labels))
    for column, (axis, label) in enumerate(zip(axes, labels, strict=True)):
        truth, scores = y_true[:, column], probs[:, column]
        if truth.sum() == 0:
            axis.text(0.5, 0.5, "no positives", ha="center", va="center")
        else:
            recall, precision = pr_curve_points(truth, scores)
            ap = float(average_precision(truth, scores)[0])
            axis.plot(recall, precision, drawstyle="steps-pre", label=f"AP {ap:.3f}")
            axis.axhline(truth.mean(), linestyle=":", color="grey", label=f"base rate {truth.mean():.3f}")
            axis.legend(loc="lower left")
        axis.set(title=label, xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02))
    if title:
        figure.suptitle(title)
    return figure


def confusion_matrices(y_true: np.ndarray, y_pred: np.ndarray, labels: Sequence[str], title: str = "") -> Any:
    """One 2x2 confusion matrix per label (rows: truth, columns: prediction)."""
    y_true, y_pred = np.asarray(y_true).astype(bool), np.asarray(y_pred).astype(bool)
    figure, axes = _figure(len(labels), width=3.4, height=3.4)
    for column, (axis, label) in enumerate(zip(axes, labels, strict=True)):
        truth, pred = y_true[:, column], y_pred[:, column]
        matrix = np.array(
            [[np.sum(~truth & ~pred), np.sum(~truth & pred)], [np.sum(truth & ~pred), np.sum(truth & pred)]]
        )
        axis.imshow(matrix, cmap="Blues")
        for (row, col), count in np.ndenumerate(matrix):
            colour = "white" if count > matrix.max() / 2 else "black"
            axis.text(col, row, str(count), ha="center", va="center", color=colour)
        axis.set(title=label, xticks=[0, 1], yticks=[0, 1], xlabel="predicted", ylabel="true")
        axis.set_xticklabels(["no", "yes"])
        axis.set_yticklabels(["no", "yes"])
    if title:
        figure.suptitle(title)
    return figure


def reliability_diagram(
    y_true: np.ndarray,
    probs_by_name: Mapping[str, np.ndarray],
    n_bins: int | None = None,
    title: str = "",
) -> Any:
    """Observed frequency against mean predicted probability over all (text, label) cells.

    `probs_by_name` maps a legend name (e.g. "before temperature", "after") to probabilities [n, L].
    One point per non-empty bin of `measures.reliability_bins`: the bins of the ECE with the same
    `n_bins` (default: the ECE's default), so a figure never shows other bins than the ECE it labels.
    """
    from textguard.evaluation.measures import DEFAULT_ECE_BINS, reliability_bins

    bins = n_bins or DEFAULT_ECE_BINS
    truth = np.asarray(y_true, dtype=np.float64).ravel()
    figure, (axis,) = _figure(1, width=4.6, height=4.2)
    axis.plot([0, 1], [0, 1], linestyle=":", color="grey", label="perfect")
    for name, probs in probs_by_name.items():
        points = reliability_bins(truth, np.asarray(probs, dtype=np.float64).ravel(), bins)
        xs = [point["mean_probability"] for point in points]
        ys = [point["observed_frequency"] for point in points]
        axis.plot(xs, ys, marker="o", label=name)
    axis.set(
        xlabel=f"mean predicted probability ({bins} equal-width bins)",
        ylabel="observed frequency",
        xlim=(0, 1),
        ylim=(0, 1),
    )
    axis.legend(loc="upper left")
    if title:
        axis.set_title(title)
    return figure


def save_figure(figure: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png")
    return path
