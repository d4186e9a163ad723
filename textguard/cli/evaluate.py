"""CLI commands: evaluate (metrics, slices, suites, robustness, regression gate), compare, runs."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from textguard.errors import ConfigError

if TYPE_CHECKING:
    from rich.console import Console

    from textguard.evaluation.compare import Comparison
    from textguard.evaluation.gate import GateResult
    from textguard.evaluation.runner import EvaluationResult

TRACKING_HELP = (
    "MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else the config's, else sqlite:///mlflow.db)."
)

EVALUATE_HELP = """Evaluate a model on a prepared split, functional suites and perturbations; log to MLflow.

Logs per-label and macro/micro precision, recall, F1, PR-AUC, ROC-AUC, recall at 1% FPR and ECE, the
same per language / source / dataset slice, reliability diagram, PR curves, confusion matrices, error
analysis (texts hashed unless --show-text) and per-row predictions for `textguard compare`.

Example:

    textguard evaluate --model models:/textguard@candidate --data data/prepared/combined \\
        --suite textguard/resources/suites/meeting_functional.csv \\
        --suite ../shared/datasets/hatecheck_en/test_suite_cases.csv \\
        --perturb obfuscation,caption,typos \\
        --baseline models:/textguard@champion --fail-on-regression

With --fail-on-regression the command exits with code 3 when the gate (configs/evaluation/gate.yaml)
finds a significant drop beyond its margin against the baseline.
"""

COMPARE_HELP = """Compare evaluation runs: 95% bootstrap CIs, paired significance, per-slice deltas, winners.

The first run is the reference (e.g. the champion). Writes comparison.md, a self-contained
comparison.html and comparison.json to --output, logs them to a comparison run, and prints the table.

Example:

    textguard compare 3f2a9c0d1e4b4c1a9d8e 8b7c6d5e4f3a4b2c1d0e --output reports/v3-vs-v4
"""

RUNS_HELP = """List runs of an experiment: key metrics, base model, data digest, registered version and alias.

Example:

    textguard runs --experiment textguard-evaluation --sort macro_f1 --limit 10
