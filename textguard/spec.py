"""The model spec: everything a consumer needs to turn logits into decisions, stored beside the weights.

Post-processing travels with the weights (`textguard.json` in the artefact directory), so training,
evaluation, the service and batch scoring cannot disagree on labels, temperature or thresholds.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from textguard.errors import ModelLoadError

SPEC_FILENAME = "textguard.json"
SPEC_FORMAT_VERSION = 1
#: Weights formats we are willing to load: never pickle-based formats.
SAFE_WEIGHT_SUFFIXES = (".safetensors", ".onnx")
UNSAFE_WEIGHT_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".ckpt")

ProblemType = Literal["multi_label_classification"]


class ModelSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    format_version: int = SPEC_FORMAT_VERSION
    name: str = "textguard"
    labels: list[str]
    taxonomy_version: str
    #: Chooses the activation (sigmoid for multi-label). Never inferred from the number of logits.
    problem_type: ProblemType = "multi_label_classification"
    max_length: int = Field(gt=0)
    #: Prepended to every normalised text before tokenisation (e5 backbones: "query: "); specs written
    #: before this field existed load with "" (what they were trained with).
    text_prefix: str = Field(default="", max_length=64)
    #: Temperature scaling fitted on validation: probabilities = sigmoid(logits / temperature).
    temperature: float = Field(default=1.0, gt=0)
    #: Per-label decision thresholds on calibrated probabilities.
    thresholds: dict[str, float]
    threshold_policy: str = "fixed"
    normalizer_version: str
    config_hash: str | None = None
    base_model: str | None = None
    pad_token_id: int = 0
    #: Relative file path -> sha256 hex digest, for every file of the artefact except this spec.
    files: dict[str, str] = Field(default_factory=dict)
    created_at: str = Field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    training_run_id: str | None = None
    metrics: dict[str, float] = Field(default_factory=dict)
    calibration: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _thresholds_cover_labels(self) -> ModelSpec:
        missing = [label for label in self.labels if label not in self.thresholds]
        extra = [label for label in self.thresholds if label not in self.labels]
        if missing or extra:
            raise ValueError(f"thresholds must cover exactly the labels (missing {missing}, unknown {extra})")
        return self

    def threshold_list(self) -> list[float]:
        return [self.thresholds[label] for label in self.labels]


def sha256_file(path: Path, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(chunk_size):
            digest.update(block)
    return digest.hexdigest()


def artifact_files(directory: Path) -> list[Path]:
    """Every file of an artefact that the spec's checksums cover (the spec itself excluded)."""
    return sorted(
        path
        for path in directory.rglob("*")
        if path.is_file() and path.name != SPEC_FILENAME and not path.name.startswith(".")
    )


def compute_checksums(directory: Path) -> dict[str, str]:
    return {path.relative_to(directory).as_posix(): sha256_file(path) for path in artifact_files(directory)}


def save_spec(spec: ModelSpec, directory: Path) -> Path:
    path = directory / SPEC_FILENAME
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(
        json.dumps(spec.model_dump(mode="json"), indent=2, sort_keys=True) + "\n", encoding="utf-8"
    )
    tmp.replace(path)
    return path


def load_spec(directory: Path) -> ModelSpec:
    path = directory / SPEC_FILENAME
    if not path.is_file():
        raise ModelLoadError(
            f"{directory} is not a textguard model: {SPEC_FILENAME} is missing "
            "(train one with `textguard train`, or pass a runs:/ or models:/ URI)"
        )
    try:
        return ModelSpec.model_validate_json(path.read_text(encoding="utf-8"))
    except (ValidationError, ValueError) as exc:
        raise ModelLoadError(f"{path}: invalid model spec: {exc}") from None


def verify_artifact(directory: Path, spec: ModelSpec) -> None:
    """Refuse pickle weights and any file whose checksum differs from the spec (tampered or truncated)."""
    unsafe = [p.name for p in artifact_files(directory) if p.suffix in UNSAFE_WEIGHT_SUFFIXES]
    if unsafe:
        raise ModelLoadError(
            f"{directory}: refusing pickle-based weight files {unsafe}; only safetensors and ONNX are loaded"
        )
    problems = []
    for relative, expected in sorted(spec.files.items()):
        path = directory / relative
        if not path.is_file():
            problems.append(f"{relative} is missing")
        elif sha256_file(path) != expected:
            problems.append(f"{relative} does not match its recorded sha256 (tampered or truncated)")
        elif path.suffix == ".safetensors" and not _is_safetensors(path):
            # A checksum proves the file is the one recorded, not that it is what its name says: a pickle
            # renamed .safetensors would otherwise fail deep in transformers with a SafetensorError.
            problems.append(f"{relative} is not in safetensors format")
    if problems:
        raise ModelLoadError(f"{directory}: model integrity check failed: " + "; ".join(problems))


def _is_safetensors(path: Path) -> bool:
    """Safetensors layout: an 8-byte little-endian header length, then that many bytes of a JSON object."""
    size = path.stat().st_size
    with path.open("rb") as handle:
        prefix = handle.read(8)
        if len(prefix) < 8:
            return False
        length = int.from_bytes(prefix, "little")
        if length < 2 or length > min(size - 8, 100_000_000):  # safetensors' own header limit
            return False
        try:
            header = json.loads(handle.read(length).decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return False
    return isinstance(header, dict)
