"""textguard.tracking against sqlite MLflow stores: a migrated template per module, copied per test."""

from __future__ import annotations

import os
import re
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from textguard.errors import ConfigError, ModelLoadError
from textguard.scorer import Scorer
from textguard.spec import SPEC_FILENAME, sha256_file
from textguard.tracking import registry, resolve_tracking_uri, training_run
from textguard.tracking.artifacts import download_model
from textguard.tracking.runs import MAX_PARAM_VALUE_LENGTH, dataframe_digest, param_value, sanitize_key

TEXTS = ["can you share your screen", "merci à tous", "", "the meeting starts now " * 20]


@pytest.fixture(scope="module")
def store_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty, fully migrated MLflow sqlite store: migrating costs seconds, copying milliseconds."""
    from mlflow import MlflowClient

    path = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def store(store_template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh store for this test, set as MLFLOW_TRACKING_URI, with a private download cache."""
    database = tmp_path / "mlflow.db"
    shutil.copy(store_template, database)
    uri = f"sqlite:///{database}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("TEXTGUARD_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    yield uri


def _client(uri: str):  # type: ignore[no-untyped-def]
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def _log_model(uri: str, artifact: Path, run_name: str = "train") -> tuple[str, int | None]:
    with training_run("textguard-test", uri, run_name, {}, {"lr": 3e-5}) as run:
        registered = run.log_model(artifact)
    assert run.run_id is not None
    return run.run_id, registered.version if registered else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- pure -------------------------------------------------------------------------------------------


def test_tracking_uri_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert resolve_tracking_uri(None) == "sqlite:///mlflow.db"
    assert resolve_tracking_uri("http://mlflow:5000") == "http://mlflow:5000"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///env.db")
    assert resolve_tracking_uri("http://mlflow:5000") == "sqlite:///env.db"


def test_param_values_and_keys_stay_within_mlflow_limits() -> None:
    long_value = param_value("x" * 10_000)
    assert len(long_value) == MAX_PARAM_VALUE_LENGTH and long_value.endswith("[truncated]")
    assert param_value([1, "a"]) == '[1, "a"]'
    assert param_value({"b": 1, "a": None}) == '{"a": null, "b": 1}'
    assert sanitize_key("model.name@v1!") == "model.name_v1_"


def test_dataframe_digest_covers_every_row_and_list_column() -> None:
    frame = pd.DataFrame({"id": ["a", "b"], "text": ["x", "y"], "labels": [["violent_threat"], []]})
    relabelled = frame.assign(labels=[[], []])
    assert dataframe_digest(frame) == dataframe_digest(frame.copy())
    assert dataframe_digest(frame) != dataframe_digest(relabelled)
    assert dataframe_digest(frame) != dataframe_digest(frame.head(1))
    assert dataframe_digest(frame.head(0)) != dataframe_digest(frame)


def test_disabled_run_touches_nothing(tmp_path: Path, tiny_artifact: Path) -> None:
    database = tmp_path / "never.db"
    with training_run("x", f"sqlite:///{database}", None, {}, {"a": 1}, enabled=False) as run:
        assert run.run_id is None and not run.enabled
        run.log_params({"b": 2})
        run.log_metrics({"loss": 1.0}, step=1)
        assert run.log_dataset(pd.DataFrame({"text": ["a"]}), "train", "train", "x") is None
        run.log_dict({"a": 1}, "a.json")
        run.log_text("t", "t.txt")
        run.log_file(tiny_artifact / SPEC_FILENAME)
        run.log_dir(tiny_artifact, "model")
        run.log_figure(object(), "f.png")
        assert run.log_model(tiny_artifact) is None
    assert not database.exists()


def test_git_commit_inside_and_outside_a_checkout(tmp_path: Path) -> None:
    from textguard.tracking import git_commit

    commit = git_commit()
    assert commit is None or re.fullmatch(r"[0-9a-f]{40}", commit)
    assert git_commit(tmp_path) is None


# -- sqlite store --------------------------------------------------------------------------------------


