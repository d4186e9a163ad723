"""Writing a `Comparison` out: Markdown, a self-contained HTML page (plots embedded as base64 PNG), JSON."""

from __future__ import annotations

import base64
import html
import json
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from textguard.evaluation.bootstrap import format_p
from textguard.evaluation.compare import SECTIONS, Comparison, MetricRow

SECTION_TITLES = {
    "overall": "Overall (averaged over labels)",
    "labels": "Per label",
    "slices": "Slices (language, source, dataset)",
    "robustness": "Robustness (perturbed copies of the split)",
    "suites": "Functional suites",
}


def fmt(value: float, signed: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:+.4f}" if signed else f"{value:.4f}"


def interval_text(row: MetricRow, run: int) -> str:
    item = row.intervals[run]
    if math.isnan(item.value):
        return "n/a"
    if math.isnan(item.low):
        return fmt(item.value)
    return f"{fmt(item.value)} [{fmt(item.low)}, {fmt(item.high)}]"


def delta_text(row: MetricRow, index: int) -> str:
    diff = row.differences[index]
    if math.isnan(diff.delta):
        return "n/a"
    if math.isnan(diff.low):
        return fmt(diff.delta, signed=True)
    return f"{fmt(diff.delta, True)} [{fmt(diff.low, True)}, {fmt(diff.high, True)}]"


def winner_text(comparison: Comparison, row: MetricRow, index: int) -> str:
    winner = row.winners[index]
    return "—" if winner is None else comparison.runs[winner].label


def header(comparison: Comparison) -> list[str]:
    columns = ["metric"] + [f"{run.label} ({run.short_id})" for run in comparison.runs]
    for run in comparison.runs[1:]:
        columns += [f"Δ {run.short_id} − {comparison.runs[0].short_id}", "p (Holm)", "winner"]
    return columns


def row_cells(comparison: Comparison, row: MetricRow) -> list[str]:
    cells = [row.name + ("" if row.higher_is_better else " ↓")]
    cells += [interval_text(row, index) for index in range(len(comparison.runs))]
    for index in range(len(comparison.runs) - 1):
        cells += [
            delta_text(row, index),
            format_p(row.adjusted_p[index]),
            winner_text(comparison, row, index),
        ]
    return cells


def _run_table(comparison: Comparison) -> tuple[list[str], list[list[str]]]:
    columns = ["", "run", "model", "base model", "data", "digest", "started"]
    rows = []
    for index, run in enumerate(comparison.runs):
        tags = run.tags
        rows.append(
            [
                "reference" if index == 0 else f"run {index}",
                run.run_id,
                run.label,
                tags.get("textguard.base_model", ""),
                f"{tags.get('textguard.data.name', '')}",
                tags.get("textguard.data.digest", ""),
                run.started,
            ]
        )
    return columns, rows


def _mcnemar_rows(comparison: Comparison) -> tuple[list[str], list[list[str]]]:
    columns = ["partition", "label", "run", "only reference right", "only run right", "p (exact)", "p (Holm)"]
    rows = [
        [
            item.partition,
            item.label,
            comparison.runs[item.run_index].label,
            str(item.reference_only_correct),
            str(item.run_only_correct),
            format_p(item.p_value),
            format_p(item.adjusted_p),
        ]
        for item in comparison.mcnemar
    ]
    return columns, rows


