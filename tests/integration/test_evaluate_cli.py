"""`textguard evaluate / compare / runs` end to end: real tiny models and scoring, a real sqlite MLflow store.

The models. The tiny test encoder is random, so its raw predictions are noise and a "regression" of
noise proves nothing. The good model here is made meaningful by construction instead: a linear probe
fitted (scikit-learn logistic regression, standardisation folded into the weights) on the frozen
encoder's pooled output, written into the classifier head. The labelled data is synthetic: each label
is signalled by one ordinary word (e.g. "microphone") inserted into benign meeting sentences, so the
probe learns a real, checkable input -> label relation in well under a second, with no training loop.
The planted regression is that model with one label's classifier bias pushed so far down that the
label is never predicted on these rows (ranking untouched, so PR-AUC must not move while F1 collapses).
The good model is registered as `textguard@champion` so the gate runs exactly as documented.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from textguard.labels import LABELS
from textguard.paths import resources_dir

MARKERS = {
    "violent_threat": "microphone",
    "extremist_glorification": "slides",
    "hate_dehumanization": "recording",
}
PLANTED = "hate_dehumanization"
CORPUS = Path(__file__).parents[1] / "data" / "tokenizer_corpus.txt"
#: Rich tables fold cells to the terminal width; give the captured output room.
WIDE = {"COLUMNS": "300"}
MEETING_SUITE = resources_dir() / "suites" / "meeting_functional.csv"
#: Language of each line of tests/data/tokenizer_corpus.txt.
LINE_LANGUAGES = ["en"] * 8 + ["fr"] * 3 + ["de"] * 3 + ["es"] * 3 + ["pt"] * 2 + ["it"] * 2 + ["ar"] * 2
LINE_LANGUAGES += ["nl", "tr", "ru"] + ["en"] * 4


@dataclass(frozen=True)
class Env:
    uri: str
    data: Path
    good: Path
    regressed: Path
    gate: Path
    root: Path


def _rows(count: int, seed: int, split: str) -> list[dict[str, object]]:
    lines = [line for line in CORPUS.read_text(encoding="utf-8").splitlines() if line]
    usable = [i for i, line in enumerate(lines) if not any(word in line.split() for word in MARKERS.values())]
    rng = np.random.default_rng(seed)
    rows = []
    for index in range(count):
        line = int(rng.choice(usable))
        words = lines[line].split()
        labels = [label for label in LABELS if rng.random() < 0.35]
        for label in labels:
            words.insert(int(rng.integers(len(words) + 1)), MARKERS[label])
        rows.append(
            {
                "id": f"{split}-{index}",
                "text": " ".join(words),
                "labels": labels,
                "language": LINE_LANGUAGES[line],
                "source": "chat" if index % 2 else "caption",
                "dataset": "toy_a" if index % 3 else "toy_b",
                "split": split,
            }
        )
    return rows


def _write_prepared(directory: Path) -> dict[str, list[dict[str, object]]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from textguard.data.prepared import arrow_schema, write_report

    directory.mkdir(parents=True)
    splits = {"train": _rows(300, 1, "train"), "validation": [], "test": _rows(240, 2, "test")}
    for split, rows in splits.items():
        pq.write_table(pa.Table.from_pylist(rows, schema=arrow_schema()), directory / f"{split}.parquet")
    write_report({"name": "toy", "splits": {name: len(rows) for name, rows in splits.items()}}, directory)
    return splits


def _fit_probe(source: Path, target: Path, train: list[dict[str, object]]) -> None:
    """Copy `source` and replace its classifier head by a logistic-regression probe on pooled features."""
    import torch
    from safetensors.torch import load_file, save_file
    from sklearn.linear_model import LogisticRegression
    from transformers import AutoModelForSequenceClassification

    from textguard.artifact import refresh_checksums
    from textguard.encoding import pad_batch
    from textguard.scorer import Scorer

    shutil.copytree(source, target)
    scorer = Scorer.from_artifact(target)
    model = AutoModelForSequenceClassification.from_pretrained(target).eval()
    ids, mask = pad_batch(scorer.encode([str(row["text"]) for row in train]), scorer.spec.pad_token_id)
    with torch.inference_mode():
        features = model.bert(
            input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask)
        ).pooler_output
    x = features.numpy().astype(np.float64)
    mean, scale = x.mean(axis=0), x.std(axis=0) + 1e-12
    weight = np.zeros((len(LABELS), x.shape[1]))
    bias = np.zeros(len(LABELS))
    for column, label in enumerate(LABELS):
        y = np.array([label in row["labels"] for row in train], dtype=int)  # type: ignore[operator]
        probe = LogisticRegression(C=10.0, max_iter=5000).fit((x - mean) / scale, y)
        # w.(x - mean)/scale + b  ==  (w/scale).x + (b - w.mean/scale)
        weight[column] = probe.coef_[0] / scale
        bias[column] = probe.intercept_[0] - float(np.dot(probe.coef_[0], mean / scale))
    tensors = load_file(str(target / "model.safetensors"))
    tensors["classifier.weight"] = torch.tensor(weight, dtype=torch.float32)
    tensors["classifier.bias"] = torch.tensor(bias, dtype=torch.float32)
    save_file(tensors, str(target / "model.safetensors"), metadata={"format": "pt"})
    refresh_checksums(target)


def _plant_regression(good: Path, target: Path, texts: list[str]) -> None:
    """`good` with PLANTED's bias lowered until no row of `texts` reaches its threshold."""
    import torch
    from safetensors.torch import load_file, save_file

    from textguard.artifact import refresh_checksums
    from textguard.scorer import Scorer

    column = LABELS.index(PLANTED)
    highest = float(Scorer.from_artifact(good).logits(texts)[:, column].max())
    shutil.copytree(good, target)
    tensors = load_file(str(target / "model.safetensors"))
    bias = tensors["classifier.bias"].clone()
    bias[column] -= max(highest, 0.0) + 20.0
    tensors["classifier.bias"] = bias.to(torch.float32)
    save_file(tensors, str(target / "model.safetensors"), metadata={"format": "pt"})
    refresh_checksums(target)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, tiny_artifact: Path) -> Iterator[Env]:
    from textguard.tracking import training_run

    root = tmp_path_factory.mktemp("evaluate")
    with pytest.MonkeyPatch.context() as patch:
        # MLflow puts artefacts under ./mlruns and the model cache under $TEXTGUARD_CACHE_DIR: keep both here.
        patch.chdir(root)
        patch.setenv("TEXTGUARD_CACHE_DIR", str(root / "cache"))
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        patch.delenv("TEXTGUARD_EVAL_HASH_KEY", raising=False)
        splits = _write_prepared(root / "prepared")
        good, regressed = root / "good", root / "regressed"
        _fit_probe(tiny_artifact, good, splits["train"])
        _plant_regression(good, regressed, [str(row["text"]) for row in splits["train"] + splits["test"]])
        uri = f"sqlite:///{root / 'mlflow.db'}"
        with training_run("textguard-train", uri, "probe", {}, {}) as run:
            run.log_model(good, registered_model_name="textguard", alias="champion")
        with training_run("textguard-train", uri, "probe-regressed", {}, {}) as run:
            run.log_model(regressed, registered_model_name="textguard", alias="candidate")
        gate = root / "gate.yaml"
        gate.write_text(
            "metrics: [macro_f1, f1_violent_threat, f1_extremist_glorification, f1_hate_dehumanization]\n"
            "slice_metrics: [macro_f1]\nslice_dimensions: [source]\nmin_slice_rows: 40\n"
            "margin: 0.02\nrequire_significance: true\nresamples: 300\n",
            encoding="utf-8",
        )
        yield Env(uri, root / "prepared", good, regressed, gate, root)


