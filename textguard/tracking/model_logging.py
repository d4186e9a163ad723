"""Log a textguard artefact directory as an MLflow 3 model, register it, and point an alias at it.

Design. MLflow 3 registers *logged models* (a LoggedModel with an MLmodel file), not bare run
artifacts, so the directory is logged with `mlflow.pyfunc.log_model` in "models from code" form:

    model/                              (LoggedModel `model` of the run; `runs:/<id>/model`)
      MLmodel, requirements.txt, ...    (MLflow metadata)
      pyfunc_model.py                   (textguard/tracking/pyfunc_model.py, logged as code)
      artifacts/textguard/              (the artefact directory, byte for byte)
        textguard.json, model.safetensors, tokenizer.json, config.json, ...

Why this layout:
- `models:/textguard@candidate` and `runs:/<id>/model` both resolve to it (MLflow 3 maps a run's
  model name to its LoggedModel), and the registered version shows its source run in the UI.
- Nothing is pickled: models-from-code stores the wrapper as source, the weights stay safetensors.
  textguard itself never goes through pyfunc: `download_model` fetches the directory and the normal
  loader (checksums from textguard.json, safetensors only) reads `artifacts/textguard/`.
- `mlflow.pyfunc.load_model(...)` also works (wrapping the same Scorer), for people who want MLflow's
  generic tooling (`mlflow models serve`, spark_udf).
- Later exports (`textguard export`) add model.onnx next to the weights inside the same LoggedModel,
  so the registered version gains its ONNX form without a new version.

Requirements are written explicitly: MLflow's inference would execute the model in a subprocess at
log time (slow, and it imports torch a second time).

The registered version's description is the artefact's model card (MODEL_CARD.md), so the registry
page shows intended use, calibration, metrics and limitations next to the version.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import warnings
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from textguard.errors import ModelLoadError, TextguardError
from textguard.spec import load_spec, sha256_file, verify_artifact
from textguard.tracking.runs import RegisteredVersion

MODEL_NAME = "model"
ARTIFACT_KEY = "textguard"
#: Where the artefact directory sits inside the logged model.
ARTIFACT_SUBDIR = f"artifacts/{ARTIFACT_KEY}"
MODEL_TYPE = "textguard-classifier"
#: Written by training beside the weights (textguard.training.report.MODEL_CARD_FILE).
MODEL_CARD_FILE = "MODEL_CARD.md"
#: Width of MLflow's model-version description column (VARCHAR(5000) in SQL stores).
MAX_DESCRIPTION_CHARS = 5000
_REQUIREMENTS = (
    "textguard",
    "mlflow",
    "torch",
    "transformers",
    "tokenizers",
    "safetensors",
    "numpy",
    "pandas",
    "pydantic",
    "onnxruntime",
)


def model_card_description(artifact_dir: Path) -> str | None:
    """The artefact's model card as a registry description (None without a card).

    MLflow stores descriptions in a 5,000-character column; a longer card is cut at a line boundary
    with a pointer to the full file, which travels inside the registered model's artefacts.
    """
    path = artifact_dir / MODEL_CARD_FILE
    if not path.is_file():
        return None
    card = path.read_text(encoding="utf-8").strip()
    if len(card) <= MAX_DESCRIPTION_CHARS:
        return card
    note = (
        f"\n\n_(cut to fit the registry; the full card is {ARTIFACT_SUBDIR}/{MODEL_CARD_FILE} "
        "in this version's artefacts)_"
    )
    head = card[: MAX_DESCRIPTION_CHARS - len(note)]
    return head[: head.rfind("\n")].rstrip() + note


def pyfunc_code_path() -> Path:
    return Path(__file__).with_name("pyfunc_model.py")


def pip_requirements() -> list[str]:
    pinned = []
    for name in _REQUIREMENTS:
        try:
            pinned.append(f"{name}=={version(name)}")
        except PackageNotFoundError:
            pinned.append(name)
    return pinned


def _signature(labels: list[str]) -> Any:
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, DataType, Schema, TensorSpec
    from mlflow.types.schema import Array

    inputs = Schema([ColSpec(DataType.string, "text")])
    columns: list[ColSpec | TensorSpec] = [ColSpec(DataType.double, label) for label in labels]
    columns.append(ColSpec(Array(DataType.string), "labels"))
    columns.append(ColSpec(DataType.string, "action"))
    outputs = Schema(columns)
    return ModelSignature(inputs=inputs, outputs=outputs)


def _stage(artifact_dir: Path, workdir: Path) -> Path:
    """A copy named `textguard` (pyfunc names the folder after the source); hard links when possible."""
    target = workdir / ARTIFACT_KEY

    def link_or_copy(source: str, destination: str) -> object:
        try:
            os.link(source, destination)
            return destination
        except OSError:
            return shutil.copy2(source, destination)

    shutil.copytree(artifact_dir, target, copy_function=link_or_copy)
    return target


def log_artifact_model(
    artifact_dir: Path,
    *,
    run_id: str,
    tracking_uri: str | None,
    registered_model_name: str | None,
    alias: str | None,
) -> RegisteredVersion | None:
    """Log `artifact_dir` as the run's model `model`; register and alias it when a name is given."""
    import mlflow
    from mlflow.exceptions import MlflowException

    spec = load_spec(artifact_dir)
    verify_artifact(artifact_dir, spec)  # never publish a tampered or half-written artefact
    active = mlflow.active_run()
    if active is None or active.info.run_id != run_id:
        raise TextguardError("log_model must be called inside its training_run block")

    tags = {
        "textguard.taxonomy_version": spec.taxonomy_version,
        "textguard.normalizer_version": spec.normalizer_version,
        "textguard.base_model": spec.base_model or "",
        "textguard.spec_sha256": sha256_file(artifact_dir / "textguard.json"),
    }
    with tempfile.TemporaryDirectory(prefix="textguard-log-") as workdir:
        staged = _stage(artifact_dir, Path(workdir))
        with warnings.catch_warnings():
            # An input example would make MLflow load the model and run it at log time (seconds for
            # a base-size encoder); the explicit signature already documents the interface.
            warnings.filterwarnings("ignore", message=".*input example was not provided.*")
            try:
                info = mlflow.pyfunc.log_model(
                    name=MODEL_NAME,
                    python_model=str(pyfunc_code_path()),
                    artifacts={ARTIFACT_KEY: str(staged)},
                    pip_requirements=pip_requirements(),
                    signature=_signature(list(spec.labels)),
                    model_type=MODEL_TYPE,
                    tags=tags,
                    params={"max_length": str(spec.max_length), "temperature": str(spec.temperature)},
                )
            except MlflowException as exc:
                raise ModelLoadError(f"cannot log {artifact_dir} to run {run_id}: {exc.message}") from None
    metrics = {key: float(value) for key, value in spec.metrics.items()}
    if metrics and info.model_id:
        # Linked to the LoggedModel so the UI's model page shows the spec's metrics next to it.
        mlflow.log_metrics(metrics, model_id=info.model_id)
    if registered_model_name is None:
        return None
    try:
        registered = mlflow.register_model(info.model_uri, registered_model_name, tags=tags)
    except MlflowException as exc:
        raise ModelLoadError(
            f"cannot register {info.model_uri} as {registered_model_name!r}: {exc.message}"
        ) from None
    result = RegisteredVersion(registered_model_name, int(registered.version), run_id)
    card = model_card_description(artifact_dir)
    if card:
        # The registry page of the version is where reviewers look: the model card belongs there.
        client = mlflow.MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        client.update_model_version(registered_model_name, str(result.version), description=card)
    if alias:
        from textguard.tracking.registry import promote

        promote(
            registered_model_name,
            alias,
            version=result.version,
            reason=f"registered by training run {run_id}",
            tracking_uri=tracking_uri,
        )
    return result
