"""MLflow side of evaluation: evaluation runs, their tags, and reading them back for `compare` and `runs`.

An evaluation run is an ordinary MLflow run in the evaluation experiment, tagged so an evaluator can
answer "which model, which data" from MLflow alone:

- textguard.run_type = evaluation (comparison for `textguard compare` runs);
- textguard.model.{uri,name,version,alias,training_run_id}, textguard.base_model, textguard.config_hash,
  textguard.spec_sha256: the model evaluated, its registered version and the run that trained it;
- textguard.data.{digest,name,path,split}: the rows evaluated (the digest is the training pipeline's
  `dataframe_digest` of the same split, so it matches the training run's dataset input);
- textguard.eval.role (candidate | baseline) and textguard.eval.baseline_run_id / candidate_run_id;
- textguard.eval.{labels,perturbations,perturbation_seed,suites} and textguard.suite.<name>.sha256:
  what `compare` checks before pairing two runs (see `textguard.evaluation.provenance`);
- mlflow.source.{name,type,git.commit} and mlflow.user: the UI's Source and User columns.

The evaluated model is linked the MLflow 3 way: its LoggedModel is a run *input* (the UI's "Logged
models" column and the model's page list the evaluation), and the headline metrics are logged with
its model id and the evaluated dataset, so they appear on the model's page next to the training
metrics.

Runs are driven through `MlflowClient` with explicit run ids (never the fluent active run), so a
candidate and its baseline can be logged one after the other from the same process.
"""

from __future__ import annotations

import json
import math
import numbers
import re
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from textguard.errors import ModelLoadError, TextguardError
from textguard.tracking.runs import MAX_PARAMS_PER_BATCH, default_tags, param_value, sanitize_key

if TYPE_CHECKING:
    import pandas as pd
    from mlflow import MlflowClient

    from textguard.spec import ModelSpec

DEFAULT_EVALUATION_EXPERIMENT = "textguard-evaluation"
RUN_TYPE_TAG = "textguard.run_type"
EVALUATION = "evaluation"
COMPARISON = "comparison"
MAX_METRICS_PER_BATCH = 1000

_ALIAS_URI = re.compile(r"^models:/(?P<name>[^/@]+)@(?P<alias>[^/@]+)/?$")
_VERSION_URI = re.compile(r"^models:/(?P<name>[^/@]+)/(?P<version>\d+)/?$")
_RUN_URI = re.compile(r"^runs:/(?P<run_id>[0-9a-zA-Z]+)/")


@dataclass(frozen=True)
class ModelIdentity:
    """Which model an evaluation scored: as given, and as the registry knows it."""

    uri: str
    name: str | None = None
    version: int | None = None
    alias: str | None = None
    training_run_id: str | None = None
    base_model: str | None = None
    config_hash: str | None = None
    spec_sha256: str | None = None
    #: The MLflow 3 LoggedModel (m-...) the artefact was logged as, when it was.
    model_id: str | None = None

    def describe(self) -> str:
        if self.name and self.version is not None:
            return f"{self.name} v{self.version}" + (f" @{self.alias}" if self.alias else "")
        return self.uri

    def tags(self) -> dict[str, str]:
        values = {
            "textguard.model.uri": self.uri,
            "textguard.model.name": self.name,
            "textguard.model.version": None if self.version is None else str(self.version),
            "textguard.model.alias": self.alias,
            "textguard.model.training_run_id": self.training_run_id,
            "textguard.base_model": self.base_model,
            "textguard.config_hash": self.config_hash,
            "textguard.spec_sha256": self.spec_sha256,
            "textguard.model.model_id": self.model_id,
        }
        return {key: value for key, value in values.items() if value}


def fetch_model(uri: str, tracking_uri: str) -> Path:
    """`download_model` from this store."""
    from textguard.tracking.artifacts import download_model

    return download_model(uri, tracking_uri=tracking_uri)


def _client(tracking_uri: str) -> MlflowClient:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def _store_exists(tracking_uri: str) -> bool:
    from textguard.tracking.uris import sqlite_path

    database = sqlite_path(tracking_uri)
    return database is None or database.is_file()


