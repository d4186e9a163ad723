"""One MLflow run per training job: params, metrics, datasets, files, system metrics and the model."""

from __future__ import annotations

import hashlib
import json
import numbers
import os
import re
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from textguard.errors import ConfigError, TextguardError

if TYPE_CHECKING:
    import pandas as pd
    from mlflow import MlflowClient

DEFAULT_REGISTERED_MODEL = "textguard"
DEFAULT_ALIAS = "candidate"
#: MLflow's limits: params per log_batch call, characters of a param value, of a key.
MAX_PARAMS_PER_BATCH = 100
MAX_PARAM_VALUE_LENGTH = 6000
MAX_KEY_LENGTH = 250
SYSTEM_METRICS_ENV = "MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING"
DATASET_CONTEXTS = ("train", "validation", "test")
_INVALID_KEY_CHARS = re.compile(r"[^A-Za-z0-9_\-. /:]")


@dataclass(frozen=True)
class RegisteredVersion:
    name: str
    version: int
    run_id: str


def system_metrics_enabled() -> bool:
    """On unless MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING says otherwise (tests turn it off)."""
    raw = os.environ.get(SYSTEM_METRICS_ENV, "").strip().lower()
    if not raw:
        return True
    return raw in ("1", "true", "yes", "on")


def sanitize_key(key: str) -> str:
    """MLflow rejects keys with other characters or over 250 characters; keep them loggable."""
    return _INVALID_KEY_CHARS.sub("_", str(key))[:MAX_KEY_LENGTH]


def param_value(value: Any) -> str:
    if isinstance(value, str):
        text = value
    elif isinstance(value, (list, tuple, dict)):
        text = json.dumps(value, sort_keys=True, default=str)
    else:
        text = str(value)
    if len(text) > MAX_PARAM_VALUE_LENGTH:
        marker = "...[truncated]"
        text = text[: MAX_PARAM_VALUE_LENGTH - len(marker)] + marker
    return text


def dataframe_digest(df: pd.DataFrame) -> str:
    """A content digest over every row and column (MLflow's own digest skips list columns and
    looks at the first 10,000 rows only, so two label versions of the same texts would collide)."""
    import pandas as pd

    def canonical(value: Any) -> str:
        if isinstance(value, str):
            return value
        if hasattr(value, "tolist"):
            value = value.tolist()
        return json.dumps(value, sort_keys=True, default=str)

    normalized = pd.DataFrame({str(column): df[column].map(canonical) for column in df.columns})
    digest = hashlib.sha256()
    digest.update(json.dumps([str(column) for column in df.columns]).encode("utf-8"))
    digest.update(str(len(df)).encode("ascii"))
    if len(df):
        digest.update(pd.util.hash_pandas_object(normalized, index=False).to_numpy().tobytes())
    return digest.hexdigest()[:16]


