"""`textguard promote` and `textguard score --model models:/...` against a real sqlite MLflow store."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from textguard.errors import ConfigError, ModelLoadError
from textguard.scorer import Scorer
from textguard.tracking import registry, training_run

TEXTS = ["can you share your screen", "merci à tous", "we ship on friday"]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, tiny_artifact: Path) -> tuple[str, list[str]]:
    """A store with two registered versions of `textguard` (runs r1, r2); candidate -> 2."""
    root = tmp_path_factory.mktemp("promote-store")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    run_ids = []
    for name in ("r1", "r2"):
        with training_run("promote-test", uri, name, {}, {"seed": 1}) as run:
            run.log_model(tiny_artifact)
        assert run.run_id is not None
        run_ids.append(run.run_id)
    return uri, run_ids


@pytest.fixture
def env(store: tuple[str, list[str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store[0])
    monkeypatch.setenv("TEXTGUARD_CACHE_DIR", str(tmp_path / "cache"))
    return store[0]


def test_promote_command_moves_the_alias_and_says_what_moved(
    store: tuple[str, list[str]], env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from textguard.cli import app

    runner = CliRunner()
    first = runner.invoke(
        app, ["promote", "--version", "1", "--alias", "champion", "--reason", "baseline", "--user", "alice"]
    )
    assert first.exit_code == 0, first.output
    assert "textguard@champion: nothing -> version 1 (by alice: baseline)" in first.output

    monkeypatch.setenv("USER", "bob")
    second = runner.invoke(app, ["promote", "--run", store[1][1], "--alias", "champion"])
    assert second.exit_code == 0, second.output
    assert "textguard@champion: version 1 -> version 2 (by bob: manual promotion)" in second.output
    assert registry.alias_version("textguard", "champion") == 2

    missing = runner.invoke(app, ["promote", "--version", "42", "--alias", "champion"])
    assert isinstance(missing.exception, ModelLoadError) and "textguard/42 not found" in str(
        missing.exception
    )
    neither = runner.invoke(app, ["promote", "--alias", "champion"])
    assert isinstance(neither.exception, ConfigError)


def test_promote_from_alias_follows_the_other_alias(env: str) -> None:
    from textguard.cli import app

    runner = CliRunner()
    candidate = registry.alias_version("textguard", "candidate")
    moved = runner.invoke(
        app, ["promote", "--from-alias", "candidate", "--alias", "staging", "--reason", "r"]
    )
    assert moved.exit_code == 0, moved.output
    assert registry.alias_version("textguard", "staging") == candidate
    unknown = runner.invoke(app, ["promote", "--from-alias", "nope", "--alias", "staging"])
    assert isinstance(unknown.exception, ConfigError) and "textguard@nope does not exist" in str(
        unknown.exception
    )


def test_promote_errors_are_one_line_with_exit_code_2(env: str, tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "textguard", "promote", "--version", "42", "--alias", "champion"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "MLFLOW_TRACKING_URI": env},
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 2
    assert "textguard/42 not found" in result.stderr and "Traceback" not in result.stderr


def test_score_command_reads_models_uri(env: str, tiny_artifact: Path, tmp_path: Path) -> None:
    from textguard.cli import app

    registry.promote("textguard", "champion", version=1, reason="score test")
    source = tmp_path / "in.jsonl"
    pd.DataFrame({"id": ["a", "b", "c"], "text": TEXTS}).to_json(source, orient="records", lines=True)
    output = tmp_path / "out.csv"
    args = ["score", "--model", "models:/textguard@champion", "--input", str(source), "--output", str(output)]
    result = CliRunner().invoke(app, [*args, "--no-progress"])
    assert result.exit_code == 0, result.output
    scored = pd.read_csv(output)
    columns = [column for column in scored.columns if column.startswith("score_")]
    expected = Scorer.from_artifact(tiny_artifact).predict_proba(TEXTS)
    np.testing.assert_allclose(scored[columns].to_numpy(), expected, atol=1e-6)
