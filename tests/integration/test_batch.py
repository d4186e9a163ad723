"""Batch scoring of csv/jsonl/parquet/txt files through the Scorer, via the library and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from textguard.batch import PREDICTED_COLUMN, ContextColumns, read_input, score_file
from textguard.errors import DataError
from textguard.labels import LABELS
from textguard.paths import project_root
from textguard.policy import UnknownPolicyError
from textguard.scorer import Scorer

ROWS = [
    {"id": "m-1", "text": "can you share your screen", "meeting": "standup"},
    {"id": "m-2", "text": "merci à tous", "meeting": "standup"},
    {"id": "m-3", "text": "", "meeting": "retro"},
    {"id": "m-4", "text": "the meeting starts now " * 30, "meeting": "retro"},
    {"id": "m-5", "text": "we ship on friday", "meeting": "planning"},
]
SCORE_COLUMNS = [f"score_{label}" for label in LABELS]


@pytest.fixture(scope="module")
def reference(tiny_artifact: Path) -> np.ndarray:
    return Scorer.from_artifact(tiny_artifact).predict_proba([row["text"] for row in ROWS])


def _check(out: pd.DataFrame, reference: np.ndarray, spec_thresholds: dict[str, float]) -> None:
    assert out["id"].tolist() == [row["id"] for row in ROWS]  # ids and order kept
    assert out["meeting"].tolist() == [row["meeting"] for row in ROWS]  # other columns kept
    np.testing.assert_allclose(out[SCORE_COLUMNS].to_numpy(dtype=float), reference, atol=1e-6)
    for labels, probs in zip(out[PREDICTED_COLUMN], reference, strict=True):
        expected = [label for label, p in zip(LABELS, probs, strict=True) if p >= spec_thresholds[label]]
        assert list(labels) == expected


def test_csv_in_csv_out(tiny_artifact: Path, tmp_path: Path, reference: np.ndarray) -> None:
    source = tmp_path / "chat.csv"
    pd.DataFrame(ROWS).to_csv(source, index=False)
    summary = score_file(tiny_artifact, source, tmp_path / "scored.csv", batch_size=2, progress=False)
    assert summary.rows == len(ROWS) and set(summary.positives) == set(LABELS)
    out = pd.read_csv(tmp_path / "scored.csv", keep_default_na=False, dtype={"id": str})
    out[PREDICTED_COLUMN] = [value.split(";") if value else [] for value in out[PREDICTED_COLUMN]]
    spec = Scorer.from_artifact(tiny_artifact).spec
    _check(out, reference, spec.thresholds)


def test_jsonl_in_jsonl_and_parquet_out(tiny_artifact: Path, tmp_path: Path, reference: np.ndarray) -> None:
    source = tmp_path / "chat.jsonl"
    source.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in ROWS), encoding="utf-8")
    spec = Scorer.from_artifact(tiny_artifact).spec
    score_file(tiny_artifact, source, tmp_path / "scored.jsonl", progress=False)
    _check(pd.read_json(tmp_path / "scored.jsonl", lines=True, dtype={"id": str}), reference, spec.thresholds)
    score_file(tiny_artifact, source, tmp_path / "scored.parquet", progress=False, max_tokens=64)
    _check(pd.read_parquet(tmp_path / "scored.parquet"), reference, spec.thresholds)


def test_txt_input_keeps_line_numbers_and_actions_come_from_a_policy(
    tiny_artifact: Path, tmp_path: Path
) -> None:
    from textguard.policy import PolicySet

    source = tmp_path / "captions.txt"
    source.write_text("first line\n\nthird line\n", encoding="utf-8")
    policies = project_root() / "configs/policies/default.yaml"
    summary = score_file(
        tiny_artifact, source, tmp_path / "out.jsonl", policy_file=policies, policy="strict", progress=False
    )
    records = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [record["line"] for record in records] == [1, 3]
    strict = PolicySet.load(policies).get("strict")
    thresholds = Scorer.from_artifact(tiny_artifact).spec.thresholds  # strict reviews at the model's own
    for record in records:
        decision = strict.decide({label: record[f"score_{label}"] for label in LABELS}, thresholds)
        assert (record["action"], record["flagged_labels"]) == (decision.action, decision.labels)
    assert sum((summary.actions or {}).values()) == 2
    with pytest.raises(UnknownPolicyError, match="nonesuch"):
        score_file(tiny_artifact, source, tmp_path / "x.jsonl", policy_file=policies, policy="nonesuch")


def test_context_scores_a_speakers_recent_rows_together(tiny_artifact: Path, tmp_path: Path) -> None:
    rows = [
        {"id": "a1", "text": "first part", "meeting_id": "m", "speaker_id": "a", "sent_at": 0},
        {"id": "b1", "text": "other speaker", "meeting_id": "m", "speaker_id": "b", "sent_at": 1},
        {"id": "a2", "text": "second part", "meeting_id": "m", "speaker_id": "a", "sent_at": 5},
        {"id": "a3", "text": "an hour later", "meeting_id": "m", "speaker_id": "a", "sent_at": 3605},
        {"id": "x", "text": "no meeting", "meeting_id": "", "speaker_id": "", "sent_at": 3606},
    ]
    source = tmp_path / "chat.jsonl"
    source.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    score_file(tiny_artifact, source, tmp_path / "out.jsonl", context=ContextColumns(), progress=False)
    out = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [row["context"] for row in out] == [["a1"], ["b1"], ["a1", "a2"], ["a3"], ["x"]]
    iso = source.read_text().replace('"sent_at": 0', '"sent_at": "yesterday"')
    source.write_text(iso, encoding="utf-8")
    with pytest.raises(DataError, match=r"'sent_at' must hold epoch seconds or ISO-8601.*data row 1"):
        score_file(tiny_artifact, source, tmp_path / "y.jsonl", context=ContextColumns(), progress=False)


def test_input_errors_name_file_and_row(tiny_artifact: Path, tmp_path: Path) -> None:
    csv = tmp_path / "no_text.csv"
    pd.DataFrame({"id": ["a"], "message": ["hi"]}).to_csv(csv, index=False)
    with pytest.raises(DataError, match=r"no column 'text' \(columns: id, message\)"):
        read_input(csv)
    assert read_input(csv, text_column="message")["message"].tolist() == ["hi"]

    jsonl = tmp_path / "bad.jsonl"
    jsonl.write_text('{"text": "ok"}\n{"text": null}\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"bad\.jsonl: 'text' must be text; 1 line\(s\).*data line 2"):
        read_input(jsonl)
    jsonl.write_text('{"text": "ok"}\nnot json\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"bad\.jsonl:2: not valid JSON"):
        read_input(jsonl)
    spreadsheet = tmp_path / "x.xlsx"
    spreadsheet.touch()
    with pytest.raises(DataError, match=r"unsupported input format \.xlsx"):
        read_input(spreadsheet)

    good = tmp_path / "good.csv"
    pd.DataFrame({"text": ["hi"]}).to_csv(good, index=False)
    (tmp_path / "exists.csv").write_text("x")
    with pytest.raises(DataError, match="exists; pass --overwrite"):
        score_file(tiny_artifact, good, tmp_path / "exists.csv", progress=False)
    with pytest.raises(DataError, match=r"unsupported output format \.txt"):
        score_file(tiny_artifact, good, tmp_path / "out.txt", progress=False)
    with pytest.raises(DataError, match="must not overwrite the input"):
        score_file(tiny_artifact, good, good, overwrite=True, progress=False)


def test_score_command(tiny_artifact: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from textguard.cli import app

    source = tmp_path / "chat.csv"
    pd.DataFrame(ROWS).to_csv(source, index=False)
    output = tmp_path / "scored.parquet"
    args = ["score", "--model", str(tiny_artifact), "--input", str(source), "--output", str(output)]
    result = CliRunner().invoke(app, [*args, "--batch-size", "2", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert f"scored {len(ROWS)} rows" in result.output
    assert pd.read_parquet(output)["id"].tolist() == [row["id"] for row in ROWS]
    again = CliRunner().invoke(app, [*args, "--no-progress"])
    assert isinstance(again.exception, DataError)


def test_score_with_a_policy_checks_it_against_the_model_first(
    tiny_artifact: Path, tmp_path: Path, reference: np.ndarray
) -> None:
    import yaml
    from typer.testing import CliRunner

    from textguard.cli import app
    from textguard.paths import project_root
    from textguard.policy import DEFAULT_POLICY_PATH, PolicyModelMismatch, PolicySet

    source = tmp_path / "chat.jsonl"
    pd.DataFrame(ROWS).to_json(source, orient="records", lines=True)
    shipped = PolicySet.load(project_root() / DEFAULT_POLICY_PATH)
    summary = score_file(
        tiny_artifact,
        source,
        tmp_path / "strict.jsonl",
        progress=False,
        policy_file=project_root() / DEFAULT_POLICY_PATH,
        policy="strict",
    )
    out = pd.read_json(tmp_path / "strict.jsonl", lines=True)
    thresholds = Scorer.from_artifact(tiny_artifact).spec.thresholds
    expected = [
        shipped.get("strict").decide(dict(zip(LABELS, probs, strict=True)), thresholds).action
        for probs in reference
    ]
    assert out["action"].tolist() == expected and sum((summary.actions or {}).values()) == len(ROWS)

    # The tiny model's thresholds are 0.5: a strict policy reviewing at 0.6 would be laxer.
    laxer = {label: {"review": 0.6, "block": 0.9} for label in LABELS}
    policy_file = tmp_path / "policies.yaml"
    policy_file.write_text(
        yaml.safe_dump({"default": "strict", "policies": {"strict": {"thresholds": laxer}}})
    )
    args = ["score", "--model", str(tiny_artifact), "--input", str(source), "--no-progress"]
    result = CliRunner().invoke(
        app, [*args, "--output", str(tmp_path / "refused.csv"), "--policy", str(policy_file)]
    )
    assert isinstance(result.exception, PolicyModelMismatch)
    assert "'strict' is strict but laxer" in str(result.exception)
    assert not (tmp_path / "refused.csv").exists()