def test_run_logs_params_metrics_datasets_and_files(store: str, tmp_path: Path) -> None:
    params = {f"p{index}": index for index in range(250)} | {"long": "y" * 7000, "list": [1, 2]}
    frame = pd.DataFrame({"id": ["a", "b"], "text": ["x", "y"], "labels": [["violent_threat"], []]})
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text("a")
    with training_run("exp-a", store, "r1", {"team": "safety"}, params) as run:
        run.log_metrics({"loss": 1.5, "f1": np.float32(0.25), "skipped": None}, step=1)  # type: ignore[dict-item]
        run.log_metrics({"loss": 0.5}, step=2)
        digests = {
            context: run.log_dataset(frame, context, context, "/data/prepared")
            for context in ("train", "test")
        }
        run.log_dict({"a": 1}, "reports/a.json")
        run.log_text("hello", "notes.txt")
        run.log_dir(tmp_path / "notes", "extra")
        with pytest.raises(ConfigError, match="dataset context"):
            run.log_dataset(frame, "x", "holdout", "x")
    # The run's URI does not leak into the process: later resolution still sees the env var.
    assert os.environ["MLFLOW_TRACKING_URI"] == store

    client = _client(store)
    logged = client.get_run(str(run.run_id))
    assert logged.info.status == "FINISHED"
    assert len(logged.data.params) == 252
    assert logged.data.params["long"].endswith("[truncated]") and logged.data.params["list"] == "[1, 2]"
    assert logged.data.tags["team"] == "safety" and logged.data.tags["textguard.taxonomy_version"]
    assert [m.value for m in client.get_metric_history(str(run.run_id), "loss")] == [1.5, 0.5]
    assert logged.data.metrics["f1"] == 0.25 and "skipped" not in logged.data.metrics
    assert not any(key.startswith("system/") for key in logged.data.metrics)  # disabled by the env var
    inputs = {
        next(tag.value for tag in item.tags if tag.key == "mlflow.data.context"): item.dataset
        for item in logged.inputs.dataset_inputs
    }
    assert set(inputs) == {"train", "test"} and inputs["train"].digest == digests["train"]
    paths = {item.path for item in client.list_artifacts(str(run.run_id))}
    assert {"reports", "notes.txt", "extra"} <= paths


def test_failure_marks_the_run_failed(store: str) -> None:
    with pytest.raises(RuntimeError, match="boom"), training_run("exp-b", store, "r", {}, {}) as run:
        raise RuntimeError("boom")
    assert _client(store).get_run(str(run.run_id)).info.status == "FAILED"


def test_logged_model_resolves_by_alias_version_and_run(store: str, tiny_artifact: Path) -> None:
    run_id, version = _log_model(store, tiny_artifact)
    assert version == 1
    assert registry.alias_version("textguard", "candidate") == 1
    mv = _client(store).get_model_version("textguard", "1")
    assert mv.run_id == run_id  # the registry UI links the version to its training run

    expected = {name: sha256_file(tiny_artifact / name) for name in ("model.safetensors", "tokenizer.json")}
    reference = Scorer.from_artifact(tiny_artifact).predict_proba(TEXTS)
    for uri in ("models:/textguard@candidate", "models:/textguard/1", f"runs:/{run_id}/model"):
        directory = download_model(uri)
        assert {name: sha256_file(directory / name) for name in expected} == expected
        # No pickle anywhere in what MLflow stores for the model: weights, code and metadata only.
        root = directory.parents[1]
        assert not [
            p for p in root.rglob("*") if p.suffix in (".pkl", ".pickle", ".bin", ".pt", ".cloudpickle")
        ]
        probs = Scorer.from_artifact(uri).predict_proba(TEXTS)
        assert np.array_equal(probs, reference)


def test_pyfunc_load_model_scores_like_the_scorer(store: str, tiny_artifact: Path) -> None:
    import mlflow

    _log_model(store, tiny_artifact)
    model = mlflow.pyfunc.load_model("models:/textguard@candidate")
    frame = model.predict(pd.DataFrame({"text": TEXTS}))
    reference = Scorer.from_artifact(tiny_artifact)
    np.testing.assert_allclose(frame[list(reference.spec.labels)].to_numpy(), reference.predict_proba(TEXTS))
    assert list(frame["labels"]) == [p.labels for p in reference.score(TEXTS)]


