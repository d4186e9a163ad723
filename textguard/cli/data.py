"""CLI commands: `textguard data prepare` and `textguard data card`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

data_app = typer.Typer(
    name="data",
    help="Prepare labelled datasets and write their data cards.",
    no_args_is_help=True,
)

ConfigOption = Annotated[
    Path,
    typer.Option("--config", "-c", help="Data config, e.g. configs/data/ethos.yaml.", show_default=False),
]


@data_app.command("prepare")
def prepare_command(
    config: ConfigOption,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Output folder (default: data/prepared/<name>).")
    ] = None,
    strict: Annotated[
        bool,
        typer.Option(
            "--strict/--lenient",
            help="Strict: stop at the first bad row. Lenient: skip bad rows and count them in report.json.",
        ),
    ] = True,
    overrides: Annotated[
        list[str] | None,
        typer.Option(
            "--set", help="Override a config key, e.g. --set max_rows_per_source=2000 (repeatable)."
        ),
    ] = None,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Show progress bars.")] = True,
) -> None:
    """Prepare a dataset: train/validation/test Parquet files plus report.json.

    Example: textguard data prepare --config configs/data/ethos.yaml --lenient
    """
    from textguard.data.prepare import prepare

    report = prepare(
        config,
        output,
        strict=strict,
        overrides=tuple(overrides or ()),
        progress=progress and sys.stderr.isatty(),
    )
    _print_summary(report)


@data_app.command("card")
def card_command(
    config: ConfigOption,
    prepared: Annotated[
        Path | None,
        typer.Option("--prepared", "-p", help="Prepared folder (default: data/prepared/<name>)."),
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Card file (default: data_cards/<name>.md).")
    ] = None,
) -> None:
    """Write a Markdown data card from a prepared dataset, its config and its SOURCE.md.

    Example: textguard data card --config configs/data/ethos.yaml --output data_cards/ethos.md
    """
    from textguard.data.cards import write_card
    from textguard.data.dataconfig import load_data_config
    from textguard.data.prepared import default_output_dir

    loaded = load_data_config(config)
    path = write_card(loaded, prepared or default_output_dir(loaded.name), output)
    typer.echo(f"wrote {path}")


@data_app.command("mine-negatives")
def mine_negatives_command(
    model: Annotated[
        str,
        typer.Option(
            "--model",
            "-m",
            help="The previous model: a directory, runs:/<id>/model or models:/<name>@<alias>.",
        ),
    ],
    prepared: Annotated[
        Path, typer.Option("--prepared", "-p", help="Prepared dataset folder whose training split is mined.")
    ],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Mined rows (JSONL); a .summary.json lands beside it.")
    ],
    max_rows: Annotated[
        int | None, typer.Option("--max-rows", min=1, help="Keep at most this many, hardest first.")
    ] = None,
) -> None:
    """Write the benign training rows the model flags, hardest first, for training.hard_negatives.

    Example: textguard data mine-negatives --model models:/textguard@champion
    --prepared data/prepared/reference --output data/mined/reference.jsonl
    """
    from tqdm.auto import tqdm

    from textguard.data.mining import mine_hard_negatives, write_mined
    from textguard.data.prepared import load_prepared
    from textguard.scorer import Scorer

    scorer = Scorer.from_artifact(model)
    train = load_prepared(prepared, prepare_if_missing=False)["train"]
    benign = sum(1 for labels in train["labels"] if not labels)
    with tqdm(total=benign, desc="mine", unit=" rows", disable=not sys.stderr.isatty()) as bar:
        mined = mine_hard_negatives(
            scorer.predict_proba,
            list(scorer.spec.labels),
            scorer.spec.threshold_list(),
            train,
            max_rows=max_rows,
            progress=bar.update,
        )
    summary = write_mined(
        mined, output, {"model": model, "prepared": str(prepared), "benign_rows_scored": benign}
    )
    typer.echo(
        f"{summary['rows']} of {benign} benign training rows flagged; wrote {output}"
        f" (by label {summary['by_label']})"
    )


@data_app.command("import-reviews")
def import_reviews_command(
    input_path: Annotated[
        Path,
        typer.Option(
            "--input",
            "-i",
            help="JSONL or CSV from the platform: decision_id, text, consent (one row per reviewed message).",
            show_default=False,
        ),
    ],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Labelled rows (JSONL), read by configs/data/reviews.yaml.")
    ] = Path("data/reviews/overturned.jsonl"),
    audit_url: Annotated[
        str | None,
        typer.Option(
            "--audit-url",
            help="Audit store URL (default: $TEXTGUARD_AUDIT_URL, else sqlite:///textguard_audit.db).",
        ),
    ] = None,
    tenant: Annotated[str | None, typer.Option("--tenant", help="Only this tenant's decisions.")] = None,
    verify_text: Annotated[
        bool,
        typer.Option(
            "--verify-text/--no-verify-text",
            help="Check each text against the audited digest (needs TEXTGUARD_AUDIT_HASH_KEY[_FILE]).",
        ),
    ] = True,
) -> None:
    """Turn overturned decisions into labelled training rows (source `reviews`), with the text the
    platform supplies for consented messages (docs/transparency.md).

    Example: textguard data import-reviews --input overturned.jsonl --audit-url sqlite:///audit.db
    """
    import os

    from textguard.audit import AuditStore
    from textguard.cli.report import DEFAULT_AUDIT_URL, require_audit_store, require_existing_sqlite
    from textguard.data.reviews import import_reviews
    from textguard.errors import DataError

    key = os.environ.get("TEXTGUARD_AUDIT_HASH_KEY")
    key_file = os.environ.get("TEXTGUARD_AUDIT_HASH_KEY_FILE")
    if key is None and key_file:
        try:
            key = Path(key_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise DataError(f"TEXTGUARD_AUDIT_HASH_KEY_FILE {key_file}: {exc.strerror}") from None
    if verify_text and not key:
        raise DataError(
            "checking the texts needs the audit hash key (TEXTGUARD_AUDIT_HASH_KEY or _FILE); "
            "--no-verify-text imports them unchecked"
        )
    url = audit_url or os.environ.get("TEXTGUARD_AUDIT_URL") or DEFAULT_AUDIT_URL
    require_existing_sqlite(url)
    store = AuditStore(url, hash_key=key or None, create=False)
    try:
        require_audit_store(store, url)
        summary = import_reviews(store, input_path, output, tenant=tenant, verify_text=verify_text)
    finally:
        store.close()
    labels = ", ".join(f"{label} {count}" for label, count in sorted(summary.labels.items())) or "none"
    skipped = ", ".join(f"{reason}: {count}" for reason, count in summary.skipped.items()) or "none"
    typer.echo(f"read {summary.rows_read} row(s); wrote {summary.written} to {output} (labels: {labels})")
    typer.echo(f"skipped: {skipped}; texts {'verified' if summary.verified else 'NOT verified'}")


def _print_summary(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    from textguard.labels import LABELS

    console = Console()
    splits = Table(title=f"{report['name']}: prepared rows", title_justify="left")
    splits.add_column("split")
    splits.add_column("rows", justify="right")
    for label in [*LABELS, "benign"]:
        splits.add_column(label, justify="right")
    for split, count in report["splits"].items():
        labels = report["labels"][split]
        splits.add_row(split, f"{count:,}", *(f"{labels[label]:,}" for label in [*LABELS, "benign"]))
    console.print(splits)

    cleaning = Table(title="cleaning", title_justify="left")
    cleaning.add_column("step")
    cleaning.add_column("rows", justify="right")
    near = report["near_duplicates"]
    for step, value in (
        ("read", report["rows_read"]),
        ("dropped by mapping rules", report["dropped_by_rule"]),
        ("skipped (bad input)", sum(report["skipped_rows"].values())),
        ("exact duplicates", sum(report["exact_duplicates"].values())),
        ("near duplicates", near["removed_within_dataset"] + near["removed_across_datasets"]),
        ("label conflicts resolved", report["label_conflicts"]["groups"]),
        ("leaks removed", report["leaks_removed"]["total"]),
        ("languages identified", report["language_id"]["rows"]),
        ("caption copies", report["caption"].get("copies", 0)),
    ):
        cleaning.add_row(step, f"{value:,}")
    console.print(cleaning)
    for reason, count in report["skipped_rows"].items():
        console.print(f"skipped {count:,} row(s): {reason}")
    console.print(f"wrote {report['output']} in {report['timings_s']['total']:.1f} s")


def register(app: typer.Typer) -> None:
    """Add this module's commands to the top-level app."""
    app.add_typer(data_app, name="data")
