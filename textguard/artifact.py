"""Writing and locating model artefacts (weights + tokenizer + textguard.json spec)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from textguard.errors import ModelLoadError
from textguard.labels import LABELS, TAXONOMY_VERSION, id2label, label2id
from textguard.spec import ModelSpec, compute_checksums, load_spec, save_spec
from textguard.text import NORMALIZER_VERSION

REMOTE_SCHEMES = ("runs:/", "models:/", "mlflow-artifacts:/")


def build_spec(
    *,
    max_length: int,
    thresholds: dict[str, float] | None = None,
    temperature: float = 1.0,
    pad_token_id: int = 0,
    **fields: Any,
) -> ModelSpec:
    """A spec for the current taxonomy and normaliser (thresholds default to 0.5)."""
    return ModelSpec(
        labels=list(LABELS),
        taxonomy_version=TAXONOMY_VERSION,
        normalizer_version=NORMALIZER_VERSION,
        max_length=max_length,
        thresholds=thresholds or dict.fromkeys(LABELS, 0.5),
        temperature=temperature,
        pad_token_id=pad_token_id,
        **fields,
    )


def save_artifact(model: Any, tokenizer: Any, spec: ModelSpec, directory: Path) -> ModelSpec:
    """Save weights (safetensors), tokenizer and spec; the spec records every file's sha256."""
    directory.mkdir(parents=True, exist_ok=True)
    # The label maps and problem type go into config.json too, so plain transformers loads it right.
    model.config.id2label = dict(id2label)
    model.config.label2id = dict(label2id)
    model.config.problem_type = spec.problem_type
    model.save_pretrained(directory, safe_serialization=True)
    tokenizer.save_pretrained(directory)
    return refresh_checksums(directory, spec)


def refresh_checksums(directory: Path, spec: ModelSpec | None = None) -> ModelSpec:
    """Re-record checksums after files were added (e.g. an ONNX export)."""
    spec = spec or load_spec(directory)
    updated = spec.model_copy(update={"files": compute_checksums(directory)})
    save_spec(updated, directory)
    return updated


def resolve_artifact(uri: str | Path) -> Path:
    """A local artefact directory for a path, `runs:/<id>/model` or `models:/<name>@<alias>`."""
    text = str(uri)
    if text.startswith(REMOTE_SCHEMES):
        from textguard.tracking.artifacts import download_model

        return download_model(text)
    path = Path(text).expanduser()
    if not path.exists():
        raise ModelLoadError(
            f"model {text!r} not found: give an artefact directory, "
            "runs:/<run_id>/model or models:/<name>@<alias>"
        )
    if not path.is_dir():
        raise ModelLoadError(f"model {text!r} is a file; give the artefact directory that contains it")
    return path
