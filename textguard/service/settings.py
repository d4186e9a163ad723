"""Service settings: every option is an environment variable (TEXTGUARD_<NAME>) and a `textguard serve` flag.

Precedence: `textguard serve` flags > environment > defaults. Secrets are `SecretStr` (never logged,
never in `repr`) and can come from files, which is how Kubernetes Secrets are usually mounted:

- `TEXTGUARD_AUDIT_HASH_KEY` or `TEXTGUARD_AUDIT_HASH_KEY_FILE`: the HMAC key the audit store hashes
  message text and identifiers with. When neither is set a random key is generated for this process
  and a warning is logged: hashes then cannot be joined across restarts or replicas, so production
  deployments must set one (`textguard serve --workers N` shares one generated key between its workers).
- `TEXTGUARD_API_KEY_HASHES` (comma-separated) and/or `TEXTGUARD_API_KEYS_FILE` (one per line, `#`
  comments): sha256 hex digests of the accepted API keys (`textguard api-key` makes a key and its
  digest). The server never sees or stores a plaintext key. No digests = authentication disabled.
"""

from __future__ import annotations

import re
import secrets
from pathlib import Path
from typing import Literal

from pydantic import Field, PrivateAttr, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from textguard.policy import DEFAULT_POLICY_PATH

ENV_PREFIX = "TEXTGUARD_"
_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
#: Fields that hold secrets: the CLI takes them only as files, so they never show in `ps`.
SECRET_FIELDS = ("audit_hash_key", "api_key_hashes")


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, extra="forbid", validate_default=True, protected_namespaces=()
    )

    # -- model and process ------------------------------------------------------------------------
    model: str = Field(
        default="models:/textguard@champion",
        description="artefact dir, runs:/<run_id>/model, models:/<name>/<version> or models:/<name>@<alias>",
    )
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    workers: int = Field(default=1, ge=1, description="uvicorn worker processes (each loads the model)")
    backend: Literal["torch", "onnx"] = "torch"
    quantized: bool = Field(default=False, description="ONNX backend: load model.int8.onnx")
    policy: Path = Field(default=DEFAULT_POLICY_PATH, description="policy YAML file")
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    warmup: bool = Field(default=True, description="run warm-up forwards before reporting ready")

    # -- audit --------------------------------------------------------------------------------------
    audit_url: str = Field(
        default="sqlite:///textguard_audit.db", description="SQLAlchemy URL of the audit store"
    )
    audit_hash_key: SecretStr | None = None
    audit_hash_key_file: Path | None = None
    audit_store_text: bool = Field(
        default=False, description="also store message text (default: hashes only)"
    )

    # -- security and limits ---------------------------------------------------------------------
    api_key_hashes: SecretStr | None = None
    api_keys_file: Path | None = None
    rate_limit_per_minute: int = Field(
        default=0, ge=0, description="requests per minute per API key or IP; 0=off"
    )
    max_body_bytes: int = Field(default=1_000_000, ge=1024)
    max_messages: int = Field(default=128, ge=1, description="messages (or moderation inputs) per request")
    max_text_chars: int = Field(default=4096, ge=1)

    # -- batching and model refresh ----------------------------------------------------------------
    max_queue: int = Field(default=1024, ge=1, description="texts waiting for inference before shedding load")
    batch_max_size: int = Field(default=8, ge=1, description="texts per forward pass")
    inference_threads: int = Field(
        default=0, ge=0, description="ONNX Runtime intra-op threads; 0=its default (one per core)"
    )
    model_poll_seconds: float = Field(default=30.0, ge=0, description="registry/artefact poll period; 0=off")

    # -- known content (textguard.known_content) ---------------------------------------------------
    hash_lists: Path | None = Field(
        default=None,
        description="hash list store directory (`textguard hashes`); none = no known-content matching",
    )
    hash_lists_poll_seconds: float = Field(
        default=2.0, gt=0, description="how often the hash list files are checked for changes"
    )

    # -- meeting context (textguard.moderation.context): captions and chat --------------------------
    caption_window_segments: int = Field(
        default=5, ge=1, description="caption segments scored together, the current one included"
    )
    caption_window_seconds: float = Field(
        default=30.0, gt=0, description="caption window span (caption time)"
    )
    caption_max_meetings: int = Field(default=10_000, ge=1, description="live meetings kept in memory")
    caption_meeting_ttl_seconds: float = Field(
        default=600.0, gt=0, description="a meeting's context is dropped after this long idle"
    )
    chat_window_messages: int = Field(
        default=4, ge=1, description="chat messages of one speaker scored together, the current one included"
    )
    chat_window_seconds: float = Field(
        default=60.0, gt=0, description="only earlier chat messages sent within this many seconds join"
    )
    context_max_speakers: int = Field(default=64, ge=1, description="speakers kept per meeting (LRU)")
    context_max_chars: int = Field(
        default=1000, ge=1, description="characters kept of each earlier message (its end)"
    )
    context_backend: Literal["memory", "redis"] = Field(
        default="memory", description="where meeting context lives: this process, or Redis for replicas"
    )
    context_redis_url: str = Field(
        default="redis://127.0.0.1:6379/0", description="Redis URL for context_backend redis"
    )

    _audit_key_generated: bool = PrivateAttr(default=False)
    _api_key_digests: frozenset[str] = PrivateAttr(default=frozenset())

    @model_validator(mode="after")
    def _load_secrets(self) -> ServiceSettings:
        if self.max_messages > self.max_queue:
            raise ValueError(f"max_messages ({self.max_messages}) cannot exceed max_queue ({self.max_queue})")
        if self.audit_hash_key is None and self.audit_hash_key_file is not None:
            key = _read_secret_file(self.audit_hash_key_file, "audit_hash_key_file").strip()
            if not key:
                raise ValueError(f"audit_hash_key_file {self.audit_hash_key_file} is empty")
            self.audit_hash_key = SecretStr(key)
        if self.audit_hash_key is None:
            self.audit_hash_key = SecretStr(secrets.token_hex(32))
            self._audit_key_generated = True
        self._api_key_digests = frozenset(self._collect_api_key_digests())
        return self

    def _collect_api_key_digests(self) -> list[str]:
        entries: list[tuple[str, str]] = []
        if self.api_key_hashes is not None:
            for index, item in enumerate(re.split(r"[,\s]+", self.api_key_hashes.get_secret_value())):
                if item:
                    entries.append((item, f"api_key_hashes item {index + 1}"))
        if self.api_keys_file is not None:
            text = _read_secret_file(self.api_keys_file, "api_keys_file")
            for number, line in enumerate(text.splitlines(), start=1):
                item = line.split("#", 1)[0].strip()
                if item:
                    entries.append((item, f"{self.api_keys_file} line {number}"))
        digests = []
        for item, where in entries:
            digest = item.lower()
            if not _SHA256_HEX.match(digest):
                # The value itself is not echoed: it may be a plaintext key pasted by mistake.
                raise ValueError(
                    f"{where} is not a sha256 hex digest (store `textguard api-key` digests, not keys)"
                )
            digests.append(digest)
        return digests

    @property
    def audit_hash_key_generated(self) -> bool:
        """True when no key was configured and this process made a random one (hashes won't join up)."""
        return self._audit_key_generated

    @property
    def api_key_digests(self) -> frozenset[str]:
        """sha256 hex digests of the accepted API keys; empty = authentication disabled."""
        return self._api_key_digests

    def to_env(self) -> dict[str, str]:
        """The settings as TEXTGUARD_* variables (secrets included), to hand to worker processes."""
        env: dict[str, str] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, SecretStr):
                text = value.get_secret_value()
            elif isinstance(value, bool):
                text = "true" if value else "false"
            else:
                text = str(value)
            env[f"{ENV_PREFIX}{name.upper()}"] = text
        return env

    def redacted(self) -> dict[str, object]:
        """The settings for logs: secrets masked, credentials stripped from the audit URL."""
        data = self.model_dump(mode="json")
        for name in SECRET_FIELDS:
            if data.get(name) is not None:
                data[name] = "**********"
        data["audit_url"] = re.sub(r"//([^/@:]*)(:[^/@]*)?@", r"//\1:***@", self.audit_url)
        data["context_redis_url"] = re.sub(r"//([^/@:]*)(:[^/@]*)?@", r"//\1:***@", self.context_redis_url)
        data["api_keys"] = len(self.api_key_digests)
        return data


def _read_secret_file(path: Path, field: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"{field}: cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ValueError(f"{field}: {path} is not UTF-8 text") from None