def _markdown_table(columns: list[str], rows: list[list[str]]) -> str:
    def clean(cell: str) -> str:
        return cell.replace("|", "\\|")

    lines = ["| " + " | ".join(clean(c) for c in columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(clean(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _explanation(comparison: Comparison) -> str:
    return (
        f"Values are point estimates with 95% percentile bootstrap intervals ({comparison.resamples} "
        "resamples of "
        f"rows, seed {comparison.seed}). Δ is each run minus the reference on the same rows, with a paired "
        f"bootstrap interval; p is Holm-adjusted within each section (two-sided, bootstrap standard error). "
        f"A winner is named only where the adjusted p < {comparison.alpha}. ↓ marks lower-is-better metrics. "
        "McNemar's exact test compares per-row decisions (rows one model gets right and the other wrong)."
    )


def render_markdown(comparison: Comparison, plots: dict[str, Path], generated: str) -> str:
    parts = [
        f"# Evaluation comparison\n\nGenerated {generated}. Reference: **{comparison.runs[0].label}**.\n"
    ]
    parts.append(_markdown_table(*_run_table(comparison)))
    parts.append("\n" + _explanation(comparison) + "\n")
    rows_text = ", ".join(f"{name}: {count}" for name, count in comparison.common_rows.items())
    parts.append(f"Rows compared per partition: {rows_text}.\n")
    for note in comparison.notes:
        parts.append(f"> Note: {note}\n")
    parts.append("## Who wins where\n")
    wins = comparison.wins()
    parts.append(
        _markdown_table(
            *_wins_table(wins),
        )
    )
    for section in SECTIONS:
        rows = comparison.section(section)
        if rows:
            parts.append(f"\n## {SECTION_TITLES[section]}\n")
            parts.append(_markdown_table(header(comparison), [row_cells(comparison, row) for row in rows]))
    parts.append("\n## Decision changes (McNemar)\n")
    parts.append(_markdown_table(*_mcnemar_rows(comparison)))
    if plots:
        parts.append("\n## Plots\n")
        parts += [f"### {title}\n\n![{title}]({path.as_posix()})\n" for title, path in plots.items()]
    return "\n".join(parts) + "\n"


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.85em; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: left; }
th { background: #f2f2f2; }
td.win { background: #dff3df; } td.loss { background: #f8dcdc; }
.note { color: #8a5a00; } img { max-width: 100%; border: 1px solid #ddd; margin: 0.5em 0; }
"""


def _html_table(columns: list[str], rows: list[list[str]], classes: list[list[str]] | None = None) -> str:
    head = "".join(f"<th>{html.escape(column)}</th>" for column in columns)
    body = []
    for index, row in enumerate(rows):
        css = classes[index] if classes else [""] * len(row)
        cells = "".join(
            f'<td class="{cls}">{html.escape(cell)}</td>' if cls else f"<td>{html.escape(cell)}</td>"
            for cell, cls in zip(row, css, strict=True)
        )
        body.append(f"<tr>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _row_classes(comparison: Comparison, row: MetricRow) -> list[str]:
    classes = [""] * (1 + len(comparison.runs))
    for index in range(len(comparison.runs) - 1):
        winner = row.winners[index]
        verdict = "" if winner is None else ("win" if winner == index + 1 else "loss")
        classes += [verdict, "", verdict]
    return classes


def render_html(comparison: Comparison, plots: dict[str, Path], generated: str) -> str:
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>textguard comparison</title>",
        f"<style>{_STYLE}</style></head><body>",
        "<h1>Evaluation comparison</h1>",
        f"<p>Generated {html.escape(generated)}. "
        f"Reference: <b>{html.escape(comparison.runs[0].label)}</b>.</p>",
        _html_table(*_run_table(comparison)),
        f"<p>{html.escape(_explanation(comparison))}</p>",
    ]
    parts += [f"<p class='note'>Note: {html.escape(note)}</p>" for note in comparison.notes]
    wins = comparison.wins()
    parts.append("<h2>Who wins where</h2>")
    parts.append(
        _html_table(
            *_wins_table(wins),
        )
    )
    for section in SECTIONS:
        rows = comparison.section(section)
        if rows:
            parts.append(f"<h2>{html.escape(SECTION_TITLES[section])}</h2>")
            parts.append(
                _html_table(
                    header(comparison),
                    [row_cells(comparison, row) for row in rows],
                    [_row_classes(comparison, row) for row in rows],
                )
            )
    parts.append("<h2>Decision changes (McNemar)</h2>")
    parts.append(_html_table(*_mcnemar_rows(comparison)))
    for title, path in plots.items():
        encoded = base64.b64encode(path.read_bytes()).decode("ascii")
        parts.append(
            f"<h3>{html.escape(title)}</h3>"
            f"<img alt='{html.escape(title)}' src='data:image/png;base64,{encoded}'>"
        )
    parts.append("</body></html>")
    return "\n".join(parts)


def _plots(comparison: Comparison, outdir: Path) -> dict[str, Path]:
    from textguard.evaluation.plots import delta_chart, interval_chart, pr_overlay
    from textguard.evaluation.predictions import CLEAN
    from textguard.plots import save_figure

    labels = [run.label for run in comparison.runs]
    plots: dict[str, Path] = {}
    per_label = [row for row in comparison.section("labels") if row.name.startswith(("f1_", "pr_auc_"))]
    if per_label:
        figure = interval_chart(
            [r.name for r in per_label],
            labels,
            [r.intervals for r in per_label],
            title="Per-label F1 and PR-AUC (95% CI)",
        )
        plots["Per-label F1 and PR-AUC"] = save_figure(figure, outdir / "plots" / "per_label_intervals.png")
    if CLEAN in comparison.parts:
        figure = pr_overlay(comparison.parts[CLEAN], labels, title="PR curves on the compared rows")
        plots["PR curves"] = save_figure(figure, outdir / "plots" / "pr_curves.png")
    slice_rows = [row for row in comparison.section("slices") if row.name.endswith(".macro_f1")]
    for index in range(1, len(comparison.runs)):
        if slice_rows:
            figure = delta_chart(
                [r.name for r in slice_rows],
                [r.differences[index - 1] for r in slice_rows],
                title=f"Slice macro F1: {labels[index]} − {labels[0]}",
            )
            plots[f"Slice deltas ({labels[index]})"] = save_figure(
                figure, outdir / "plots" / f"slice_deltas_{index}.png"
            )
    return {title: path.relative_to(outdir) for title, path in plots.items()}


def write_report(comparison: Comparison, outdir: Path) -> dict[str, Path]:
    """comparison.md, comparison.html (self-contained), comparison.json and plots/ under `outdir`."""
    outdir.mkdir(parents=True, exist_ok=True)
    generated = datetime.now(UTC).isoformat(timespec="seconds")
    plots = _plots(comparison, outdir)
    paths = {
        "markdown": outdir / "comparison.md",
        "html": outdir / "comparison.html",
        "json": outdir / "comparison.json",
    }
    paths["markdown"].write_text(render_markdown(comparison, plots, generated), encoding="utf-8")
    absolute = {title: outdir / path for title, path in plots.items()}
    paths["html"].write_text(render_html(comparison, absolute, generated), encoding="utf-8")
    paths["json"].write_text(json.dumps(_jsonable(comparison.to_dict()), indent=2) + "\n", encoding="utf-8")
    return paths


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_jsonable(item) for item in value]
    return value


def _wins_table(wins: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the "who wins where" table (shared by the Markdown and HTML reports)."""
    header = ["run", "section", "wins", "losses", "no significant difference"]
    rows = [
        [w["run"], w["section"], str(w["wins"]), str(w["losses"]), str(w["no_significant_difference"])]
        for w in wins
    ]
    return header, rows
