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


def test_evaluate_logs_every_metric_family_and_artefact(env: Env) -> None:
    from mlflow import MlflowClient

    code, output = _evaluate(env, "--model", str(env.good), "--suite", str(MEETING_SUITE))
    assert code == 0, output
    (run_id,) = _run_ids(output, "evaluation run:")
    client = MlflowClient(env.uri)
    run = client.get_run(run_id)
    metrics, tags = run.data.metrics, run.data.tags
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
    assert "suite.meeting_functional.language.fr.balanced_accuracy" in metrics
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
    } <= artefacts
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
    assert first == second and len(first) > 100


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
    first, second = (client.get_run(run_id).data.metrics for run_id in runs)
    assert first == second
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


def test_runs_lists_models_versions_and_metrics(env: Env) -> None:
    from textguard.cli import app

    code, output = _evaluate(
        env, "--model", "models:/textguard@champion", "--experiment", "listing", "--show-text"
    )
    assert code == 0, output
    from mlflow import MlflowClient

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
    result = CliRunner().invoke(
        app, ["runs", "--experiment", "listing", "--sort", "macro_f1", "--tracking-uri", env.uri], env=WIDE
    )
    assert result.exit_code == 0, result.output
    assert "textguard v1" in result.output and "champion" in result.output and "tiny-bert" in result.output