def describe_model(uri: str, directory: Path, spec: ModelSpec, tracking_uri: str) -> ModelIdentity:
    """Registry facts of the model at `uri` (already downloaded to `directory`).

    For a `models:/` URI the registry answers directly; for `runs:/` and local directories the
    version is looked up from the training run (the spec records its id), best effort: a model that
    was never registered simply has no version.
    """
    from mlflow.exceptions import MlflowException

    from textguard.spec import sha256_file
    from textguard.tracking.artifacts import model_origin

    name = version = alias = model_id = None
    run_id = spec.training_run_id
    origin = model_origin(directory)
    if origin is not None:
        name, version, run_id = origin.name, origin.version, origin.run_id or run_id
        model_id = origin.model_id
    if match := _ALIAS_URI.match(uri):
        name, alias = match["name"], match["alias"]
    elif match := _VERSION_URI.match(uri):
        name, version = match["name"], int(match["version"])
    elif match := _RUN_URI.match(uri):
        run_id = match["run_id"]
    if _store_exists(tracking_uri) and (alias or version is None):
        client = _client(tracking_uri)
        try:
            if name and alias:
                found = client.get_model_version_by_alias(name, alias)
                version, run_id = int(found.version), found.run_id or run_id
                model_id = model_id or getattr(found, "model_id", None)
            elif run_id:
                versions = client.search_model_versions(f"run_id = '{run_id}'")
                if versions:
                    newest = max(versions, key=lambda mv: int(mv.version))
                    name, version = newest.name, int(newest.version)
                    model_id = model_id or getattr(newest, "model_id", None)
        except MlflowException:
            pass  # an unregistered model has no version; the run id (if any) still identifies it
    if model_id is None and run_id and _store_exists(tracking_uri):
        model_id = _logged_model_of_run(_client(tracking_uri), run_id)
    return ModelIdentity(
        uri=uri,
        name=name,
        version=version,
        alias=alias,
        training_run_id=run_id,
        base_model=spec.base_model,
        config_hash=spec.config_hash,
        spec_sha256=sha256_file(directory / "textguard.json"),
        model_id=model_id,
    )


def _logged_model_of_run(client: MlflowClient, run_id: str) -> str | None:
    """The LoggedModel a training run logged its artefact as (`runs:/<id>/model`), if any."""
    from mlflow.exceptions import MlflowException

    from textguard.tracking.model_logging import MODEL_NAME

    try:
        outputs = client.get_run(run_id).outputs
        for output in getattr(outputs, "model_outputs", None) or []:
            if client.get_logged_model(output.model_id).name == MODEL_NAME:
                return str(output.model_id)
    except MlflowException:
        return None  # the training run lives in another store: the tags still name it
    return None


