"""The command line: every command documents itself with an example; errors are one line, exit 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.main import get_command
from typer.testing import CliRunner

from textguard.cli import app


def _commands() -> list[list[str]]:
    # Typer ships its own click-compatible classes: recognise groups by their sub-commands.
    root = get_command(app)
    paths: list[list[str]] = []
    for name, command in root.commands.items():  # type: ignore[attr-defined]
        if hasattr(command, "commands"):
            paths.extend([name, sub] for sub in command.commands)
        else:
            paths.append([name])
    return paths


def test_top_level_help_lists_every_command() -> None:
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0
    for expected in (
        "data",
        "train",
        "evaluate",
        "compare",
        "runs",
        "promote",
        "export",
        "score",
        "serve",
        "report",
        "hashes",
    ):
        assert expected in result.output


@pytest.mark.parametrize("command", _commands(), ids=lambda parts: " ".join(parts))
def test_every_command_has_help_with_an_example(command: list[str]) -> None:
    result = CliRunner().invoke(app, [*command, "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "Example" in result.output, f"`textguard {' '.join(command)} --help` shows no example"


def test_module_entry_point_and_config_typo_is_one_line(tmp_path: Path) -> None:
    config = tmp_path / "broken.yaml"
    config.write_text("name: broken\nsourcez: []\n", encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "textguard", "data", "prepare", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "NO_COLOR": "1"},
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "sourcez" in lines[0], result.stderr


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--engine", "flink"], "unknown --engine 'flink'"),
        (["--master", "local[2]"], "--master and --spark-conf need --engine spark"),
        (["--engine", "spark", "--context"], "--context is not supported with --engine spark"),
        (["--engine", "spark", "--spark-conf", "novalue"], "must look like KEY=VALUE"),
    ],
)
def test_score_engine_options_are_checked_before_anything_loads(
    tmp_path: Path, extra: list[str], message: str
) -> None:
    from textguard.errors import ConfigError

    args = ["score", "--model", str(tmp_path / "nomodel"), "--input", "in.csv", "--output", "out.csv"]
    result = CliRunner().invoke(app, [*args, *extra])
    assert isinstance(result.exception, ConfigError) and message in str(result.exception)
