"""CLI commands: `textguard models list` and `textguard models prepare` (offline pretrained backbones)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

models_app = typer.Typer(
    name="models",
    help="Offline pretrained backbones (model.base: package:<name>): list and prepare them.",
    no_args_is_help=True,
)


@models_app.command("list")
def list_command() -> None:
    """List the offline backbones, their languages, size and text prefix, and whether each is installed.

    Example: textguard models list
    """
    from rich.console import Console
    from rich.table import Table

    from textguard.backbones.registry import BACKBONES, status

    table = Table(title="offline backbones (model.base: package:<name>)", title_justify="left")
    table.add_column("name", no_wrap=True)  # copied into configs: never truncated
    table.add_column("languages")
    table.add_column("params", justify="right")
    table.add_column("word emb.", justify="right")
    table.add_column("text prefix", no_wrap=True)
    table.add_column("package")
    locations = []
    for backbone in BACKBONES.values():
        state = status(backbone)
        if state.version is None:
            where = f"not installed: pip install {backbone.package}"
        elif state.directory is None:
            where = f"{backbone.package} {state.version}; built on first use"
        else:
            where = f"{backbone.package} {state.version}; ready"
            locations.append(f"{backbone.name}: {state.directory}")
        table.add_row(
            backbone.name,
            backbone.languages,
            f"{backbone.parameters / 1e6:.1f}M",
            f"{backbone.embedding_parameters / 1e6:.1f}M",
            repr(backbone.text_prefix) if backbone.text_prefix else "none",
            where,
        )
    console = Console()
    console.print(table)
    for line in locations:
        console.print(line, soft_wrap=True)


@models_app.command("prepare")
def prepare_command(
    name: Annotated[str, typer.Argument(help="Backbone name, e.g. multilingual-e5-small.")],
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Write the directory here instead of the cache."),
    ] = None,
) -> None:
    """Build (or verify) a backbone's Hugging Face directory; it loads with AutoModel / AutoTokenizer.

    Training does this on first use; run it to inspect or reuse the directory.

    Example: textguard models prepare multilingual-e5-small --output models/multilingual-e5-small
    """
    import logging

    from textguard.backbones.cache import read_manifest
    from textguard.backbones.registry import prepare

    logging.basicConfig(level=logging.INFO, format="%(asctime)s textguard: %(message)s", datefmt="%H:%M:%S")
    directory = prepare(name, output)
    manifest = read_manifest(directory) or {}
    typer.echo(f"{name}: {directory}")
    if manifest.get("package"):
        typer.echo(
            f"from {manifest['package']} {manifest.get('package_version')} "
            f"({manifest.get('source_file')}, sha256 {manifest.get('source_sha256')}), "
            f"{manifest.get('quantisation')}"
        )
    parity = manifest.get("engine_parity")
    if isinstance(parity, dict):
        typer.echo(
            f"agreement with the package's engine: median cosine {parity['median_cosine']:.4f}, "
            f"lowest {parity['min_cosine']:.4f} over {parity['sentences']} sentences"
        )


def register(app: typer.Typer) -> None:
    """Add this module's commands to the top-level app."""
    app.add_typer(models_app, name="models")
