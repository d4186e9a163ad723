"""CLI commands around trained models: promote (registry aliases), export (ONNX), score (batch files)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import typer

from textguard.errors import ConfigError

TRACKING_HELP = "MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db)."


def _use_tracking_uri(tracking_uri: str | None) -> None:
    # An explicit flag beats the environment for this process; downloads and registry calls read it.
    if tracking_uri:
        os.environ["MLFLOW_TRACKING_URI"] = tracking_uri


def promote(
    version: int | None = typer.Option(None, "--version", "-v", help="Model version to point the alias at."),
    alias: str = typer.Option(..., "--alias", "-a", help="Alias to move, e.g. champion."),
    run: str | None = typer.Option(
        None,
        "--run",
        help="Run id or unique prefix (as `textguard runs` prints): the version an evaluation run "
        "evaluated or a training run registered (instead of, or as a check on, --version).",
    ),
    from_alias: str | None = typer.Option(
        None, "--from-alias", help="Promote the version another alias points at, e.g. candidate."
    ),
    name: str = typer.Option("textguard", "--name", help="Registered model name."),
    reason: str = typer.Option("manual promotion", "--reason", help="Why; recorded on the model version."),
    user: str | None = typer.Option(None, "--user", help="Who promotes (default: $USER)."),
    tracking_uri: str | None = typer.Option(None, "--tracking-uri", help=TRACKING_HELP),
) -> None:
    """Point a registry alias at a model version and record who, why and when.

    \b
    Example:
      textguard promote --version 3 --alias champion --reason "beats v2 on the functional suite"
      textguard promote --from-alias candidate --alias champion --reason "passed the gate"
      textguard promote --run 3f2a9c0d --alias champion --reason "won textguard compare"
    """
    from textguard.tracking.registry import alias_version, promote_alias

    _use_tracking_uri(tracking_uri)
    if from_alias is not None:
        if version is not None:
            raise ConfigError("give --version or --from-alias, not both")
        version = alias_version(name, from_alias)
        if version is None:
            raise ConfigError(f"alias models:/{name}@{from_alias} does not exist: nothing to promote")
    promotion = promote_alias(name, alias, version=version, run_id=run, reason=reason, user=user)
    typer.echo(promotion.describe())


def export(
    model: str = typer.Option(
        ..., "--model", "-m", help="Artefact directory, runs:/<id>/model or models:/<name>@<alias>."
    ),
    format: str = typer.Option("onnx", "--format", help="Export format (onnx)."),
    quantize: str | None = typer.Option(None, "--quantize", help="Also write a quantised model: int8."),
    opset: int | None = typer.Option(None, "--opset", help="ONNX opset (default: the exporter's)."),
    exporter: str = typer.Option("dynamo", "--exporter", help="dynamo (torch default) or torchscript."),
    sample: Path | None = typer.Option(
        None,
        "--sample",
        help="Texts for the parity check (txt/csv/jsonl/parquet with a text column; default: the seed set).",
    ),
    quantize_ffn_output: bool = typer.Option(
        False,
        "--quantize-ffn-output",
        help="Also quantise the FFN output projections (kept fp32 by default: they lose the most).",
    ),
    publish: bool = typer.Option(
        True, "--publish/--no-publish", help="Log the files back to MLflow when the model came from there."
    ),
    tracking_uri: str | None = typer.Option(None, "--tracking-uri", help=TRACKING_HELP),
) -> None:
    """Export a model to ONNX (optionally int8) and write a torch-vs-ONNX parity report.

    \b
    Example:
      textguard export --model models:/textguard@champion --format onnx --quantize int8
    """
    from textguard.export import export_onnx, load_sample_texts

    if format != "onnx":
        raise ConfigError(f"unknown export format {format!r}: only onnx is supported")
    if quantize not in (None, "int8"):
        raise ConfigError(f"unknown --quantize {quantize!r}: only int8 is supported")
    if exporter not in ("dynamo", "torchscript"):
        raise ConfigError(f"unknown --exporter {exporter!r}: choose dynamo or torchscript")
    _use_tracking_uri(tracking_uri)
    texts, source = load_sample_texts(sample) if sample else (None, None)
    result = export_onnx(
        model,
        quantize="int8" if quantize else None,
        opset=opset,
        exporter="dynamo" if exporter == "dynamo" else "torchscript",
        sample_texts=texts,
        sample_source=source,
        exclude_ffn_output=not quantize_ffn_output,
        publish=publish,
    )
    typer.echo(f"wrote {result.onnx_path}" + (f" and {result.int8_path.name}" if result.int8_path else ""))
    for variant, report in result.parity["variants"].items():
        typer.echo(
            f"{variant}: max |prob diff| {report['max_abs_diff']:.2e}, decision agreement "
            f"{report['decision_agreement']:.4f} on {report['n_texts']} texts"
        )
    typer.echo(f"parity report: {result.parity_path}")
    if result.published_to:
        typer.echo(f"logged to MLflow: {result.published_to}")
    if result.publish_error:
        typer.secho(
            f"warning: not logged back to MLflow: {result.publish_error}", err=True, fg=typer.colors.YELLOW
        )


def score(
    model: str = typer.Option(
        ..., "--model", "-m", help="Artefact directory, runs:/<id>/model or models:/<name>@<alias>."
    ),
    input: str = typer.Option(
        ...,
        "--input",
        "-i",
        help="File to score: .csv, .jsonl, .parquet or .txt. With --engine spark: a Parquet file, a "
        "directory of them or a glob (local, s3://, hdfs://, gs://).",
    ),
    output: str = typer.Option(
        ...,
        "--output",
        "-o",
        help="Result file: .csv, .jsonl or .parquet. With --engine spark: a directory of Parquet files.",
    ),
    text_column: str = typer.Option("text", "--text-column", help="Column holding the text."),
    backend: str = typer.Option("torch", "--backend", help="torch or onnx."),
    quantized: bool = typer.Option(False, "--quantized", help="With --backend onnx: use model.int8.onnx."),
    precision: str = typer.Option(
        "auto",
        "--precision",
        help="torch: auto (bf16 where the hardware has it and the model's recorded parity holds), fp32 "
        "or bf16.",
    ),
    batch_size: int | None = typer.Option(None, "--batch-size", min=1, help="Max texts per forward pass."),
    max_tokens: int | None = typer.Option(None, "--max-tokens", min=1, help="Max padded tokens per forward."),
    context: bool = typer.Option(
        False,
        "--context",
        help="Score rows with the same speaker's recent rows, like live chat (needs meeting_id, "
        "speaker_id and a time column).",
    ),
    time_column: str = typer.Option(
        "sent_at", "--time-column", help="With --context: send time (epoch seconds or ISO-8601)."
    ),
    hash_lists: Path | None = typer.Option(
        None, "--hash-lists", help="Match rows against this known-content store (`textguard hashes`)."
    ),
    evidence: bool = typer.Option(
        False, "--evidence", help="Add, per flagged label, the spans of text that drove it."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace the output file if it exists."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar on stderr."),
    policy: Path | None = typer.Option(
        None,
        "--policy",
        help="Policy YAML: add an `action` column (allow/review/block); checked against the model first.",
    ),
    policy_name: str | None = typer.Option(
        None, "--policy-name", help="Policy of the file to apply (default: the file's default)."
    ),
    tracking_uri: str | None = typer.Option(None, "--tracking-uri", help=TRACKING_HELP),
    engine: str = typer.Option(
        "in-process",
        "--engine",
        help="in-process (streams one file in chunks) or spark (a partitioned Parquet archive).",
    ),
    master: str | None = typer.Option(
        None,
        "--master",
        help="With --engine spark: local[2], spark://host:7077, ... (default: spark-submit's, else "
        "local[*]).",
    ),
    spark_conf: list[str] = typer.Option(
        [], "--spark-conf", help="With --engine spark: KEY=VALUE Spark setting (repeatable)."
    ),
    unit_rows: int = typer.Option(
        50_000,
        "--unit-rows",
        min=1,
        help="With --engine spark: rows per task and output file (whole row groups).",
    ),
    chunk_size: int = typer.Option(2048, "--chunk-size", min=1, help="Rows read and decided at a time."),
) -> None:
    """Score a file of texts through the same decision path as the service; the output keeps every input
    column and adds per-label scores, labels and (with --policy) the action.

    With --engine spark, a Parquet archive is scored on Spark (one model per executor process); the
    output directory gets model and policy versions on every row, and a rerun resumes where a failed
    run stopped (see docs/spark.md).

    \b
    Example:
      textguard score --model models:/textguard@champion --input chat.csv --output scored.parquet
      textguard score --model models:/textguard@champion --input chat.csv --output scored.csv \\
          --policy configs/policies/default.yaml --policy-name strict --evidence
      textguard score --engine spark --master "local[2]" --model models:/textguard@champion \\
          --input archive/ --output scored/ --policy configs/policies/default.yaml
    """
    from textguard.batch import ContextColumns, score_file

    if backend not in ("torch", "onnx"):
        raise ConfigError(f"unknown --backend {backend!r}: choose torch or onnx")
    if quantized and backend != "onnx":
        raise ConfigError("--quantized needs --backend onnx")
    if precision not in ("auto", "fp32", "bf16"):
        raise ConfigError(f"unknown --precision {precision!r}: choose auto, fp32 or bf16")
    if policy_name is not None and policy is None:
        raise ConfigError("--policy-name needs --policy FILE")
    if engine not in ("in-process", "spark"):
        raise ConfigError(f"unknown --engine {engine!r}: choose in-process or spark")
    if engine != "spark" and (master or spark_conf):
        raise ConfigError("--master and --spark-conf need --engine spark")
    _use_tracking_uri(tracking_uri)
    if engine == "spark":
        _score_on_spark(
            model,
            input,
            output,
            text_column=text_column,
            backend=backend,
            quantized=quantized,
            precision=precision,
            batch_size=batch_size,
            max_tokens=max_tokens,
            policy=policy,
            policy_name=policy_name,
            evidence=evidence,
            overwrite=overwrite,
            progress=progress,
            master=master,
            spark_conf=spark_conf,
            unit_rows=unit_rows,
            chunk_size=chunk_size,
            unsupported={"--context": context, "--hash-lists": hash_lists is not None},
        )
        return
    summary = score_file(
        model,
        Path(input),
        Path(output),
        text_column=text_column,
        backend=backend,
        quantized=quantized,
        precision=precision,
        batch_size=batch_size,
        max_tokens=max_tokens,
        policy_file=policy,
        policy=policy_name,
        context=ContextColumns(time=time_column) if context else None,
        hash_lists=hash_lists,
        evidence=evidence,
        progress=progress,
        overwrite=overwrite,
        chunk_size=chunk_size,
    )
    typer.echo(summary.describe())


def _score_on_spark(
    model: str,
    input: str,
    output: str,
    *,
    policy: Path | None,
    policy_name: str | None,
    spark_conf: list[str],
    unsupported: dict[str, bool],
    **options: Any,
) -> None:
    from textguard.spark import score_archive

    used = [flag for flag, on in unsupported.items() if on]
    if used:
        raise ConfigError(
            f"{', '.join(used)} is not supported with --engine spark (use the in-process engine)"
        )
    conf = {}
    for entry in spark_conf:
        key, sep, value = entry.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--spark-conf {entry!r} must look like KEY=VALUE")
        conf[key.strip()] = value
    summary = score_archive(
        model,
        input,
        output,
        policy_file=policy,
        policy=policy_name,
        spark_conf=conf,
        chunk_rows=options.pop("chunk_size"),
        **options,
    )
    typer.echo(summary.describe())


def register(app: typer.Typer) -> None:
    """Add this module's commands to the top-level app."""
    app.command("promote")(promote)
    app.command("export")(export)
    app.command("score")(score)