def _evaluate(env: Env, *args: str) -> tuple[int, str]:
    from textguard.cli import app

    result = CliRunner().invoke(
        app, ["evaluate", "--data", str(env.data), "--tracking-uri", env.uri, *args], env=WIDE
    )
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


def _run_ids(output: str, prefix: str) -> list[str]:
    return [line.split()[2] for line in output.splitlines() if line.startswith(prefix)]


def _all_metrics(env: Env, run_id: str) -> dict[str, float]:
    """Every value of an evaluation: metrics.json (MLflow metrics hold the headline subset)."""
    from mlflow import MlflowClient

    local = MlflowClient(env.uri).download_artifacts(run_id, "metrics.json", str(env.root / f"m-{run_id}"))
    return json.loads(Path(local).read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def test_evaluate_logs_every_metric_family_and_artefact(env: Env) -> None:
    from mlflow import MlflowClient

    code, output = _evaluate(env, "--model", str(env.good), "--suite", str(MEETING_SUITE))
    assert code == 0, output
    (run_id,) = _run_ids(output, "evaluation run:")
    client = MlflowClient(env.uri)
    run = client.get_run(run_id)
    logged, tags = run.data.metrics, run.data.tags
    metrics = _all_metrics(env, run_id)
    # A few headline metrics in MLflow, every value in metrics.json and the tables.
    assert {"macro_f1", "micro_f1", "macro_pr_auc", "micro_ece", "n_rows", f"f1_{LABELS[0]}"} <= set(logged)
    assert set(logged) < set(metrics) and len(logged) < 70
    assert all(logged[name] == pytest.approx(metrics[name]) for name in logged)
    assert not any(name.startswith("slice.") or ".func." in name for name in logged)
    for label in LABELS:
        for measure in (
            "precision",
            "recall",
            "f1",
            "pr_auc",
            "roc_auc",
            "recall_at_fpr_1pct",
            "ece",
            "support",
        ):
            assert f"{measure}_{label}" in metrics, f"{measure}_{label}"
    for average in ("macro", "micro"):
        for measure in ("precision", "recall", "f1", "pr_auc", "roc_auc", "recall_at_fpr_1pct", "ece"):
            assert f"{average}_{measure}" in metrics
    assert metrics["n_rows"] == 240
    # The probe learnt its marker words: this is a model worth protecting from regressions.
    assert metrics["macro_f1"] > 0.9
    languages = {key.split(".")[2] for key in metrics if key.startswith("slice.language.")}
    assert {"en", "fr", "de"} <= languages
    assert metrics["slice.source.chat.n_rows"] + metrics["slice.source.caption.n_rows"] == 240
    assert "slice.dataset.toy_a.macro_f1" in metrics and "slice.language.fr.f1_violent_threat" in metrics
    assert metrics["suite.meeting_functional.n_cases"] == 221
    for key in ("accuracy", "balanced_accuracy", "hard_negative.accuracy", "label_exact_match"):
        assert f"suite.meeting_functional.{key}" in metrics
    assert "suite.meeting_functional.func.threat_split_caption_h.accuracy" in metrics
    # Every functionality per language: balanced and hard-negative accuracy per language as headline
    # metrics, the functionality x language table as an artefact.
    suite_languages = {"en", "fr", "de", "es", "pt", "it", "ar"}
    for code in suite_languages:
        for name in ("balanced_accuracy", "hard_negative.accuracy"):
            assert f"suite.meeting_functional.language.{code}.{name}" in logged, (code, name)
    frame = pd.read_csv(
        client.download_artifacts(
            run_id, "suites/meeting_functional_functionality_by_language.csv", str(env.root / "dl-suite")
        )
    )
    assert set(frame.columns) >= suite_languages and len(frame) == 17
    cases = pd.read_csv(MEETING_SUITE)
    fr_history = cases[(cases["functionality"] == "history_nh") & (cases["language"] == "fr")]
    row = frame.set_index("functionality").loc["history_nh"]
    predictions_suite = pd.read_parquet(
        client.download_artifacts(run_id, "predictions.parquet", str(env.root / "dl-suite"))
    )
    suite_rows = predictions_suite[predictions_suite["partition"] == "suite:meeting_functional"]
    fr_rows = suite_rows[(suite_rows["functionality"] == "history_nh") & (suite_rows["language"] == "fr")]
    flagged = fr_rows[[c for c in fr_rows.columns if c.startswith("pred_")]].any(axis=1)
    assert len(fr_rows) == len(fr_history) and row["fr"] == pytest.approx(float((~flagged).mean()))
    languages = pd.read_csv(
        client.download_artifacts(
            run_id, "suites/meeting_functional_languages.csv", str(env.root / "dl-suite")
        )
    ).set_index("language")
    assert languages.loc["fr", "hard_negative_accuracy"] == pytest.approx(
        logged["suite.meeting_functional.language.fr.hard_negative.accuracy"]
    )
    assert tags["textguard.run_type"] == "evaluation"
    assert tags["textguard.data.split"] == "test" and len(tags["textguard.data.digest"]) == 16
    assert tags["textguard.base_model"] == "tiny-bert"
    assert run.inputs.dataset_inputs[0].dataset.digest == tags["textguard.data.digest"]

    artefacts = {item.path for item in client.list_artifacts(run_id)}
    plots = {item.path for item in client.list_artifacts(run_id, "plots")}
    assert {
        "predictions.parquet",
        "slices.csv",
        "errors.json",
        "calibration.json",
        "metrics.json",
        "provenance.json",
    } <= artefacts
    assert "tables/labels.csv" in {item.path for item in client.list_artifacts(run_id, "tables")}
    assert (
        tags["textguard.eval.labels"] == ",".join(LABELS) and tags["textguard.eval.perturbation_seed"] == "0"
    )
    assert len(tags["textguard.suite.meeting_functional.sha256"]) == 64
    assert {"plots/reliability_diagram.png", "plots/pr_curves.png", "plots/confusion_matrices.png"} <= plots
    local = Path(client.download_artifacts(run_id, "errors.json", str(env.root / "dl-errors")))
    errors = json.loads(local.read_text(encoding="utf-8"))
    texts = {str(row["text"]) for row in _rows(240, 2, "test")}
    assert errors and all(row["text"].startswith("hmac:") and row["text"] not in texts for row in errors)
    predictions = pd.read_parquet(
        client.download_artifacts(run_id, "predictions.parquet", str(env.root / "dl"))
    )
    assert "text" not in predictions and not set(predictions["row_id"]) & {f"test-{i}" for i in range(240)}
    assert set(predictions["partition"]) == {"clean", "suite:meeting_functional"}


def test_evaluating_twice_gives_identical_numbers(env: Env) -> None:
    from mlflow import MlflowClient

    runs = []
    for _ in range(2):
        code, output = _evaluate(env, "--model", str(env.good), "--experiment", "twice")
        assert code == 0, output
        runs.extend(_run_ids(output, "evaluation run:"))
    client = MlflowClient(env.uri)
    first, second = (client.get_run(run_id).data.metrics for run_id in runs)
    assert first == second
    assert _all_metrics(env, runs[0]) == _all_metrics(env, runs[1]) and len(_all_metrics(env, runs[0])) > 100


def test_robustness_is_seeded(env: Env) -> None:
    from mlflow import MlflowClient

    runs = []
    for _ in range(2):
        code, output = _evaluate(
            env,
            "--model",
            str(env.good),
            "--perturb",
            "obfuscation,caption,typos",
            "--seed",
            "7",
            "--experiment",
            "robust",
            "--set",
            "slice_dimensions=[source]",
        )
        assert code == 0, output
        runs.extend(_run_ids(output, "evaluation run:"))
    client = MlflowClient(env.uri)
    assert client.get_run(runs[0]).data.metrics == client.get_run(runs[1]).data.metrics
    first, second = (_all_metrics(env, run_id) for run_id in runs)
    assert first == second
    logged = client.get_run(runs[0]).data.metrics
    assert "perturb.typos.delta.macro_f1" in logged and "perturb.typos.flip_rate" in logged
    for kind in ("leetspeak", "homoglyphs", "zero_width", "spacing", "caption", "typos"):
        assert f"perturb.{kind}.macro_f1" in first and f"perturb.{kind}.delta.macro_f1" in first
        assert 0.0 <= first[f"perturb.{kind}.flip_rate"] <= 1.0
        assert first[f"perturb.{kind}.changed_fraction"] > 0.5, kind  # the perturbation really applied
    # Typos are not folded back by normalize(): some decisions must change.
    assert first["perturb.typos.flip_rate"] > 0


def test_planted_regression_trips_the_gate_and_compare_reports_it(env: Env) -> None:
    from mlflow import MlflowClient

    from textguard.cli import app

    code, output = _evaluate(
        env,
        "--model",
        str(env.regressed),
        "--baseline",
        "models:/textguard@champion",
        "--fail-on-regression",
        "--gate",
        str(env.gate),
        "--experiment",
        "gate",
    )
    assert code == 3, output
    assert "regression gate failed" in output and f"f1_{PLANTED}" in output
    (candidate,) = _run_ids(output, "evaluation run:")
    (baseline,) = _run_ids(output, "baseline run:")
    client = MlflowClient(env.uri)
    tags = client.get_run(candidate).data.tags
    assert tags["textguard.gate.status"] == "failed" and tags["textguard.eval.baseline_run_id"] == baseline
    base_tags = client.get_run(baseline).data.tags
    assert base_tags["textguard.model.version"] == "1" and base_tags["textguard.model.alias"] == "champion"
    assert base_tags["textguard.model.training_run_id"]

    report = env.root / "report"
    result = CliRunner().invoke(
        app,
        [
            "compare",
            baseline,
            candidate,
            "--output",
            str(report),
            "--tracking-uri",
            env.uri,
            "--resamples",
            "300",
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads((report / "comparison.json").read_text(encoding="utf-8"))
    rows = {row["name"]: row for row in summary["metrics"]}
    loss = rows[f"f1_{PLANTED}"]["differences"][0]
    assert (
        loss["delta"] < -0.5 and loss["ci_high"] < 0 and loss["p_holm"] < 0.05 and loss["winner"] == baseline
    )
    # A bias shift keeps the ranking: PR-AUC does not move, and untouched labels show no winner.
    assert abs(rows[f"pr_auc_{PLANTED}"]["differences"][0]["delta"]) < 1e-9
    for label in LABELS:
        if label != PLANTED:
            assert rows[f"f1_{label}"]["differences"][0]["winner"] is None
    mcnemar = {(item["partition"], item["label"]): item for item in summary["mcnemar"]}
    assert mcnemar[("clean", PLANTED)]["adjusted_p"] < 0.05
    assert mcnemar[("clean", PLANTED)]["reference_only_correct"] > 0
    page = (report / "comparison.html").read_text(encoding="utf-8")
    assert "data:image/png;base64," in page and "<img" in page and 'src="plots/' not in page
    assert "## Per label" in (report / "comparison.md").read_text(encoding="utf-8")
    (comparison_run,) = [
        line.split()[2] for line in result.output.splitlines() if line.startswith("comparison run:")
    ]
    logged = {item.path for item in client.list_artifacts(comparison_run, "comparison")}
    assert "comparison/comparison.html" in logged


def test_show_text_keeps_texts_and_ids(env: Env) -> None:
    from mlflow import MlflowClient

    code, output = _evaluate(
        env, "--model", "models:/textguard@champion", "--experiment", "listing", "--show-text"
    )
    assert code == 0, output
    (run_id,) = _run_ids(output, "evaluation run:")
    client = MlflowClient(env.uri)
    errors = json.loads(
        Path(client.download_artifacts(run_id, "errors.json", str(env.root / "dl-shown"))).read_text()
    )
    texts = {str(row["text"]) for row in _rows(240, 2, "test")}
    assert errors and all(row["text"] in texts for row in errors)
    predictions = pd.read_parquet(
        client.download_artifacts(run_id, "predictions.parquet", str(env.root / "dl-shown"))
    )
    assert set(predictions["text"]) == texts and set(predictions["id"]) == {f"test-{i}" for i in range(240)}


def _runs(env: Env, *args: str, columns: int = 300) -> str:
    from textguard.cli import app

    result = CliRunner().invoke(
        app, ["runs", "--tracking-uri", env.uri, *args], env={"COLUMNS": str(columns)}
    )
    assert result.exit_code == 0, result.output
    return result.output


def test_runs_compare_promote_round_trip_with_id_prefixes(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    """The ids `textguard runs` prints are what evaluate --baseline, compare and promote --run take."""
    from mlflow import MlflowClient

    from textguard.cli import app
    from textguard.policy import PolicyModelMismatch
    from textguard.tracking import registry

    shipped_policies = Path(__file__).parents[2] / "configs" / "policies" / "default.yaml"
    code, output = _evaluate(
        env,
        "--model",
        "models:/textguard@champion",
        "--experiment",
        "roundtrip",
        "--policy",
        str(shipped_policies),
    )
    assert code == 0, output
    (champion_run,) = _run_ids(output, "evaluation run:")
    # The policy file fits this model; only `lenient` says it is laxer (and is named).
    laxer = MlflowClient(env.uri).get_run(champion_run).data.tags["textguard.eval.policies_laxer_than_model"]
    assert laxer and {item.split(":")[0] for item in laxer.split(",")} == {"lenient"}
    strict_too_lax = env.root / "strict-too-lax.yaml"
    thresholds = "\n".join(f"      {label}: {{review: 0.9, block: 0.95}}" for label in LABELS)
    strict_too_lax.write_text(f"default: strict\npolicies:\n  strict:\n    thresholds:\n{thresholds}\n")
    with pytest.raises(PolicyModelMismatch, match="'strict' is strict but laxer"):
        _evaluate(env, "--model", "models:/textguard@champion", "--policy", str(strict_too_lax))
    listed = json.loads(_runs(env, "--experiment", "roundtrip", "--format", "json"))
    assert [row["run_id"] for row in listed] == [champion_run]
    short = listed[0]["short_id"]
    assert len(short) >= 8 and champion_run.startswith(short)
    assert (
        listed[0]["model"] == "textguard"
        and listed[0]["version"] == "1"
        and listed[0]["type"] == "evaluation"
    )

    # The candidate against the evaluation run's prefix: the baseline is the version that run evaluated.
    code, output = _evaluate(
        env,
        "--model",
        "models:/textguard@candidate",
        "--baseline",
        short,
        "--gate",
        str(env.gate),
        "--experiment",
        "roundtrip",
    )
    assert code == 0 and "regression gate failed" in output, output  # no --fail-on-regression: exit 0
    (candidate_run,) = _run_ids(output, "evaluation run:")
    (baseline_run,) = _run_ids(output, "baseline run:")
    client = MlflowClient(env.uri)
    assert client.get_run(baseline_run).data.tags["textguard.model.uri"] == "models:/textguard/1"

    # Readable at 80 columns (and piped: CliRunner is not a terminal): whole ids, no folded cells.
    table = _runs(env, "--experiment", "roundtrip", "--sort", "macro_f1", columns=80)
    lines = table.splitlines()
    assert all(len(line) <= 80 for line in lines[:5]) and "…" not in table
    by_id = {row["run_id"]: row["short_id"] for row in json.loads(_runs(env, "--format", "json", "-n", "50"))}
    body = [line.split()[0] for line in lines[2:5]]
    assert set(body) == {by_id[candidate_run], by_id[baseline_run], by_id[champion_run]}
    assert lines[2].split()[0] in (by_id[baseline_run], by_id[champion_run])  # sorted: v1 beats v2
    assert "macro_f1" in lines[0] and "left out at 80 columns" in table
    csv_rows = list(csv.DictReader(io.StringIO(_runs(env, "--experiment", "roundtrip", "--format", "csv"))))
    assert {row["run_id"] for row in csv_rows} == {candidate_run, baseline_run, champion_run}

    report = env.root / "roundtrip-report"
    compared = CliRunner().invoke(
        app,
        [
            "compare",
            by_id[baseline_run],
            by_id[candidate_run],
            "--output",
            str(report),
            "--resamples",
            "200",
            "--no-log",
            "--tracking-uri",
            env.uri,
        ],
    )
    assert compared.exit_code == 0, compared.output
    summary = json.loads((report / "comparison.json").read_text(encoding="utf-8"))
    assert [run["run_id"] for run in summary["runs"]] == [baseline_run, candidate_run]
    assert summary["mismatches"] == []

    monkeypatch.setenv("MLFLOW_TRACKING_URI", env.uri)
    promoted = CliRunner().invoke(
        app, ["promote", "--run", by_id[baseline_run], "--alias", "production", "--reason", "won the compare"]
    )
    assert promoted.exit_code == 0, promoted.output
    assert registry.alias_version("textguard", "production", tracking_uri=env.uri) == 1


def test_unknown_sort_metric_exits_2_with_the_known_ones(env: Env, tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "textguard", "runs", "--sort", "nosuchmetric", "--tracking-uri", env.uri],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])},
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert "unknown --sort metric 'nosuchmetric'" in result.stderr and "macro_f1" in result.stderr
    assert "Traceback" not in result.stderr


def test_compare_refuses_runs_with_different_perturbation_seeds(env: Env) -> None:
    from textguard.cli import app
    from textguard.evaluation.compare import RunsNotComparable

    runs = []
    for seed in ("1", "2"):
        code, output = _evaluate(
            env,
            "--model",
            str(env.good),
            "--perturb",
            "typos",
            "--seed",
            seed,
            "--experiment",
            "seeds",
            "--set",
            "slice_dimensions=[source]",
        )
        assert code == 0, output
        runs += _run_ids(output, "evaluation run:")
    arguments = ["compare", *runs, "--tracking-uri", env.uri, "--resamples", "100", "--no-log"]
    refused = CliRunner().invoke(app, [*arguments, "--output", str(env.root / "seeds-refused")])
    assert isinstance(refused.exception, RunsNotComparable)
    message = str(refused.exception)
    assert "perturbation seed differs" in message and "seed 1" in message and "seed 2" in message
    assert "--allow-mismatch" in message and "data digest" not in message
    assert not (env.root / "seeds-refused").exists()

    forced = CliRunner().invoke(app, [*arguments, "--allow-mismatch", "--output", str(env.root / "seeds")])
    assert forced.exit_code == 0, forced.output
    assert "MISMATCH" in forced.output and "perturbation seed differs" in forced.output
    summary = json.loads((env.root / "seeds" / "comparison.json").read_text(encoding="utf-8"))
    assert len(summary["mismatches"]) == 1 and "perturbation seed" in summary["mismatches"][0]
    assert "MISMATCH" in (env.root / "seeds" / "comparison.md").read_text(encoding="utf-8")
