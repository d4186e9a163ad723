"""`textguard hashes import|add|list|remove`: a round trip through the real CLI, and one-line errors."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from textguard.cli import app
from textguard.known_content import KnownContentIndex
from textguard.text import normalize

PASSAGE = (
    "Brothers of the northern cells, the hour has come. Every traitor who stands with the government "
    "will be hunted down and punished, and the fire we light tonight will spread through every city."
)
SLOGAN = "Glory to the martyrs of the dawn"


def _run(*args: str, stdin: str | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args), input=stdin, catch_exceptions=False)
    return result.exit_code, result.output


def test_round_trip(tmp_path: Path) -> None:
    store = str(tmp_path / "lists")
    add = ("hashes", "add", "--store", store, "--list", "local")
    code, output = _run(*add, "--text", PASSAGE, "--label", "tvec")
    assert code == 0 and "list local" in output and "2 added; version 1" in output
    assert "sha256:" in output and "minhash:" in output
    code, output = _run(*add, "--stdin", stdin=SLOGAN + "\n")
    assert code == 0 and "1 added; version 2" in output and "exact hash only" in output
    code, output = _run(*add, "--text", SLOGAN.upper())
    assert code == 0 and "0 added, 1 already listed; version 2" in output

    stored = (tmp_path / "lists" / "local.json").read_text(encoding="utf-8")
    assert "Brothers" not in stored and "martyrs" not in stored.lower()  # the text is never kept

    code, output = _run("hashes", "list", "--store", store)
    assert code == 0 and "local" in output and "│       2 │" in output
    code, output = _run("hashes", "list", "--store", store, "--list", "local", "--format", "json")
    listing = json.loads(output)
    assert [item["version"] for item in listing["lists"]] == [2]
    assert listing["index_version"] == KnownContentIndex.load(tmp_path / "lists").version
    kinds = [entry["hash_type"] for entry in listing["lists"][0]["entries"]]
    assert kinds == ["sha256", "minhash", "sha256"]

    code, exported = _run("hashes", "list", "--store", store, "--list", "local", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(exported)))
    assert code == 0 and len(rows) == 3 and {row["list_id"] for row in rows} == {"local"}
    exchange = tmp_path / "local.csv"
    exchange.write_text(exported.replace(",local,", ",shared,"), encoding="utf-8")
    code, output = _run("hashes", "import", str(exchange), "--store", store, "--list", "shared")
    assert code == 0 and "list shared" in output and "3 added; version 1" in output
    matches = KnownContentIndex.load(tmp_path / "lists").match(normalize(PASSAGE.replace("city", "town")))
    assert sorted((match.list_id, match.kind) for match in matches) == [
        ("local", "minhash"),
        ("shared", "minhash"),
    ]

    slogan_id = listing["lists"][0]["entries"][2]["hash_id"]
    code, output = _run("hashes", "remove", "--store", store, "--list", "local", "--hash", slogan_id)
    assert code == 0 and "1 removed; version 3" in output
    code, output = _run("hashes", "remove", "--store", store, "--list", "local")
    assert code == 0 and "2 removed; version 4" in output
    matches = KnownContentIndex.load(tmp_path / "lists").match(normalize(SLOGAN))
    assert [match.list_id for match in matches] == ["shared"]  # only the other list still has it


def test_errors_are_one_line_with_a_non_zero_exit(tmp_path: Path) -> None:
    store = tmp_path / "lists"
    bad = tmp_path / "bad.csv"
    bad.write_text(f"hash_type,hash_value\nsha256,{'a' * 64}\nsha256,123\n", encoding="utf-8")
    cases = [
        (["import", str(bad), "--list", "partner"], "line 3, field hash_value"),
        (["add", "--list", "partner", "--text", "!!! 😀"], "nothing to hash"),
        (["add", "--list", "partner"], "--text or --stdin"),
        (["add", "--list", "Bad Id", "--text", SLOGAN], "list id 'Bad Id'"),
        (["remove", "--list", "partner"], "no hash list 'partner'"),
        (["list", "--list", "partner"], "no hash list 'partner'"),
    ]
    for args, expected in cases:
        result = subprocess.run(
            [sys.executable, "-m", "textguard", "hashes", *args, "--store", str(store)],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "NO_COLOR": "1"},
            check=False,
        )
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert result.returncode == 2, (args, result.stderr)
        assert len(lines) == 1 and expected in lines[0], (args, result.stderr)
    assert not (store / "partner.json").exists()
