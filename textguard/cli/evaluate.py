"""CLI commands: evaluate (metrics, slices, suites, robustness, regression gate), compare, runs."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

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
finds a significant drop beyond its margin against the baseline. --model and --baseline also take a
run id (or unique prefix) from `textguard runs`: an evaluation run stands for the model version it
evaluated, a training run for the model it logged.

The run logs headline metrics (linked to the model's MLflow LoggedModel) and every value as
metrics.json plus CSV tables (tables/, slices.csv, suites/: per functionality, per language and
functionality x language).
"""

COMPARE_HELP = """Compare evaluation runs: 95% bootstrap CIs, paired significance, per-slice deltas, winners.

The first run is the reference (e.g. the champion). Writes comparison.md, a self-contained
comparison.html and comparison.json to --output, logs them to a comparison run, and prints the table.

Runs evaluated on different data (digest), suite files, perturbation seeds or label sets are refused,
naming what differs; --allow-mismatch compares them anyway and the report says what differs.

Example:

    textguard compare 3f2a9c0d 8b7c6d5e --output reports/v3-vs-v4
"""

RUNS_HELP = """List runs of every experiment (or --experiment): metrics, model version and alias, data digest.

The run column prints the shortest unique prefix (8+ characters) of each run id: `compare`,
`evaluate --baseline` and `promote --run` accept it, or the full id. Training runs show their test-split
metrics under the evaluation names (test_macro_f1 as macro_f1). At a narrow width the least important
columns are left out (and named); --format json or csv prints everything.

Example:

    textguard runs --sort macro_f1 --limit 10
    textguard runs --experiment textguard-evaluation --format json
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
    for suite, tables in result.suite_tables.items():
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
        for row in tables.functionality:
            suite_table.add_row(row["functionality"], row["gold"], str(row["n_cases"]), _fmt(row["accuracy"]))
        console.print(suite_table)
        languages = Table(
            title=f"suite {suite} per language "
            f"(functionality x language: suites/{suite}_functionality_by_language.csv)",
            title_justify="left",
        )
        for column in ("language", "cases", "accuracy", "balanced", "hard-neg. cases", "hard-neg. accuracy"):
            languages.add_column(column, justify="left" if column == "language" else "right")
        for row in tables.languages:
            languages.add_row(
                row["language"],
                str(row["n_cases"]),
                _fmt(row["accuracy"]),
                _fmt(row["balanced_accuracy"]),
                str(row["hard_negative_cases"]),
                _fmt(row["hard_negative_accuracy"]),
            )
        console.print(languages)


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
        ...,
        "--model",
        "-m",
        help="Artefact directory, runs:/<id>/model, models:/<name>@<alias>, or a run id (prefix).",
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
        None,
        "--baseline",
        help="Also evaluate this model (URI, path or run id as `textguard runs` prints it) on the same "
        "rows and run the regression gate.",
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
    policy: Path | None = typer.Option(
        None,
        "--policy",
        help="Check this policy file against the model first, as the server would at a hot swap "
        "(a refused policy stops the evaluation, exit 2).",
    ),
    tracking_uri: str | None = typer.Option(None, "--tracking-uri", help=TRACKING_HELP),
    experiment: str | None = typer.Option(
        None, "--experiment", help="MLflow experiment for the evaluation runs."
    ),
) -> None:
    from textguard.evaluation.gate import REGRESSION_EXIT_CODE
    from textguard.evaluation.predictions import labels_of
    from textguard.evaluation.workflow import evaluate_with_gate, evaluation_settings, require_baseline

    require_baseline(fail_on_regression, baseline)
    settings = evaluation_settings(config, overrides, split=split, experiment=experiment)
    uri = _tracking_uri(tracking_uri, settings.tracking_uri)
    console, status = _console(), _console(stderr=True)
    outcome = evaluate_with_gate(
        model=model,
        data=data,
        settings=settings,
        tracking_uri=uri,
        suites=suite,
        perturbations=perturb,
        seed=seed,
        show_text=show_text,
        baseline=baseline,
        gate_config=gate_config,
        policy=policy,
        progress=lambda message: status.print(f"[dim]{message}[/dim]"),
    )
    result = outcome.candidate
    _print_evaluation(console, result, list(labels_of(result.predictions)))
    console.print(f"evaluation run: {result.run_id} (experiment {settings.experiment}, {uri})")
    if outcome.baseline is None or outcome.gate is None:
        return
    console.print(f"baseline run: {outcome.baseline.run_id} ({outcome.baseline.identity.describe()})")
    _print_gate(console, outcome.gate)
    console.print(f"compare in detail: textguard compare {outcome.baseline.run_id} {result.run_id}")
    if outcome.gate.passed:
        console.print(f"[green]{outcome.gate.message()}[/green]")
        return
    typer.secho(f"error: {outcome.gate.message()}", err=True, fg=typer.colors.RED)
    if fail_on_regression:
        sys.exit(REGRESSION_EXIT_CODE)


def compare_command(
    runs: list[str] = typer.Argument(
        ...,
        help="Evaluation run ids or unique prefixes (as `textguard runs` prints); the first is the "
        "reference.",
    ),
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
    allow_mismatch: bool = typer.Option(
        False,
        "--allow-mismatch",
        help="Compare runs evaluated on different data, suite files, perturbation seeds or label sets "
        "(refused by default); the report lists what differs.",
    ),
    log: bool = typer.Option(True, "--log/--no-log", help="Log the report to a comparison run in MLflow."),
    tracking_uri: str | None = typer.Option(None, "--tracking-uri", help=TRACKING_HELP),
) -> None:
    from textguard.evaluation.compare import compare_runs
    from textguard.evaluation.compare_report import write_report
    from textguard.tracking.evaluation import log_comparison

    uri = _tracking_uri(tracking_uri, None)
    comparison = compare_runs(
        runs,
        uri,
        resamples=resamples,
        seed=seed,
        alpha=alpha,
        min_slice_rows=min_slice_rows,
        allow_mismatch=allow_mismatch,
    )
    for line in comparison.mismatches:
        typer.secho(f"warning: MISMATCH, compared anyway: {line}", err=True, fg=typer.colors.YELLOW)
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
                "textguard.compare.mismatch": "true" if comparison.mismatches else "false",
            },
            output_dir=outdir,
            summary={"wins": comparison.wins(), "notes": comparison.notes},
        )
        console.print(f"comparison run: {run_id}")


def runs_command(
    experiment: list[str] = typer.Option(
        [], "--experiment", "-e", help="Only runs of this experiment (repeatable; default: every one)."
    ),
    sort: str | None = typer.Option(
        None, "--sort", help="Sort by this metric, descending (default: newest first)."
    ),
    limit: int = typer.Option(20, "--limit", "-n", min=1, help="How many runs."),
    metric: list[str] = typer.Option(
        [], "--metric", help="Metric columns (default macro_f1, macro_pr_auc, and the --sort metric)."
    ),
    run_type: str = typer.Option("all", "--type", help="evaluation, comparison, training or all."),
    output: str = typer.Option("table", "--format", "-f", help="table, json or csv."),
    width: int | None = typer.Option(
        None, "--width", help="Table width in characters (default: the terminal's; 0: no limit)."
    ),
    tracking_uri: str | None = typer.Option(None, "--tracking-uri", help=TRACKING_HELP),
) -> None:
    import shutil

    from textguard.evaluation.config import load_evaluation_config
    from textguard.evaluation.run_table import FORMATS, metric_columns, render
    from textguard.tracking.run_index import list_runs

    if output not in FORMATS:
        raise ConfigError(f"--format {output!r}: choose {', '.join(FORMATS)}")
    if run_type not in ("evaluation", "comparison", "training", "all"):
        raise ConfigError(f"--type {run_type!r}: choose evaluation, comparison, training or all")
    listing = list_runs(
        _tracking_uri(tracking_uri, load_evaluation_config().tracking_uri),
        experiments=experiment or None,
        run_types=None if run_type == "all" else [run_type],
        sort=sort,
        limit=limit,
    )
    columns = width if width is not None else shutil.get_terminal_size().columns
    typer.echo(render(listing, output, metric_columns(metric, sort), columns))


def register(app: typer.Typer) -> None:
    """Add this module's commands to the top-level app."""
    app.command("evaluate", help=EVALUATE_HELP)(evaluate_command)
    app.command("compare", help=COMPARE_HELP)(compare_command)
    app.command("runs", help=RUNS_HELP)(runs_command)