"""


def _console(stderr: bool = False) -> Console:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False)


def _tracking_uri(flag: str | None, configured: str | None) -> str:
    from textguard.tracking import resolve_tracking_uri

    # An explicit flag beats the environment; otherwise env, then config, then the sqlite default.
    return flag.strip() if flag and flag.strip() else resolve_tracking_uri(configured)


def _fmt(value: float | None) -> str:
    import math

    return "n/a" if value is None or math.isnan(value) else f"{value:.4f}"


def _print_evaluation(console: Console, result: EvaluationResult, labels: list[str]) -> None:
    from rich.table import Table

    metrics = result.metrics
    table = Table(
        title=f"{result.identity.describe()}: {int(metrics.get('n_rows', 0))} rows", title_justify="left"
    )
    measures = ["f1", "precision", "recall", "pr_auc", "roc_auc"]
    fpr = next((key[len("macro_") :] for key in metrics if key.startswith("macro_recall_at_fpr_")), None)
    if fpr:
        measures.append(fpr)
    measures.append("ece")
    table.add_column("")
    for measure in measures:
        table.add_column(measure, justify="right")
    for row_name, key in [("macro", "macro_{}"), ("micro", "micro_{}")] + [
        (label, "{}_" + label) for label in labels
    ]:
        table.add_row(row_name, *(_fmt(metrics.get(key.format(measure))) for measure in measures))
    console.print(table)
    slices = Table(title="slices (macro F1)", title_justify="left")
    for column in ("dimension", "value", "rows", "macro_f1", "macro_pr_auc"):
        slices.add_column(column, justify="right" if column not in ("dimension", "value") else "left")
    for entry in result.slice_table:
        slices.add_row(
            entry["dimension"],
            str(entry["value"]),
            str(entry["n_rows"]),
            _fmt(entry.get("macro_f1")),
            _fmt(entry.get("macro_pr_auc")),
        )
    if result.slice_table:
        console.print(slices)
    perturbed = sorted({key.split(".")[1] for key in metrics if key.startswith("perturb.")})
    if perturbed:
        robust = Table(title="robustness", title_justify="left")
        for column in ("perturbation", "macro_f1", "Δ macro_f1", "Δ macro_pr_auc", "flip rate"):
            robust.add_column(column, justify="right" if column != "perturbation" else "left")
        for kind in perturbed:
            prefix = f"perturb.{kind}."
            robust.add_row(
                kind,
                _fmt(metrics.get(prefix + "macro_f1")),
                _fmt(metrics.get(prefix + "delta.macro_f1")),
                _fmt(metrics.get(prefix + "delta.macro_pr_auc")),
                _fmt(metrics.get(prefix + "flip_rate")),
            )
        console.print(robust)
    for suite, rows in result.suite_tables.items():
        prefix = f"suite.{suite}."
        suite_table = Table(
            title=(
                f"suite {suite}: accuracy {_fmt(metrics.get(prefix + 'accuracy'))}, balanced "
                f"{_fmt(metrics.get(prefix + 'balanced_accuracy'))}, hard negatives "
                f"{_fmt(metrics.get(prefix + 'hard_negative.accuracy'))}"
            ),
            title_justify="left",
        )
        for column in ("functionality", "gold", "cases", "accuracy"):
            suite_table.add_column(column, justify="right" if column in ("cases", "accuracy") else "left")
        for row in rows:
            suite_table.add_row(row["functionality"], row["gold"], str(row["n_cases"]), _fmt(row["accuracy"]))
        console.print(suite_table)


def _print_gate(console: Console, gate: GateResult) -> None:
    from rich.table import Table

    from textguard.evaluation.bootstrap import format_p

    table = Table(title="regression gate (candidate vs baseline, same rows)", title_justify="left")
    for column in ("metric", "baseline", "candidate", "Δ", "CI", "p", "margin", "verdict"):
        table.add_column(column, justify="left" if column in ("metric", "verdict") else "right")
    for check in gate.checks:
        verdict = f"[red]REGRESSED[/red] {check.reason}" if check.regressed else check.reason
        table.add_row(
            check.metric,
            _fmt(check.baseline),
            _fmt(check.candidate),
            f"{check.delta:+.4f}",
            f"[{check.ci_low:+.4f}, {check.ci_high:+.4f}]",
            format_p(check.p_value),
            f"{check.margin}",
            verdict,
        )
    console.print(table)


def _compact(section: str, name: str) -> bool:
    """Rows printed without --full: slices by macro F1, suites by their summary metrics."""
    if section == "slices":
        return name.endswith(".macro_f1")
    if section == "suites":
        return ".func." not in name and ".language." not in name
    return True


def _print_comparison(console: Console, comparison: Comparison, full: bool) -> None:
    from rich.table import Table

    from textguard.evaluation.compare import SECTIONS
    from textguard.evaluation.compare_report import SECTION_TITLES, header, row_cells

    for section in SECTIONS:
        rows = [row for row in comparison.section(section) if full or _compact(section, row.name)]
        if not rows:
            continue
        title = SECTION_TITLES[section] + (
            ""
            if full or section in ("overall", "labels", "robustness")
            else " (summary; --full for all rows)"
        )
        table = Table(title=title, title_justify="left")
        for index, column in enumerate(header(comparison)):
            table.add_column(column, justify="left" if index == 0 else "right")
        for row in rows:
            cells = row_cells(comparison, row)
            for offset in range(len(comparison.runs) - 1):
                position = len(comparison.runs) + 1 + offset * 3 + 2
                winner = row.winners[offset]
                if winner is not None:
                    colour = "green" if winner == offset + 1 else "red"
                    cells[position] = f"[{colour}]{cells[position]}[/{colour}]"
            table.add_row(*cells)
        console.print(table)
    mcnemar = Table(title="decision changes (McNemar exact, Holm-adjusted)", title_justify="left")
    for column in ("partition", "label", "run", "only ref right", "only run right", "p (Holm)"):
        mcnemar.add_column(column)
    for item in comparison.mcnemar:
        mcnemar.add_row(
            item.partition,
            item.label,
            comparison.runs[item.run_index].label,
            str(item.reference_only_correct),
            str(item.run_only_correct),
            f"{item.adjusted_p:.3g}",
        )
    console.print(mcnemar)
    wins = Table(title="who wins where (significant after Holm)", title_justify="left")
    for column in ("run", "section", "wins", "losses", "no sig. difference"):
        wins.add_column(column)
    for summary in comparison.wins():
        wins.add_row(
            str(summary["run"]),
            str(summary["section"]),
            str(summary["wins"]),
            str(summary["losses"]),
            str(summary["no_significant_difference"]),
        )
    console.print(wins)
    for note in comparison.notes:
        console.print(f"[yellow]note:[/yellow] {note}")


def evaluate_command(
    model: str = typer.Option(
        ..., "--model", "-m", help="Artefact directory, runs:/<id>/model or models:/<name>@<alias>."
    ),
    data: Path = typer.Option(..., "--data", "-d", help="Prepared dataset folder or a data config YAML."),
    split: str | None = typer.Option(None, "--split", help="Split to evaluate (default test)."),
    suite: list[str] = typer.Option(
        [], "--suite", help="HateCheck-format suite CSV, optionally name=path (repeatable)."
    ),
    perturb: list[str] = typer.Option(
        [],
        "--perturb",
        help="Perturbations: obfuscation (= leetspeak,homoglyphs,zero_width,spacing), caption, typos.",
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the perturbations."),
    show_text: bool = typer.Option(
        False, "--show-text", help="Keep texts and row ids in artefacts (default: keyed hashes)."
    ),
    baseline: str | None = typer.Option(
        None, "--baseline", help="Also evaluate this model on the same rows and run the regression gate."
    ),
    fail_on_regression: bool = typer.Option(
        False,
        "--fail-on-regression",
        help="Exit with code 3 when the gate finds a regression (needs --baseline).",
    ),
    gate_config: Path | None = typer.Option(
        None, "--gate", help="Gate config (default configs/evaluation/gate.yaml)."
    ),
    config: Path | None = typer.Option(
        None, "--config", "-c", help="Evaluation config (default configs/evaluation/default.yaml)."
    ),
    overrides: list[str] = typer.Option(
        [], "--set", help="Override an evaluation config value, e.g. --set max_fpr=0.005."
    ),
    tracking_uri: str | None = typer.Option(None, "--tracking-uri", help=TRACKING_HELP),
    experiment: str | None = typer.Option(
        None, "--experiment", help="MLflow experiment for the evaluation runs."
    ),
) -> None:
    from textguard.evaluation.config import load_evaluation_config, load_gate_config
    from textguard.evaluation.gate import REGRESSION_EXIT_CODE, check_regression
    from textguard.evaluation.predictions import labels_of
    from textguard.evaluation.robustness import expand_kinds
    from textguard.evaluation.runner import EvaluationRequest, evaluate_model
    from textguard.tracking.evaluation import EvaluationRun

    if fail_on_regression and not baseline:
        raise ConfigError(
            "--fail-on-regression needs --baseline (the model the candidate must not fall below)"
        )
    settings = load_evaluation_config(config, tuple(overrides))
    updates: dict[str, Any] = {}
    if split:
        updates["split"] = split
    if experiment:
        updates["experiment"] = experiment
    if updates:
        from textguard.config import validate

        settings = validate(type(settings), {**settings.model_dump(), **updates}, "command line")
    gate_settings = load_gate_config(gate_config) if baseline else None
    uri = _tracking_uri(tracking_uri, settings.tracking_uri)
    kinds = tuple(expand_kinds(perturb))
    if gate_settings is not None:
        from textguard.evaluation.gate import check_inputs
        from textguard.evaluation.suites import default_name, parse_suite_argument

        names = [name or default_name(path) for name, path in map(parse_suite_argument, suite)]
        check_inputs(gate_settings, names, list(kinds))
    console, status = _console(), _console(stderr=True)

    def progress(message: str) -> None:
        status.print(f"[dim]{message}[/dim]")

    request = EvaluationRequest(
        model=model,
        data=data,
        config=settings,
        tracking_uri=uri,
        suites=tuple(suite),
        perturbations=kinds,
        seed=seed,
        show_text=show_text,
        role="candidate" if baseline else "evaluation",
    )
    result = evaluate_model(request, progress)
    _print_evaluation(console, result, list(labels_of(result.predictions)))
    console.print(f"evaluation run: {result.run_id} (experiment {settings.experiment}, {uri})")
    if baseline is None or gate_settings is None:
        return
    base_request = EvaluationRequest(
        model=baseline,
        data=data,
        config=settings,
        tracking_uri=uri,
        suites=tuple(suite),
        perturbations=kinds,
        seed=seed,
        show_text=show_text,
        role="baseline",
        extra_tags={"textguard.eval.candidate_run_id": result.run_id},
    )
    base = evaluate_model(base_request, progress)
    console.print(f"baseline run: {base.run_id} ({base.identity.describe()})")
    gate = check_regression(base.predictions, result.predictions, gate_settings)
    _print_gate(console, gate)
    handle = EvaluationRun(result.run_id, uri, result.experiment_id)
    handle.log_dict(
        {**gate.to_dict(), "baseline_run_id": base.run_id, "baseline_model": baseline}, "gate.json"
    )
    handle.set_tags(
        {
            "textguard.eval.baseline_run_id": base.run_id,
            "textguard.gate.status": "passed" if gate.passed else "failed",
        }
    )
    handle.log_metrics(
        {"gate.passed": 1.0 if gate.passed else 0.0, "gate.failures": float(len(gate.failures))}
    )
    console.print(f"compare in detail: textguard compare {base.run_id} {result.run_id}")
    if gate.passed:
        console.print(f"[green]{gate.message()}[/green]")
        return
    typer.secho(f"error: {gate.message()}", err=True, fg=typer.colors.RED)
    if fail_on_regression:
        sys.exit(REGRESSION_EXIT_CODE)


def compare_command(
    runs: list[str] = typer.Argument(..., help="Evaluation run ids; the first is the reference."),
    output: Path | None = typer.Option(
        None, "--output", "-o", help="Report folder (default ./comparison-<ids>)."
    ),
    resamples: int = typer.Option(1000, "--resamples", min=100, help="Bootstrap resamples."),
    seed: int = typer.Option(0, "--seed", help="Bootstrap seed."),
    alpha: float = typer.Option(0.05, "--alpha", help="Significance level (after Holm adjustment)."),
    min_slice_rows: int = typer.Option(30, "--min-slice-rows", help="Slices with fewer rows are left out."),
    full: bool = typer.Option(
        False, "--full", help="Print every section (slices, suite functionalities) too."
    ),
    log: bool = typer.Option(True, "--log/--no-log", help="Log the report to a comparison run in MLflow."),
    tracking_uri: str | None = typer.Option(None, "--tracking-uri", help=TRACKING_HELP),
) -> None:
    from textguard.evaluation.compare import compare_runs
    from textguard.evaluation.compare_report import write_report
    from textguard.tracking.evaluation import log_comparison

    uri = _tracking_uri(tracking_uri, None)
    comparison = compare_runs(
        runs, uri, resamples=resamples, seed=seed, alpha=alpha, min_slice_rows=min_slice_rows
    )
    outdir = output or Path.cwd() / ("comparison-" + "-".join(run.short_id for run in comparison.runs))
    paths = write_report(comparison, outdir)
    console = _console()
    _print_comparison(console, comparison, full)
    console.print(f"report: {paths['html']} | {paths['markdown']}")
    if log:
        run_id = log_comparison(
            tracking_uri=uri,
            experiment_id=comparison.runs[0].experiment_id,
            run_name="compare " + " vs ".join(run.label for run in comparison.runs),
            tags={
                "textguard.compare.runs": ",".join(run.run_id for run in comparison.runs),
                "textguard.compare.reference": comparison.runs[0].run_id,
            },
            output_dir=outdir,
            summary={"wins": comparison.wins(), "notes": comparison.notes},
        )
        console.print(f"comparison run: {run_id}")


def runs_command(
    experiment: str | None = typer.Option(
        None, "--experiment", "-e", help="Experiment (default textguard-evaluation)."
    ),
    sort: str | None = typer.Option(
        None, "--sort", help="Sort by this metric, descending (default: newest first)."
    ),
    limit: int = typer.Option(20, "--limit", "-n", min=1, help="How many runs."),
    metric: list[str] = typer.Option(
        [], "--metric", help="Metric columns (default macro_f1, macro_pr_auc, and the --sort metric)."
    ),
    run_type: str = typer.Option("all", "--type", help="evaluation, comparison, training or all."),
    tracking_uri: str | None = typer.Option(None, "--tracking-uri", help=TRACKING_HELP),
) -> None:
    from datetime import UTC, datetime

    from rich.table import Table

    from textguard.evaluation.config import load_evaluation_config
    from textguard.tracking.evaluation import list_runs

    settings = load_evaluation_config()
    uri = _tracking_uri(tracking_uri, settings.tracking_uri)
    name = experiment or settings.experiment
    if run_type not in ("evaluation", "comparison", "training", "all"):
        raise ConfigError(f"--type {run_type!r}: choose evaluation, comparison, training or all")
    rows = list_runs(
        uri, name, sort=sort, limit=limit, run_type=None if run_type in ("all", "training") else run_type
    )
    if run_type == "training":
        rows = [row for row in rows if row.run_type == "training"]
    columns = list(dict.fromkeys([*(metric or ["macro_f1", "macro_pr_auc"]), *([sort] if sort else [])]))
    table = Table(title=f"runs in {name} ({uri})", title_justify="left")
    for column in ("run", "type", "started (UTC)", "model", "aliases", "base model", "data digest"):
        table.add_column(column, no_wrap=column in ("run", "started (UTC)", "data digest"))
    for column in columns:
        table.add_column(column, justify="right")
    table.add_column("gate")
    for row in rows:
        started = (
            datetime.fromtimestamp(row.start_time / 1000, UTC).strftime("%Y-%m-%d %H:%M")
            if row.start_time
            else ""
        )
        model = f"{row.model} v{row.version}" if row.version else (row.model or row.model_uri)
        table.add_row(
            row.run_id[:8],
            {"evaluation": "eval", "comparison": "compare", "training": "train"}.get(
                row.run_type, row.run_type
            ),
            started,
            model,
            ",".join(row.aliases),
            row.base_model,
            row.data_digest,
            *(_fmt(row.metrics.get(column)) for column in columns),
            row.gate,
        )
    _console().print(table)


def register(app: typer.Typer) -> None:
    """Add this module's commands to the top-level app."""
    app.command("evaluate", help=EVALUATE_HELP)(evaluate_command)
    app.command("compare", help=COMPARE_HELP)(compare_command)
    app.command("runs", help=RUNS_HELP)(runs_command)
