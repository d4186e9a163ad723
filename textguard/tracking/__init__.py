"""Experiment tracking and the model registry: the only package that imports mlflow.

Everything else talks to MLflow through this small API, so an MLflow upgrade touches one package:

- `resolve_tracking_uri(configured)`: env MLFLOW_TRACKING_URI, else the config value, else sqlite.
- `training_run(...)`: a context manager around one MLflow run (params, metrics, datasets, files and
  the registered model); with `enabled=False` (non-zero torchrun ranks) every method is a no-op.
- `git_commit()`: the commit the code runs from, recorded on runs.
- `textguard.tracking.artifacts.download_model(uri)`: `runs:/` and `models:/` URIs -> local artefact.
- `textguard.tracking.registry`: aliases (`candidate`, `champion`) with who/why/when recorded.
"""

from __future__ import annotations

from textguard.tracking.runs import (
    DEFAULT_ALIAS,
    DEFAULT_REGISTERED_MODEL,
    RegisteredVersion,
    TrainingRun,
    training_run,
)
from textguard.tracking.uris import DEFAULT_TRACKING_URI, git_commit, resolve_tracking_uri

__all__ = [
    "DEFAULT_ALIAS",
    "DEFAULT_REGISTERED_MODEL",
    "DEFAULT_TRACKING_URI",
    "RegisteredVersion",
    "TrainingRun",
    "git_commit",
    "resolve_tracking_uri",
    "training_run",
]
