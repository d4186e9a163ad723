"""Which tracking server to talk to, whether it answers, and which commit the code runs from."""

from __future__ import annotations

import os
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from textguard.errors import ModelLoadError, TextguardError

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"
EXPERIMENT_ID_ENV = "MLFLOW_EXPERIMENT_ID"
#: Seconds to wait for a tracking server's /health before calling it unreachable. MLflow's own client
#: retries with exponential backoff for minutes, which looks like a hang to someone running a command.
HEALTH_TIMEOUT_S = 5.0


def resolve_tracking_uri(configured: str | None) -> str:
    """Env MLFLOW_TRACKING_URI, else the configured value, else a local sqlite file (sqlite:///mlflow.db)."""
    from_env = os.environ.get(TRACKING_URI_ENV, "").strip()
    if from_env:
        return from_env
    if configured and configured.strip():
        return configured.strip()
    return DEFAULT_TRACKING_URI


def current_tracking_uri() -> str:
    """Env MLFLOW_TRACKING_URI, else a URI set in-process (mlflow.set_tracking_uri), else the default."""
    import mlflow
    from mlflow.tracking._tracking_service.utils import is_tracking_uri_set

    from_env = os.environ.get(TRACKING_URI_ENV, "").strip()
    if from_env:
        return from_env
    if is_tracking_uri_set():
        return str(mlflow.get_tracking_uri())
    return DEFAULT_TRACKING_URI


@contextmanager
def scoped_tracking_uri(tracking_uri: str) -> Iterator[None]:
    """Use `tracking_uri` for MLflow's fluent API inside the block only.

    mlflow.set_tracking_uri also writes MLFLOW_TRACKING_URI into os.environ, so without this a
    training run would silently redirect every later tracking call of the process (and, because the
    env var wins in resolve_tracking_uri, every later configured URI too). mlflow.set_experiment
    does the same with MLFLOW_EXPERIMENT_ID, an id that means nothing in another store.
    """
    import mlflow
    from mlflow.tracking import fluent
    from mlflow.tracking._tracking_service import utils

    previous_uri: Any = utils._tracking_uri
    previous_experiment: Any = fluent._active_experiment_id
    saved_env = {name: os.environ.get(name) for name in (TRACKING_URI_ENV, EXPERIMENT_ID_ENV)}
    mlflow.set_tracking_uri(tracking_uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(previous_uri)  # None unsets MLflow's env var as well
        fluent._active_experiment_id = previous_experiment
        for name, value in saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def ensure_reachable(tracking_uri: str, subject: str, error: type[TextguardError] = ModelLoadError) -> None:
    """Fail fast with a clear message when an HTTP tracking server does not answer.

    `subject` names what was being done (e.g. the model URI) so the error says both what and where.
    """
    if not tracking_uri.startswith(("http://", "https://")):
        return
    url = tracking_uri.rstrip("/") + "/health"
    try:
        with urllib.request.urlopen(url, timeout=HEALTH_TIMEOUT_S) as response:
            if response.status == 200:
                return
            problem = f"HTTP {response.status}"
    except urllib.error.HTTPError as exc:
        problem = f"HTTP {exc.code}"
    except (urllib.error.URLError, OSError) as exc:
        problem = str(getattr(exc, "reason", exc))
    raise error(
        f"{subject}: the MLflow tracking server {tracking_uri} is unreachable ({problem}); "
        f"start it or point {TRACKING_URI_ENV} at a running server"
    )


def sqlite_path(tracking_uri: str) -> Path | None:
    """The database file of a sqlite:/// URI (None for other schemes or in-memory databases)."""
    if not tracking_uri.startswith("sqlite:///"):
        return None
    raw = tracking_uri[len("sqlite:///") :].split("?", 1)[0]
    return Path(raw) if raw and raw != ":memory:" else None


def check_store(tracking_uri: str, subject: str, error: type[TextguardError] = ModelLoadError) -> None:
    """Before reading from a store: a server must answer, a sqlite file must exist.

    MLflow silently creates an empty sqlite database on first use, so without this check asking for
    `models:/textguard@champion` in the wrong folder leaves an mlflow.db behind and reports a
    confusing "model not found".
    """
    ensure_reachable(tracking_uri, subject, error=error)
    database = sqlite_path(tracking_uri)
    if database is not None and not database.is_file():
        raise error(
            f"{subject}: the MLflow tracking store {tracking_uri} does not exist "
            f"({database.resolve()} is missing); set {TRACKING_URI_ENV} to the store the model was logged to"
        )


def git_commit(directory: Path | None = None) -> str | None:
    """The HEAD commit of the checkout the code runs from; None outside a git checkout."""
    from textguard.paths import project_root

    where = directory or project_root()
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=where,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = result.stdout.strip()
    return commit if result.returncode == 0 and commit else None


def git_dirty(directory: Path | None = None) -> bool | None:
    """Whether tracked files have uncommitted changes (a run from a dirty tree is not reproducible)."""
    from textguard.paths import project_root

    try:
        result = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=directory or project_root(),
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return bool(result.stdout.strip()) if result.returncode == 0 else None


@contextmanager
def global_tracking_uri(tracking_uri: str) -> Iterator[None]:
    """Point MLflow's process-wide tracking URI at `tracking_uri` for a block, then restore it (and the
    MLFLOW_TRACKING_URI variable, which MLflow rewrites as a side effect)."""
    import os

    import mlflow
    from mlflow.tracking._tracking_service import utils

    previous, previous_env = utils._tracking_uri, os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(tracking_uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(previous)  # type: ignore[arg-type]  # None restores "unset"
        if previous_env is not None:
            os.environ["MLFLOW_TRACKING_URI"] = previous_env