class TrainingRun:
    """Handle on the active run. Disabled (`run_id is None`) on non-zero ranks: every method no-ops."""

    def __init__(self, run_id: str | None = None, tracking_uri: str | None = None) -> None:
        self.run_id = run_id
        self.tracking_uri = tracking_uri
        self._client: MlflowClient | None = None
        if run_id is not None:
            from mlflow import MlflowClient

            self._client = MlflowClient(tracking_uri=tracking_uri)

    @property
    def enabled(self) -> bool:
        return self._client is not None

    def _require(self) -> tuple[MlflowClient, str]:
        assert self._client is not None and self.run_id is not None
        return self._client, self.run_id

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Log params in batches of 100 (MLflow's per-call limit), values truncated to 6,000 chars."""
        if not self.enabled:
            return
        from mlflow.entities import Param

        client, run_id = self._require()
        items = [Param(sanitize_key(key), param_value(value)) for key, value in params.items()]
        for start in range(0, len(items), MAX_PARAMS_PER_BATCH):
            client.log_batch(run_id, params=items[start : start + MAX_PARAMS_PER_BATCH])

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        if not self.enabled:
            return
        client, run_id = self._require()
        for key, value in tags.items():
            client.set_tag(run_id, sanitize_key(key), param_value(value))

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        """Log numeric metrics at `step`; non-numeric values (None) are skipped, NaN is kept."""
        if not self.enabled:
            return
        import time

        from mlflow.entities import Metric

        client, run_id = self._require()
        timestamp = int(time.time() * 1000)
        # numbers.Real covers numpy scalars (np.float32 is not a float subclass).
        batch = [
            Metric(sanitize_key(key), float(value), timestamp, int(step))
            for key, value in metrics.items()
            if isinstance(value, numbers.Real)
        ]
        for start in range(0, len(batch), 1000):
            client.log_batch(run_id, metrics=batch[start : start + 1000])

    def log_dataset(self, df: pd.DataFrame, name: str, context: str, source: str) -> str | None:
        """Record a dataset as a run input (schema, row count, content digest). Returns the digest."""
        if not self.enabled:
            return None
        if context not in DATASET_CONTEXTS:
            raise ConfigError(f"dataset context {context!r} must be one of {list(DATASET_CONTEXTS)}")
        import mlflow
        from mlflow.data.pandas_dataset import from_pandas
        from mlflow.exceptions import MlflowException

        _, run_id = self._require()
        digest = dataframe_digest(df)
        with warnings.catch_warnings():
            # A local path matches two equivalent source resolvers; MLflow warns about it every time.
            warnings.simplefilter("ignore", UserWarning)
            try:
                dataset: Any = from_pandas(df, source=source, name=name, digest=digest)
            except MlflowException:
                from mlflow.data.code_dataset_source import CodeDatasetSource

                dataset = from_pandas(
                    df, source=CodeDatasetSource(tags={"source": source}), name=name, digest=digest
                )
        active = mlflow.active_run()
        if active is None or active.info.run_id != run_id:
            raise TextguardError("log_dataset must be called inside its training_run block")
        mlflow.log_input(dataset, context=context)
        return digest

    def log_file(self, path: str | Path, artifact_path: str | None = None) -> None:
        if not self.enabled:
            return
        client, run_id = self._require()
        client.log_artifact(run_id, str(path), artifact_path)

    def log_dir(self, path: str | Path, artifact_path: str | None) -> None:
        if not self.enabled:
            return
        client, run_id = self._require()
        client.log_artifacts(run_id, str(path), artifact_path)

    def log_figure(self, fig: Any, filename: str) -> None:
        if not self.enabled:
            return
        client, run_id = self._require()
        client.log_figure(run_id, fig, filename)

    def log_dict(self, d: Mapping[str, Any] | list[Any], filename: str) -> None:
        if not self.enabled:
            return
        client, run_id = self._require()
        client.log_dict(run_id, d, filename)  # type: ignore[arg-type]

    def log_text(self, text: str, filename: str) -> None:
        if not self.enabled:
            return
        client, run_id = self._require()
        client.log_text(run_id, text, filename)

    def log_model(
        self,
        artifact_dir: Path,
        registered_model_name: str | None = DEFAULT_REGISTERED_MODEL,
        alias: str | None = DEFAULT_ALIAS,
    ) -> RegisteredVersion | None:
        """Log the artefact directory as this run's model `model`; register it and point `alias` at it.

        See `textguard.tracking.model_logging` for the layout and why it needs no pickle.
        Returns None when disabled or when `registered_model_name` is None (logged, not registered).
        """
        if not self.enabled:
            return None
        from textguard.tracking.model_logging import log_artifact_model

        _, run_id = self._require()
        return log_artifact_model(
            Path(artifact_dir),
            run_id=run_id,
            tracking_uri=self.tracking_uri,
            registered_model_name=registered_model_name,
            alias=alias,
        )


def default_tags() -> dict[str, str]:
    """Tags every training run carries: code version, taxonomy and normaliser versions."""
    from textguard.labels import TAXONOMY_VERSION
    from textguard.text import NORMALIZER_VERSION
    from textguard.tracking.uris import git_commit, git_dirty

    tags = {
        "textguard.taxonomy_version": TAXONOMY_VERSION,
        "textguard.normalizer_version": NORMALIZER_VERSION,
    }
    try:
        from importlib.metadata import version

        tags["textguard.version"] = version("textguard")
    except Exception:  # not installed as a distribution (plain source checkout)
        pass
    commit = git_commit()
    if commit:
        tags["textguard.git_commit"] = commit
        tags["mlflow.source.git.commit"] = commit
    dirty = git_dirty()
    if dirty is not None:
        tags["textguard.git_dirty"] = str(dirty).lower()
    return tags


def ensure_experiment(name: str, tracking_uri: str) -> str:
    """The id of experiment `name`, created if needed.

    For a sqlite store, a new experiment keeps its artifacts in `mlruns/` beside the database file.
    MLflow's default is `./mlruns` relative to the current directory at creation time, which scatters
    a store's artifacts over whatever folders commands happened to run in.
    """
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from textguard.tracking.uris import sqlite_path

    client = MlflowClient(tracking_uri=tracking_uri)
    found = client.get_experiment_by_name(name)
    if found is None:
        database = sqlite_path(tracking_uri)
        location = (database.resolve().parent / "mlruns").as_uri() if database is not None else None
        try:
            return str(client.create_experiment(name, artifact_location=location))
        except MlflowException:
            found = client.get_experiment_by_name(name)  # created concurrently by another rank/process
            if found is None:
                raise
    if found.lifecycle_stage != "active":
        raise TextguardError(
            f"experiment {name!r} at {tracking_uri} is deleted; restore it (MLflow UI) or use another name"
        )
    return str(found.experiment_id)


@contextmanager
def training_run(
    experiment: str,
    tracking_uri: str,
    run_name: str | None,
    tags: dict[str, str],
    params: dict[str, Any],
    enabled: bool = True,
) -> Iterator[TrainingRun]:
    """One MLflow run around a training job; the run ends FAILED (KILLED on Ctrl-C) if the body raises.

    System metrics (CPU, memory, GPU where pynvml is installed) are sampled unless
    MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING=false. With `enabled=False` nothing touches MLflow.
    """
    if not enabled:
        yield TrainingRun()
        return
    import mlflow
    from mlflow.exceptions import MlflowException

    from textguard.tracking.uris import ensure_reachable, scoped_tracking_uri

    ensure_reachable(tracking_uri, f"experiment {experiment!r}", error=TextguardError)
    with scoped_tracking_uri(tracking_uri):
        try:
            experiment_id = ensure_experiment(experiment, tracking_uri)
            run = mlflow.start_run(
                experiment_id=experiment_id,
                run_name=run_name,
                tags={**default_tags(), **{sanitize_key(k): param_value(v) for k, v in tags.items()}},
                log_system_metrics=system_metrics_enabled(),
            )
        except MlflowException as exc:
            raise TextguardError(
                f"cannot start an MLflow run in {experiment!r} at {tracking_uri}: {exc.message}"
            ) from None
        handle = TrainingRun(run.info.run_id, tracking_uri)
        try:
            handle.log_params(params)
            yield handle
        except KeyboardInterrupt:
            mlflow.end_run(status="KILLED")
            raise
        except BaseException:
            mlflow.end_run(status="FAILED")
            raise
        else:
            mlflow.end_run(status="FINISHED")