def test_promote_records_who_why_when_and_the_previous_holder(store: str, tiny_artifact: Path) -> None:
    _, first = _log_model(store, tiny_artifact, "first")
    second_run, second = _log_model(store, tiny_artifact, "second")
    assert (first, second) == (1, 2) and registry.alias_version("textguard", "candidate") == 2
    assert registry.alias_version("textguard", "champion") is None

    assert registry.promote("textguard", "champion", version=1, reason="baseline", user="alice") == 1
    moved = registry.promote_alias(
        "textguard", "champion", run_id=second_run, reason="better recall", user="bob"
    )
    assert (moved.version, moved.previous) == (2, 1)
    assert "version 1 -> version 2" in moved.describe()

    client = _client(store)
    new_tags = client.get_model_version("textguard", "2").tags
    assert new_tags["textguard.alias.champion.promoted_by"] == "bob"
    assert new_tags["textguard.alias.champion.reason"] == "better recall"
    assert new_tags["textguard.alias.champion.previous_version"] == "1"
    assert re.match(r"\d{4}-\d\d-\d\dT", new_tags["textguard.alias.champion.promoted_at"])
    assert (
        client.get_model_version("textguard", "1").tags["textguard.alias.champion.replaced_by_version"] == "2"
    )
    history = registry.alias_history("textguard", "champion")
    assert [(entry["version"], entry["user"]) for entry in history] == [(1, "alice"), (2, "bob")]
    versions = registry.list_versions("textguard")
    assert [(v.version, v.aliases) for v in versions] == [(1, []), (2, ["candidate", "champion"])]

    with pytest.raises(ModelLoadError, match=r"textguard/9 not found"):
        registry.promote("textguard", "champion", version=9, reason="x")
    with pytest.raises(ConfigError, match="--version N"):
        registry.promote("textguard", "champion", reason="x")
    with pytest.raises(ConfigError, match="needs a reason"):
        registry.promote("textguard", "champion", version=1, reason="  ")
    with pytest.raises(ConfigError, match="registered by run"):
        registry.promote("textguard", "champion", version=1, run_id=second_run, reason="x")


def test_log_model_refuses_a_tampered_artefact(store: str, tiny_artifact_copy: Path) -> None:
    (tiny_artifact_copy / "tokenizer.json").write_text("{}")
    with (
        pytest.raises(ModelLoadError, match=r"tokenizer\.json does not match"),
        training_run("exp-c", store, None, {}, {}) as run,
    ):
        run.log_model(tiny_artifact_copy)


def test_download_errors_name_the_uri_and_the_store(store: str, tiny_artifact: Path, tmp_path: Path) -> None:
    run_id, _ = _log_model(store, tiny_artifact)
    cases = {
        "models:/textguard@nope": "alias nope not found",
        "models:/textguard/7": "not found",
        "models:/missing@champion": "missing",
        "runs:/0123456789abcdef0123456789abcdef/model": "not found",
        f"runs:/{run_id}/nothing-here": "nothing-here",
    }
    for uri, detail in cases.items():
        with pytest.raises(ModelLoadError, match=re.escape(uri) + ".*" + re.escape(store) + ".*" + detail):
            download_model(uri)
    server = f"http://127.0.0.1:{_free_port()}"
    with pytest.raises(
        ModelLoadError,
        match=re.escape(f"models:/textguard@champion: the MLflow tracking server {server} is unreachable"),
    ):
        download_model("models:/textguard@champion", tracking_uri=server)
    missing = f"sqlite:///{tmp_path / 'elsewhere' / 'mlflow.db'}"
    with pytest.raises(ModelLoadError, match="does not exist"):
        download_model("models:/textguard@champion", tracking_uri=missing)
    assert not (tmp_path / "elsewhere").exists()  # no empty store was created as a side effect
    with pytest.raises(ModelLoadError, match="unsupported model URI"):
        download_model("models:/")


def test_cached_download_is_reused_until_the_remote_spec_changes(store: str, tiny_artifact: Path) -> None:
    _log_model(store, tiny_artifact)
    first = download_model("models:/textguard@candidate")
    marker = first / ".kept"
    marker.write_text("cached")
    assert download_model("models:/textguard@candidate") == first and marker.exists()
    # A local edit of the spec no longer matches the registry: the copy is fetched again.
    spec_path = first / SPEC_FILENAME
    spec_path.write_text(spec_path.read_text() + " ")
    again = download_model("models:/textguard@candidate")
    assert again == first and not marker.exists()
    assert (again / SPEC_FILENAME).read_bytes() == (tiny_artifact / SPEC_FILENAME).read_bytes()


def test_sqlite_artifacts_live_beside_the_database(
    store_template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    database = tmp_path / "store" / "mlflow.db"
    database.parent.mkdir()
    shutil.copy(store_template, database)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    with training_run("exp-d", f"sqlite:///{database}", None, {}, {}) as run:
        run.log_text("hello", "notes.txt")
    assert list((database.parent / "mlruns").rglob("notes.txt")) and not (elsewhere / "mlruns").exists()