class EvaluationRun:
    """Logging into one evaluation (or comparison) run by id."""

    def __init__(self, run_id: str, tracking_uri: str, experiment_id: str) -> None:
        self.run_id = run_id
        self.tracking_uri = tracking_uri
        self.experiment_id = experiment_id
        self._client = _client(tracking_uri)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        from mlflow.entities import RunTag

        items = [
            RunTag(sanitize_key(key), param_value(value)) for key, value in tags.items() if value is not None
        ]
        for start in range(0, len(items), MAX_PARAMS_PER_BATCH):
            self._client.log_batch(self.run_id, tags=items[start : start + MAX_PARAMS_PER_BATCH])

    def log_params(self, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(sanitize_key(key), param_value(value)) for key, value in params.items()]
        for start in range(0, len(items), MAX_PARAMS_PER_BATCH):
            self._client.log_batch(self.run_id, params=items[start : start + MAX_PARAMS_PER_BATCH])

    def log_metrics(
        self,
        metrics: Mapping[str, float],
        *,
        model_id: str | None = None,
        dataset: tuple[str, str] | None = None,
    ) -> None:
        """Finite numbers only: an undefined metric is absent rather than NaN in the compare view.

        With `model_id` (and the evaluated `dataset` as (name, digest)) the metrics are also the
        LoggedModel's metrics on that dataset, shown on the model's page in the MLflow UI.
        """
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        dataset_name, dataset_digest = dataset if dataset else (None, None)
        items = [
            Metric(
                sanitize_key(key),
                float(value),
                now,
                0,
                model_id=model_id,
                dataset_name=dataset_name,
                dataset_digest=dataset_digest,
                run_id=self.run_id,
            )
            for key, value in metrics.items()
            if isinstance(value, numbers.Real) and math.isfinite(float(value))
        ]
        for start in range(0, len(items), MAX_METRICS_PER_BATCH):
            self._client.log_batch(self.run_id, metrics=items[start : start + MAX_METRICS_PER_BATCH])

    def log_dataset(self, frame: pd.DataFrame, *, name: str, source: str, context: str = "evaluation") -> str:
        """Record the evaluated rows as a run input by digest and schema (no rows are uploaded)."""
        import warnings

        from mlflow.data.code_dataset_source import CodeDatasetSource
        from mlflow.data.meta_dataset import MetaDataset
        from mlflow.entities import DatasetInput, InputTag
        from mlflow.types.utils import _infer_schema

        from textguard.tracking.runs import dataframe_digest

        digest = dataframe_digest(frame)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            schema = _infer_schema(frame.head(0))
        dataset = MetaDataset(  # type: ignore[abstract]  # metadata only: no data profile by design
            CodeDatasetSource(tags={"source": source}), name=name, digest=digest, schema=schema
        )
        entity = DatasetInput(
            dataset=dataset._to_mlflow_entity(), tags=[InputTag(key="mlflow.data.context", value=context)]
        )
        self._client.log_inputs(self.run_id, datasets=[entity])
        return digest

    def link_model(self, model_id: str) -> None:
        """Record the evaluated LoggedModel as an input of this run (UI: "Logged models")."""
        from mlflow.entities import LoggedModelInput

        self._client.log_inputs(self.run_id, models=[LoggedModelInput(model_id=model_id)])

    def log_dir(self, directory: Path, artifact_path: str | None = None) -> None:
        self._client.log_artifacts(self.run_id, str(directory), artifact_path)

    def log_file(self, path: Path, artifact_path: str | None = None) -> None:
        self._client.log_artifact(self.run_id, str(path), artifact_path)

    def log_dict(self, data: Any, artifact_file: str) -> None:
        self._client.log_dict(self.run_id, data, artifact_file)


def source_tags(source: str) -> dict[str, str]:
    """mlflow.source.* and mlflow.user as the fluent `mlflow.start_run` sets them, with a readable
    source name (the command, not the path of the Python entry point)."""
    from mlflow.tracking.context.registry import resolve_tags
    from mlflow.utils.mlflow_tags import MLFLOW_SOURCE_NAME, MLFLOW_SOURCE_TYPE, MLFLOW_USER

    from textguard.tracking.registry import current_user

    tags = {key: str(value) for key, value in resolve_tags().items()}
    tags[MLFLOW_SOURCE_NAME] = source
    tags[MLFLOW_SOURCE_TYPE] = "LOCAL"
    tags[MLFLOW_USER] = current_user()
    return tags


@contextmanager
def evaluation_run(
    *,
    tracking_uri: str,
    experiment: str,
    run_name: str,
    tags: Mapping[str, str],
    run_type: str = EVALUATION,
    source: str = "textguard evaluate",
) -> Iterator[EvaluationRun]:
    """A run in `experiment` that ends FINISHED, or FAILED/KILLED if the body raises.

    `source` names what produced the run (the UI's Source column); the user and git commit are
    resolved as `mlflow.start_run` would.
    """
    from mlflow.exceptions import MlflowException

    from textguard.tracking.uris import ensure_reachable

    ensure_reachable(tracking_uri, f"experiment {experiment!r}", error=TextguardError)
    client = _client(tracking_uri)
    all_tags = {**source_tags(source), **default_tags(), RUN_TYPE_TAG: run_type, **tags}
    try:
        found = client.get_experiment_by_name(experiment)
        experiment_id = found.experiment_id if found else client.create_experiment(experiment)
        run = client.create_run(
            experiment_id,
            run_name=run_name,
            tags={
                sanitize_key(key): param_value(value) for key, value in all_tags.items() if value is not None
            },
        )
    except MlflowException as exc:
        raise TextguardError(
            f"cannot start an MLflow run in {experiment!r} at {tracking_uri}: {exc.message}"
        ) from None
    handle = EvaluationRun(run.info.run_id, tracking_uri, experiment_id)
    try:
        yield handle
    except KeyboardInterrupt:
        client.set_terminated(handle.run_id, status="KILLED")
        raise
    except BaseException:
        client.set_terminated(handle.run_id, status="FAILED")
        raise
    client.set_terminated(handle.run_id, status="FINISHED")


