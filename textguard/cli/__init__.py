"""The `textguard` command: a thin layer that parses arguments and calls library functions.

Each sub-command lives in its own module with a `register(app)` function; heavy imports happen
inside the command bodies so that `textguard --help` stays instant. Errors a user can fix
(`TextguardError`) are printed as one line on stderr with exit code 2, never as a traceback.
"""

from __future__ import annotations

import sys

import typer

from textguard.cli import data, evaluate, hashes, models, registry, report, serve, train
from textguard.errors import TextguardError

app = typer.Typer(
    name="textguard",
    help="Train, evaluate and serve TVEC classifiers for meeting chat and live captions.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

for module in (data, train, models, registry, evaluate, serve, report, hashes):
    module.register(app)


def main() -> None:
    """Console-script entry point."""
    try:
        app(standalone_mode=True)
    except TextguardError as exc:
        typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.secho("interrupted", err=True)
        sys.exit(130)
