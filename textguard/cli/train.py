"""CLI command: train (fine-tune, calibrate, evaluate, save and register a model)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import typer

TRAIN_HELP = """Fine-tune a classifier from a training config; log it to MLflow and register a candidate.

Example:

    textguard train --config configs/quickstart.yaml --set training.learning_rate=3e-5

Resume an interrupted run with --resume auto (its latest checkpoint) or --resume <checkpoint folder>.
For several processes: torchrun --nproc_per_node 2 -m textguard train --config configs/smoke.yaml
"""


def configure_logging() -> None:
    """textguard's phase messages on stderr; only rank 0 speaks under torchrun."""
    rank = int(os.environ.get("RANK", "0"))
    logger = logging.getLogger("textguard")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s textguard: %(message)s", "%H:%M:%S"))
        logger.addHandler(handler)
    logger.setLevel(logging.INFO if rank == 0 else logging.WARNING)


def run_train(config: Path, overrides: list[str], resume: str | None, output_dir: Path | None) -> None:
    """Shared by `textguard train` and `torchrun ... -m textguard train` (one call per rank)."""
    from textguard.training.config import load_train_config
    from textguard.training.pipeline import train

    configure_logging()
    settings = load_train_config(config, overrides, output_dir=output_dir)
    result = train(settings, resume=resume, config_path=config)
    if result.rank != 0:
        return
    lines = [f"trained to step {result.global_step} in {result.seconds:.0f} s"]
    if result.validation_metrics:
        test = result.test_metrics.get("macro_f1")
        lines.append(
            f"validation macro-F1 {result.validation_metrics['macro_f1']:.4f} (calibrated thresholds)"
            + (f", test macro-F1 {test:.4f}" if test is not None else "")
        )
    lines.append(f"artefact: {result.artifact_dir}")
    if result.run_id:
        lines.append(f"MLflow run id: {result.run_id}")
    if result.model_uri:
        version = f" (version {result.registered_version})" if result.registered_version else ""
        lines.append(f"model: {result.model_uri}{version}")
    if result.tracking_uri:
        if result.tracking_uri.startswith(("http://", "https://")):
            lines.append(f"MLflow UI: {result.tracking_uri}")
        else:
            lines.append(f"MLflow UI: mlflow ui --backend-store-uri {result.tracking_uri}")
    typer.echo("\n".join(lines))


def register(app: typer.Typer) -> None:
    """Add this module's commands to the top-level app."""

    @app.command("train", help=TRAIN_HELP)
    def train_command(
        config: Path = typer.Option(
            ..., "--config", "-c", help="Training config YAML (configs/<name>.yaml)."
        ),
        overrides: list[str] = typer.Option(
            [], "--set", help="Override a config value, e.g. --set training.epochs=2 (repeatable)."
        ),
        resume: str | None = typer.Option(
            None,
            "--resume",
            help="Continue from a checkpoint: 'auto' (the latest in the output dir) or a checkpoint folder.",
        ),
        output_dir: Path | None = typer.Option(
            None,
            "--output-dir",
            help="Where checkpoints, reports and the artefact go (overrides output_dir).",
        ),
    ) -> None:
        run_train(config, overrides, resume, output_dir)