# -- reading runs back ----------------------------------------------------------------------------


@dataclass(frozen=True)
class FetchedRun:
    run_id: str
    run_name: str
    experiment_id: str
    status: str
    start_time: int
    metrics: dict[str, float]
    params: dict[str, str]
    tags: dict[str, str]
    #: Local copies of the requested artefacts (artifact path -> file).
    files: dict[str, Path] = field(default_factory=dict)

    @property
    def short_id(self) -> str:
        return self.run_id[:8]

    @property
    def model_label(self) -> str:
        name, version = self.tags.get("textguard.model.name"), self.tags.get("textguard.model.version")
        alias = self.tags.get("textguard.model.alias")
        if name and version:
            return f"{name} v{version}" + (f" @{alias}" if alias else "")
        return self.tags.get("textguard.model.uri", self.run_name)


def fetch_run(
    run_id: str, tracking_uri: str, artifacts: tuple[str, ...] = (), dst: Path | None = None
) -> FetchedRun:
    """A run's metrics, params, tags and (downloaded) artefacts; a clear error for an unknown id."""
    from mlflow.exceptions import MlflowException

    from textguard.tracking.uris import check_store

    check_store(tracking_uri, f"run {run_id}", error=TextguardError)
    client = _client(tracking_uri)
    try:
        run = client.get_run(run_id)
    except MlflowException:
        raise TextguardError(
            f"run {run_id} not found at {tracking_uri}; list runs with `textguard runs`"
        ) from None
    files: dict[str, Path] = {}
    target = dst or Path(tempfile.mkdtemp(prefix=f"textguard-run-{run_id[:8]}-"))
    for artifact in artifacts:
        try:
            files[artifact] = Path(client.download_artifacts(run_id, artifact, str(target)))
        except (MlflowException, OSError):
            raise TextguardError(
                f"run {run_id} has no artefact {artifact!r}: evaluate the model with `textguard evaluate` "
                "(only evaluation runs log per-row predictions)"
            ) from None
    return FetchedRun(
        run_id=run.info.run_id,
        run_name=run.info.run_name or "",
        experiment_id=run.info.experiment_id,
        status=run.info.status,
        start_time=int(run.info.start_time or 0),
        metrics=dict(run.data.metrics),
        params=dict(run.data.params),
        tags=dict(run.data.tags),
        files=files,
    )


def log_comparison(
    *,
    tracking_uri: str,
    experiment_id: str,
    run_name: str,
    tags: Mapping[str, str],
    output_dir: Path,
    summary: Mapping[str, Any],
) -> str:
    """A comparison run holding the report directory as artefacts; returns its run id."""
    from mlflow.exceptions import MlflowException

    client = _client(tracking_uri)
    try:
        experiment = client.get_experiment(experiment_id).name
    except MlflowException as exc:
        raise ModelLoadError(f"experiment {experiment_id} not found: {exc.message}") from None
    with evaluation_run(
        tracking_uri=tracking_uri,
        experiment=experiment,
        run_name=run_name,
        tags=tags,
        run_type=COMPARISON,
        source="textguard compare",
    ) as run:
        run.log_dir(output_dir, "comparison")
        run.log_dict(json.loads(json.dumps(summary, default=str)), "comparison/summary.json")
        return run.run_id
