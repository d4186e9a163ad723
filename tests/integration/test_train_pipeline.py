"""Real training of a tiny model into a real sqlite MLflow store: run contents, registry, parity, resume."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from train_support import write_prepared

from textguard.labels import LABELS
from textguard.parity import BF16_VARIANT, PARITY_FILE, read_parity
from textguard.scorer import Scorer
from textguard.spec import SPEC_FILENAME, load_spec
from textguard.training.config import TrainConfig, load_train_config
from textguard.training.pipeline import TrainResult, train

SMOKE = Path(__file__).resolve().parents[2] / "configs" / "smoke.yaml"
PROBE_TEXTS = ["can you share your screen", "merci à tous", "see you all tomorrow at nine", ""]


def smoke_config(prepared: Path, output: Path, tracking_uri: str, *overrides: str) -> TrainConfig:
    return load_train_config(
        SMOKE,
        [f"data={{prepared: {prepared}}}", f"tracking.uri={tracking_uri}", *overrides],
        output_dir=output,
    )


@pytest.fixture(scope="module")
def tracked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TrainResult, Path, Path]]:
    """One smoke training run, shared by the assertions below: (result, tmp folder, prepared folder)."""
    tmp = tmp_path_factory.mktemp("train")
    prepared = write_prepared(tmp / "prepared", {"train": 240, "validation": 80, "test": 80})
    uri = f"sqlite:///{tmp}/mlflow.db"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        augmented = "training.augmentation={rate: 0.25, kinds: [typos]}"
        result = train(smoke_config(prepared, tmp / "out", uri, augmented), config_path=SMOKE)
        yield result, tmp, prepared


@pytest.fixture
def client(tracked: tuple[TrainResult, Path, Path]) -> Any:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=f"sqlite:///{tracked[1]}/mlflow.db")


def test_run_records_params_tags_datasets_and_metrics(
    tracked: tuple[TrainResult, Path, Path], client: Any
) -> None:
    result = tracked[0]
    assert result.run_id and result.global_step == 6
    run = client.get_run(result.run_id)
    params, tags, metrics = run.data.params, run.data.tags, run.data.metrics
    assert params["training.max_steps"] == "6" and params["model.tiny.architecture"] == "bert"
    # Typo copies of a quarter of the 240 training rows (minus any the normaliser made identical).
    assert 240 + 40 <= int(params["data.train_rows"]) <= 240 + 60
    assert tags["textguard.base_model"] == "tiny-bert"
    assert tags["textguard.taxonomy_version"] and tags["textguard.normalizer_version"]
    assert tags["textguard.config_hash"] == result.spec.config_hash  # type: ignore[union-attr]
    contexts = {
        dataset_input.tags[0].value for dataset_input in run.inputs.dataset_inputs if dataset_input.tags
    }
    assert contexts == {"train", "validation", "test"}
    # Every evaluation step logged loss, macro/micro-F1, per-label F1 and PR-AUC.
    history = client.get_metric_history(result.run_id, "eval_macro_f1")
    assert [point.step for point in history] == [3, 6]
    for name in ["eval_loss", "eval_micro_f1", *(f"eval_f1_{label}" for label in LABELS)]:
        assert name in metrics, name
    assert any(name.startswith("eval_pr_auc_") for name in metrics)
    assert (
        "train_loss" in metrics and "test_macro_f1" in metrics and "calibrated_validation_macro_f1" in metrics
    )


def test_run_artifacts_hold_reports_card_config_and_model(
    tracked: tuple[TrainResult, Path, Path], client: Any
) -> None:
    result = tracked[0]

    def listing(path: str = "") -> set[str]:
        return {item.path for item in client.list_artifacts(result.run_id, path)}

    reports = listing("reports")
    for name in [
        "pr_curves_test.png",
        "confusion_matrices_test.png",
        "reliability_validation.png",
        "test_metrics_by_language.csv",
        "test_metrics_by_language.json",
        "test_metrics_by_source.csv",
        "thresholds.json",
    ]:
        assert f"reports/{name}" in reports, name
    assert "config/resolved_config.yaml" in listing("config")
    assert "model_card/MODEL_CARD.md" in listing("model_card")
    local = Path(client.download_artifacts(result.run_id, "model_card/MODEL_CARD.md"))
    card = local.read_text()
    assert "CC-BY-4.0" in card and "## Limitations" in card and "violent_threat" in card
    png = Path(client.download_artifacts(result.run_id, "reports/pr_curves_test.png")).read_bytes()
    assert png.startswith(b"\x89PNG")
    by_language = json.loads(
        Path(client.download_artifacts(result.run_id, "reports/test_metrics_by_language.json")).read_text()
    )
    assert "en" in by_language and by_language["en"]["support"] > 0


def test_spec_carries_calibration_and_provenance(tracked: tuple[TrainResult, Path, Path]) -> None:
    result = tracked[0]
    assert result.artifact_dir is not None
    spec = load_spec(result.artifact_dir)
    assert spec.training_run_id == result.run_id and spec.base_model == "tiny-bert"
    assert spec.config_hash and spec.max_length == 48 and spec.threshold_policy == "max_f1"
    assert spec.temperature > 0 and set(spec.thresholds) == set(LABELS)
    assert {"ece_before", "ece_after", "per_label"} <= set(spec.calibration)
    assert "validation_macro_f1" in spec.metrics and "test_macro_f1" in spec.metrics
    assert "MODEL_CARD.md" in spec.files and SPEC_FILENAME not in spec.files
    # bf16 against fp32 on validation texts, checksummed: what `precision: auto` decides on.
    assert PARITY_FILE in spec.files
    parity = read_parity(result.artifact_dir, spec)
    assert parity is not None and parity["sample"]["n_texts"] > 0
    bf16 = parity["variants"][BF16_VARIANT]
    assert bf16["n_texts"] == parity["sample"]["n_texts"] and 0 <= bf16["max_abs_diff"] < 0.1
    assert set(bf16["per_label"]) == set(LABELS)
    card = (result.artifact_dir / "MODEL_CARD.md").read_text(encoding="utf-8")
    assert f"Scoring in bf16 against fp32 on {bf16['n_texts']} validation texts" in card
    assert "- Trained in " in card


def test_registered_candidate_reloads_with_identical_probabilities(
    tracked: tuple[TrainResult, Path, Path], client: Any
) -> None:
    result = tracked[0]
    assert result.model_uri == "models:/textguard@candidate"
    version = client.get_model_version_by_alias("textguard", "candidate")
    assert version.run_id == result.run_id and str(version.version) == result.registered_version
    assert result.spec is not None
    in_memory = Scorer.from_model(result.model, result.tokenizer, result.spec).predict_proba(PROBE_TEXTS)
    reloaded = Scorer.from_artifact("models:/textguard@candidate")
    assert reloaded.spec.temperature == result.spec.temperature
    np.testing.assert_allclose(reloaded.predict_proba(PROBE_TEXTS), in_memory, atol=1e-6)


def test_version_description_is_the_model_card_and_evaluation_links_to_the_version(
    tracked: tuple[TrainResult, Path, Path], client: Any
) -> None:
    """The registry page of the version shows the model card; evaluating it links the run to it."""
    from textguard.evaluation.config import EvaluationConfig
    from textguard.evaluation.runner import EvaluationRequest, evaluate_model

    result, tmp, prepared = tracked
    assert result.artifact_dir is not None
    version = client.get_model_version("textguard", result.registered_version)
    card = (result.artifact_dir / "MODEL_CARD.md").read_text(encoding="utf-8").strip()
    assert version.description == card and "## Limitations" in version.description

    uri = f"sqlite:///{tmp}/mlflow.db"
    evaluated = evaluate_model(
        EvaluationRequest(
            model="models:/textguard@candidate",
            data=prepared,
            config=EvaluationConfig(experiment="smoke-evaluation"),
            tracking_uri=uri,
        )
    )
    run = client.get_run(evaluated.run_id)
    # "Logged models": the registered version's LoggedModel is an input of the evaluation run.
    model_id = version.model_id or version.source.removeprefix("models:/")
    assert model_id.startswith("m-") and client.get_logged_model(model_id).source_run_id == result.run_id
    assert [item.model_id for item in run.inputs.model_inputs] == [model_id]
    assert run.data.tags["textguard.model.version"] == str(version.version)
    assert run.data.tags["textguard.model.model_id"] == model_id
    # "Source" and "User": set as mlflow.start_run would, with the command as the source.
    assert run.data.tags["mlflow.source.name"] == "textguard evaluate"
    assert run.data.tags["mlflow.source.type"] == "LOCAL" and run.data.tags["mlflow.user"]
    # The headline metrics are the model's metrics on the evaluated dataset (its page in the UI).
    logged = client.get_logged_model(model_id)
    on_model = {metric.key: metric for metric in logged.metrics or [] if metric.run_id == evaluated.run_id}
    assert on_model["macro_f1"].value == pytest.approx(evaluated.metrics["macro_f1"])
    assert on_model["macro_f1"].dataset_digest == evaluated.data_digest
    assert set(on_model) == set(run.data.metrics)
    assert len(run.data.metrics) < 40 and "slice.language.en.macro_f1" not in run.data.metrics


def test_runs_lists_the_training_run_under_evaluation_metric_names(
    tracked: tuple[TrainResult, Path, Path], client: Any
) -> None:
    from typer.testing import CliRunner

    from textguard.cli import app

    result, tmp, _ = tracked
    listed = CliRunner().invoke(
        app,
        ["runs", "--type", "training", "--format", "json", "--tracking-uri", f"sqlite:///{tmp}/mlflow.db"],
    )
    assert listed.exit_code == 0, listed.output
    rows = {row["run_id"]: row for row in json.loads(listed.output)}
    row = rows[result.run_id]
    metrics = client.get_run(result.run_id).data.metrics
    assert row["experiment"] == "textguard-smoke" and row["metrics_from"] == "test"
    assert row["metrics"]["macro_f1"] == pytest.approx(metrics["test_macro_f1"])
    assert row["version"] == result.registered_version and "candidate" in row["aliases"]


def test_resume_continues_from_the_checkpoint_step(
    tracked: tuple[TrainResult, Path, Path], client: Any, tmp_path: Path
) -> None:
    _, tmp, prepared = tracked
    uri = f"sqlite:///{tmp}/mlflow.db"  # the module's store: creating another costs seconds
    output = tmp_path / "out"
    first = smoke_config(
        prepared, output, uri, "training.max_steps=4", "training.eval_steps=2", "tracking.enabled=false"
    )
    assert train(first).global_step == 4
    checkpoints = sorted(p.name for p in (output / "checkpoints").glob("checkpoint-*"))
    assert checkpoints == ["checkpoint-2", "checkpoint-4"]

    resumed = train(
        smoke_config(
            prepared,
            output,
            uri,
            "training.max_steps=6",
            "training.eval_steps=2",
            "tracking.register_as=null",
        ),
        resume="auto",
    )
    assert resumed.global_step == 6
    run = client.get_run(resumed.run_id)
    assert run.data.tags["textguard.resumed_from"].endswith("checkpoint-4")
    # Only the steps after the checkpoint were trained (and logged) by the resumed run.
    steps = [point.step for point in client.get_metric_history(resumed.run_id, "train_loss")]
    assert steps and min(steps) > 4
    assert [p.step for p in client.get_metric_history(resumed.run_id, "eval_macro_f1")] == [6]
    assert resumed.model_uri == f"runs:/{resumed.run_id}/model"


def test_torchrun_two_cpu_processes_make_one_run_and_one_artefact(tmp_path: Path) -> None:
    """torchrun, 2 CPU processes on gloo: only rank 0 opens the MLflow run and writes the artefact.

    About 15 s on an idle 2-core machine (two interpreters importing torch dominate).
    """
    prepared = write_prepared(tmp_path / "prepared", {"train": 160, "validation": 60, "test": 60})
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",  # rendezvous on a free local port
        "--nproc_per_node",
        "2",
        "-m",
        "textguard",
        "train",
        "--config",
        str(SMOKE),
        "--set",
        f"data={{prepared: {prepared}}}",
        "--set",
        "training.batch_size=8",
        "--output-dir",
        str(tmp_path / "out"),
    ]
    completed = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300, check=False)
    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, output[-4000:]
    assert output.count("MLflow run id:") == 1, output[-4000:]

    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name("textguard-smoke").experiment_id])
    assert len(runs) == 1
    run = runs[0]
    assert run.data.tags["textguard.world_size"] == "2" and run.data.params["world_size"] == "2"
    # 6 optimiser steps of 2 ranks x 8 texts: the ranks shared the data instead of each training alone.
    assert run.data.metrics["epoch"] == pytest.approx(6 * 16 / 160, rel=0.01)
    assert client.get_model_version_by_alias("textguard", "candidate").run_id == run.info.run_id
    assert list((tmp_path / "out").glob("**/textguard.json")) == [
        tmp_path / "out" / "model" / "textguard.json"
    ]
