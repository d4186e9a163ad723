"""Resolve `model.base` to a local checkpoint directory before any heavy work starts.

A hub id that is neither cached nor downloadable must fail in the first second with the command that
fixes it, not after the data was prepared and tokenised. `package:<name>` names an offline backbone of
`textguard.backbones` (a converted one is built and cached on first use).
"""

from __future__ import annotations

import os
from pathlib import Path

from textguard.errors import ConfigError, ModelLoadError
from textguard.training.config import PACKAGE_PREFIX, ModelConfig

#: Hub files a fine-tune never needs (other frameworks, exports).
IGNORED_HUB_FILES = [
    "*.h5",
    "*.msgpack",
    "*.ot",
    "onnx/*",
    "*.onnx",
    "openvino/*",
    "tf_model*",
    "flax_model*",
]


def _hub_offline() -> bool:
    return any(
        os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}
        for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def _download_hint(repo_id: str, revision: str | None, reason: str) -> str:
    folder = f"models/{repo_id.rsplit('/', 1)[-1]}"
    revision_flag = f" --revision {revision}" if revision else ""
    return (
        f"model.base {repo_id!r} is not in the local Hugging Face cache and {reason}: on a machine with "
        f"access run `hf download {repo_id}{revision_flag} --local-dir {folder}` "
        "(or `huggingface-cli download`), "
        f"copy {folder} here and point the config at it with `--set model.base={folder}`"
    )


def _packaged(name: str) -> Path:
    from textguard.backbones.registry import prepare

    return prepare(name)


def _from_hub(repo_id: str, revision: str | None) -> Path:
    from huggingface_hub import snapshot_download

    try:
        return Path(
            snapshot_download(
                repo_id, revision=revision, local_files_only=True, ignore_patterns=IGNORED_HUB_FILES
            )
        )
    except Exception:  # not cached (the hub library raises several types for that): try the network
        pass
    if _hub_offline():
        raise ModelLoadError(_download_hint(repo_id, revision, "the Hub is unreachable (HF_HUB_OFFLINE=1)"))
    try:
        return Path(snapshot_download(repo_id, revision=revision, ignore_patterns=IGNORED_HUB_FILES))
    except Exception as exc:  # network, auth, unknown repo: all end in the same advice
        reason = (
            f"the Hub is unreachable or refused it ({type(exc).__name__}: {str(exc).splitlines()[0][:160]})"
        )
        raise ModelLoadError(_download_hint(repo_id, revision, reason)) from None


def resolve_model_dir(model: ModelConfig) -> Path | None:
    """Local directory of the base checkpoint (None for a tiny random model)."""
    if model.tiny is not None or model.base is None:
        return None
    base = model.base
    if base.startswith(PACKAGE_PREFIX):
        return _packaged(base.removeprefix(PACKAGE_PREFIX))
    local = Path(base).expanduser()
    if local.exists():
        if not (local / "config.json").is_file():
            raise ModelLoadError(
                f"model.base {base!r} is a local path without config.json (not a checkpoint)"
            )
        return local
    if base.startswith((".", "/", "~")) or base.count("/") > 1:
        raise ConfigError(f"model.base {base!r}: no such directory (and it is not a hub id like org/name)")
    return _from_hub(base, model.revision)
