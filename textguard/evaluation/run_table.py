"""`textguard runs` output: a table that fits the terminal, or JSON / CSV for tools.

The table always shows the run id (the shortest prefix of at least 8 characters that is unique in the
store: what `compare`, `evaluate --baseline` and `promote --run` accept back), the run type and the
chosen metric columns; model, start time, aliases, data digest, experiment, base model and gate status
follow in that order of importance and are left out (and named below the table) when the width is
short. JSON and CSV always carry every field and the full run id.
"""

from __future__ import annotations

import csv
import io
import json
import math
import textwrap
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Literal

from textguard.text_table import Column, fit_table
from textguard.tracking.run_index import RunListing, RunRow

OutputFormat = Literal["table", "json", "csv"]
FORMATS: tuple[OutputFormat, ...] = ("table", "json", "csv")
DEFAULT_METRICS = ("macro_f1", "macro_pr_auc")
TYPE_NAMES = {"evaluation": "eval", "comparison": "compare", "training": "train"}


def metric_columns(requested: Sequence[str], sort: str | None) -> list[str]:
    """--metric columns (default macro_f1, macro_pr_auc), then the --sort metric if not among them."""
    return list(dict.fromkeys([*(requested or DEFAULT_METRICS), *([sort] if sort else [])]))


def _started(row: RunRow) -> str:
    if not row.start_time:
        return ""
    return datetime.fromtimestamp(row.start_time / 1000, UTC).strftime("%Y-%m-%d %H:%M")


def _model(row: RunRow) -> str:
    if row.version:
        return f"{row.model} v{row.version}"
    uri = row.model_uri
    if not uri or uri.startswith(("runs:/", "models:/")):
        return uri
    return uri.rstrip("/").rsplit("/", 1)[-1]  # a local artefact directory: its folder name


def _number(value: float | None) -> str:
    return "" if value is None or math.isnan(value) else f"{value:.4f}"


def _type(row: RunRow) -> str:
    name = TYPE_NAMES.get(row.run_type, row.run_type or "-")
    return f"{name}*" if row.metrics_from == "validation" else name


def render_table(listing: RunListing, metrics: Sequence[str], width: int | None) -> str:
    columns = [Column("run"), Column("type")]
    columns += [
        Column(name, priority=0 if position == 0 else 3, align="right")
        for position, name in enumerate(metrics)
    ]
    columns += [
        Column("model", 1),
        Column("started (UTC)", 2),
        Column("aliases", 4),
        Column("data", 5),
        Column("experiment", 6),
        Column("base model", 7),
    ]
    show_gate = any(row.gate for row in listing.rows)
    if show_gate:
        columns.append(Column("gate", 8))
    rows = []
    for row in listing.rows:
        cells = [row.short_id, _type(row), *(_number(row.metrics.get(name)) for name in metrics)]
        cells += [
            _model(row),
            _started(row),
            ",".join(row.aliases),
            row.data_digest[:8],
            row.experiment,
            row.base_model,
        ]
        if show_gate:
            cells.append(row.gate)
        rows.append(cells)
    fitted = fit_table(columns, rows, width)
    notes = []
    if not listing.rows:
        notes.append(f"(no runs in {', '.join(listing.experiments) or 'this store'})")
    if any(row.run_type == "training" for row in listing.rows):
        notes.append(
            "train: a training run's test-split metrics (test_<metric>); train*: its calibrated-"
            "validation metrics (no test split)"
        )
    if fitted.left_out:
        notes.append(
            f"left out at {width} columns: {', '.join(fitted.left_out)} "
            "(--width 0 or --format csv/json shows every column)"
        )
    wrap = width if width and width > 20 else None
    return "\n".join(
        [
            fitted.text,
            *(textwrap.fill(note, wrap, break_on_hyphens=False) if wrap else note for note in notes),
        ]
    )


def render_json(listing: RunListing) -> str:
    return json.dumps(
        [
            {
                **row.as_dict(),
                "type": row.run_type,
                "started": datetime.fromtimestamp(row.start_time / 1000, UTC).isoformat(timespec="seconds")
                if row.start_time
                else None,
                "metrics": {key: value for key, value in row.metrics.items() if math.isfinite(value)},
            }
            for row in listing.rows
        ],
        indent=2,
        sort_keys=True,
    )


def render_csv(listing: RunListing, metrics: Sequence[str]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    fields = ["run_id", "short_id", "type", "experiment", "run_name", "started", "status", "model"]
    fields += ["version", "model_uri", "aliases", "base_model", "data_digest", "gate", "metrics_from"]
    writer.writerow([*fields, *metrics])
    for row in listing.rows:
        started = (
            datetime.fromtimestamp(row.start_time / 1000, UTC).isoformat(timespec="seconds")
            if row.start_time
            else ""
        )
        writer.writerow(
            [
                row.run_id,
                row.short_id,
                row.run_type,
                row.experiment,
                row.run_name,
                started,
                row.status,
                row.model,
                row.version,
                row.model_uri,
                ";".join(row.aliases),
                row.base_model,
                row.data_digest,
                row.gate,
                row.metrics_from,
                # Full precision for tools; the table rounds.
                *("" if name not in row.metrics else repr(row.metrics[name]) for name in metrics),
            ]
        )
    return buffer.getvalue().rstrip("\n")


def render(listing: RunListing, output: str, metrics: Sequence[str], width: int | None) -> str:
    if output == "json":
        return render_json(listing)
    if output == "csv":
        return render_csv(listing, metrics)
    return render_table(listing, metrics, width)
