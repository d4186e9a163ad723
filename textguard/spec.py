"""The model spec: everything a consumer needs to turn logits into decisions, stored beside the weights.

Post-processing travels with the weights (`textguard.json` in the artefact directory), so training,
evaluation, the service and batch scoring cannot disagree on labels, temperature or thresholds.
"""

from __future__ import annotations

import hashlib
import json
import os
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
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


#: Bytes hashed per read. Reading and hashing release the interpreter lock, and a thread that wants it
#: back waits for a busy thread's switch interval (5 ms): in 1 MB reads, hashing e5's 470 MB weights in
#: a thread took 5.0 s beside a busy main thread (0.35 s alone); in 16 MB reads 0.73 s (0.38 s alone).
HASH_CHUNK_BYTES = 16 << 20


def sha256_file(path: Path, chunk_size: int = HASH_CHUNK_BYTES) -> str:
    digest = hashlib.sha256()
    with path.open("rb", buffering=0) as handle:
        # No bigger than the file: hashing a small file does not cost 16 MB of memory.
        buffer = bytearray(max(1, min(chunk_size, os.fstat(handle.fileno()).st_size)))
        view = memoryview(buffer)
        while size := handle.readinto(buffer):
            digest.update(view[:size])
    return digest.hexdigest()


def artifact_files(directory: Path) -> list[Path]:
    """Every file of an artefact that the spec's checksums cover (the spec itself excluded).

    Hidden names (export's temporary files) are skipped, directories included: nothing the loader reads
    is hidden. Symlinked directories are not followed; a symlink to a file is listed like a file.
    """
    found = []
    for root, directories, files in os.walk(directory, followlinks=False):
        directories[:] = sorted(name for name in directories if not name.startswith("."))
        base = Path(root)
        for name in files:
            if name.startswith(".") or (base == directory and name == SPEC_FILENAME):
                continue
            found.append(base / name)
        # A symlink to a directory is a name os.walk does not descend into: report it as an entry.
        found.extend(base / name for name in directories if (base / name).is_symlink())
    return sorted(found)


def compute_checksums(directory: Path) -> dict[str, str]:
    return {
        path.relative_to(directory).as_posix(): sha256_file(path)
        for path in artifact_files(directory)
        if path.is_file()
    }


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
    """Refuse an artefact unless its spec is a closed manifest that every file on disk matches.

    - every file in the directory (hidden names and the spec aside) is listed in `spec.files`: a file
      the loader might read (weights, a tokenizer, a config) never goes unchecked because its entry
      was deleted;
    - the manifest lists at least one weights file, and no pickle-based weights exist at all;
    - every entry is a plain relative path that resolves (symlinks followed) to a regular file inside
      the directory and has the recorded sha256. Entries that are absolute, contain `..`, escape
      through a symlink or name nothing get ONE wording, so the error never tells whether some file
      outside the artefact exists.
    """
    on_disk = artifact_files(directory)
    unsafe = [p.name for p in on_disk if p.suffix in UNSAFE_WEIGHT_SUFFIXES]
    if unsafe:
        raise ModelLoadError(
            f"{directory}: refusing pickle-based weight files {unsafe}; only safetensors and ONNX are loaded"
        )
    problems = []
    root = directory.resolve()
    for relative, expected in sorted(spec.files.items()):
        path = _manifest_file(root, relative)
        if path is None:
            problems.append(f"{relative} {NOT_IN_ARTIFACT}")
        elif sha256_file(path) != expected:
            problems.append(f"{relative} does not match its recorded sha256 (tampered or truncated)")
        elif path.suffix == ".safetensors" and not _is_safetensors(path):
            # A checksum proves the file is the one recorded, not that it is what its name says: a pickle
            # renamed .safetensors would otherwise fail deep in transformers with a SafetensorError.
            problems.append(f"{relative} is not in safetensors format")
    listed = set(spec.files)
    for path in on_disk:
        relative = path.relative_to(directory).as_posix()
        if relative not in listed:
            problems.append(f"{relative} is not listed in {SPEC_FILENAME} (no recorded sha256)")
    if not any(PurePosixPath(entry).suffix in SAFE_WEIGHT_SUFFIXES for entry in listed):
        problems.append(f"{SPEC_FILENAME} lists no weights file (model.safetensors or model.onnx)")
    if problems:
        raise ModelLoadError(f"{directory}: model integrity check failed: " + "; ".join(problems))


#: The one wording for a manifest entry that is not a regular file inside the artefact directory.
NOT_IN_ARTIFACT = "is not a file inside the artefact directory"


def _manifest_file(root: Path, entry: str) -> Path | None:
    """The regular file `entry` names inside the (resolved) artefact directory `root`, else None.

    Only canonical relative POSIX paths qualify (`a/b.json`, not `./a`, `a//b`, `/etc/x` or `../x`),
    checked before the filesystem is touched; the resolved path must stay inside `root`.
    """
    if not entry or any(ord(char) < 0x20 for char in entry) or "\\" in entry:
        return None
    pure = PurePosixPath(entry)
    if pure.is_absolute() or pure.as_posix() != entry or ".." in pure.parts or entry == SPEC_FILENAME:
        return None
    try:
        resolved = (root / pure).resolve()
    except (OSError, RuntimeError):  # a symlink loop
        return None
    if not resolved.is_relative_to(root) or not resolved.is_file():
        return None
    return resolved


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


def spec_fingerprint(spec: ModelSpec) -> str:
    """Short digest of a spec (its file checksums included): the version of a model outside a registry."""
    payload = spec.model_dump_json(exclude={"created_at"}).encode("utf-8")
    return hashlib.sha256(payload).hexdigest()[:12]
