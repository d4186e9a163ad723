"""Service settings: every option is an environment variable (TEXTGUARD_<NAME>) and a `textguard serve` flag.

Precedence: `textguard serve` flags > environment > defaults. Secrets are `SecretStr` (never logged,
never in `repr`) and can come from files, which is how Kubernetes Secrets are usually mounted:

- `TEXTGUARD_AUDIT_HASH_KEY` or `TEXTGUARD_AUDIT_HASH_KEY_FILE`: the HMAC key the audit store hashes
  message text and identifiers with. When neither is set a random key is generated for this process
  and a warning is logged: hashes then cannot be joined across restarts or replicas, so production
  deployments must set one (`textguard serve --workers N` shares one generated key between its workers).
- `TEXTGUARD_API_KEYS_FILE`: the key file, tenants and scopes with each key's sha256 digest
  (`textguard keys new` mints a key and appends its entry; format in textguard/service/keys.py), or
  the older one digest per line. `TEXTGUARD_API_KEY_HASHES` (comma-separated digests) still works;
  those keys belong to the tenant `default` with every scope. The server never sees or stores a
  plaintext key. No keys = authentication disabled.
"""

from __future__ import annotations

import ipaddress
import re
import secrets
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, PrivateAttr, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from textguard.policy import DEFAULT_POLICY_PATH
from textguard.service.keys import (
    KeyFileError,
    KeyRegistry,
    build_registry,
    parse_legacy_digests,
    read_key_file,
)

ENV_PREFIX = "TEXTGUARD_"
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
    reuse_port: bool = Field(
        default=True,
        description="with several `workers`: each process listens on a socket of its own (SO_REUSEPORT, "
        "Linux) and the kernel spreads connections between them; off: they share one socket and the "
        "first to wake accepts every pending connection",
    )
    backend: Literal["torch", "onnx"] = "torch"
    quantized: bool = Field(default=False, description="ONNX backend: load model.int8.onnx")
    precision: Literal["auto", "fp32", "bf16"] = Field(
        default="auto",
        description="torch: auto = bf16 where the CPU/GPU has bf16 units and the artefact's recorded bf16 "
        "parity holds, else fp32 (textguard.parity)",
    )
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
    report_min_count: int = Field(
        default=10,
        ge=1,
        description="transparency report: counts from 1 to this minus 1 are published as `<k` (callers may "
        "only raise it)",
    )
    report_min_meetings: int = Field(
        default=3,
        ge=1,
        description="transparency report: a row drawn from fewer distinct meetings than this is suppressed",
    )

    # -- security and limits ---------------------------------------------------------------------
    api_key_hashes: SecretStr | None = None
    api_keys_file: Path | None = None
    rate_limit_per_minute: int = Field(
        default=0,
        ge=0,
        description="messages per minute per API key (per client IP without keys); a request costs its "
        "message count, at least 1; 0=off",
    )
    tenant_rate_limit_per_minute: int = Field(
        default=0, ge=0, description="messages per minute per tenant, all its keys together; 0=off"
    )
    rate_limit_redis_url: str | None = Field(
        default=None,
        description="redis://host:port/db shared by every replica; unset = limits per process (in memory)",
    )
    trusted_proxies: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="CIDRs of proxies whose X-Forwarded-For is believed (comma-separated); none by default",
    )
    max_body_bytes: int = Field(default=1_000_000, ge=1024)
    max_messages: int = Field(default=128, ge=1, description="messages (or moderation inputs) per request")
    max_text_chars: int = Field(default=4096, ge=1)

    # -- connections (textguard.service.connection) ----------------------------------------------
    max_header_bytes: int = Field(default=16_384, ge=1024, description="request line + headers, bytes")
    max_headers: int = Field(default=100, ge=8, description="header fields per request")
    header_timeout_seconds: float = Field(
        default=10.0, gt=0, description="from connection (or first byte of a request) to its last header"
    )
    body_timeout_seconds: float = Field(
        default=30.0, gt=0, description="from the last header to the body's end"
    )
    keep_alive_seconds: int = Field(
        default=5, ge=1, description="idle keep-alive connections are closed after"
    )
    max_connections: int = Field(
        default=1000, ge=1, description="open connections (or requests in progress) before answering 503"
    )
    drain_timeout_seconds: int = Field(
        default=20, ge=1, description="on SIGTERM: how long requests in progress may still finish"
    )

    # -- admission by deadline (textguard.service.deadline) ----------------------------------------
    deadline_ms: int = Field(
        default=1000,
        ge=1,
        description="a request not answerable within this many ms of arrival is refused at once (503)",
    )
    deadline_min_ms: int = Field(default=50, ge=1, description="shortest deadline a client may ask for")
    deadline_max_ms: int = Field(
        default=30_000, ge=1, description="longest deadline a client may ask for (X-Deadline-Ms)"
    )
    retry_hold_ms: int = Field(
        default=1000,
        ge=0,
        description="a scoring request from a client that comes back before the Retry-After of its last "
        "refusal waits out the rest of it, up to this long, before it is considered (0=never)",
    )

    # -- batching and model refresh ----------------------------------------------------------------
    max_queue: int = Field(default=1024, ge=1, description="texts waiting for inference before shedding load")
    batch_max_size: int = Field(default=32, ge=1, description="texts per forward pass")
    batch_drain_max: int = Field(
        default=8,
        ge=0,
        description="texts an inference worker takes from the queue at once (whole requests, at least "
        "one): small drains keep waits even under load; 0=everything queued (raise it on a GPU)",
    )
    inference_workers: int = Field(
        default=0,
        ge=0,
        description="forward passes run at once per process (worker threads); 0=one per core, the cores "
        "shared between the `workers` processes",
    )
    batch_gather_ms: float | None = Field(
        default=None,
        ge=0,
        description="while another worker is busy, wait up to this long for a full batch (0=never); "
        "unset: 25 with inference threads, 0 with inference processes (measured best for each)",
    )
    inference_threads: int = Field(
        default=0,
        ge=0,
        description="threads of each forward pass (torch and ONNX Runtime); 0=cores / inference_workers",
    )
    inference_processes: bool = Field(
        default=True,
        description="run each inference worker's model in a process of its own (own interpreter lock; "
        "loads beside the web stack at start-up) instead of a thread of the server process",
    )
    freeze_heap: bool = Field(
        default=True,
        description="once the first model is in, move the objects alive (web stack, model) out of the "
        "garbage collector's full scans (gc.freeze; each full scan paused the event loop 54-117 ms); off "
        "for a process that runs other work beside the app, such as a test suite",
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
    _api_keys: KeyRegistry = PrivateAttr(default_factory=KeyRegistry)

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _split_proxies(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [item for item in re.split(r"[,\s]+", value) if item]
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _valid_networks(cls, value: list[str]) -> list[str]:
        networks = []
        for item in value:
            try:
                networks.append(str(ipaddress.ip_network(item, strict=False)))
            except ValueError:
                raise ValueError(f"{item!r} is not an IP address or CIDR network (e.g. 10.0.0.0/8)") from None
        return networks

    @model_validator(mode="after")
    def _load_secrets(self) -> ServiceSettings:
        if not self.deadline_min_ms <= self.deadline_ms <= self.deadline_max_ms:
            raise ValueError(
                f"deadline_ms ({self.deadline_ms}) must lie within deadline_min_ms ({self.deadline_min_ms}) "
                f"and deadline_max_ms ({self.deadline_max_ms})"
            )
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
        try:
            self._api_keys = self._load_api_keys()
        except KeyFileError as exc:
            raise ValueError(str(exc)) from None
        return self

    def _load_api_keys(self) -> KeyRegistry:
        entries = []
        tenants = {}
        if self.api_key_hashes is not None:
            items = [item for item in re.split(r"[,\s]+", self.api_key_hashes.get_secret_value()) if item]
            entries += parse_legacy_digests(
                (item, f"api_key_hashes item {n}") for n, item in enumerate(items, 1)
            )
        if self.api_keys_file is not None:
            text = _read_secret_file(self.api_keys_file, "api_keys_file")
            document = read_key_file(self.api_keys_file, text)
            entries += document.keys
            tenants = document.tenants
        return build_registry(entries, tenants)

    @property
    def audit_hash_key_generated(self) -> bool:
        """True when no key was configured and this process made a random one (hashes won't join up)."""
        return self._audit_key_generated

    @property
    def api_keys(self) -> KeyRegistry:
        """The accepted API keys (tenant, scopes, digest) and tenant settings; no keys = auth disabled."""
        return self._api_keys

    @property
    def api_key_digests(self) -> frozenset[str]:
        """sha256 hex digests of the accepted API keys; empty = authentication disabled."""
        return self._api_keys.digests

    def inference_layout(self) -> tuple[int, int]:
        """(inference workers, threads per forward pass) of each process: by default one single-threaded
        worker per core (textguard.service.batcher explains why), the cores shared between the `workers`
        processes (two processes on two cores: one inference worker each)."""
        from textguard.hardware import available_cores

        cores = max(1, available_cores() // self.workers)
        workers = self.inference_workers or cores
        return workers, self.inference_threads or max(1, cores // workers)

    def gather_seconds(self) -> float:
        """`batch_gather_ms` in seconds, or its default for the inference layout: with threads, waiting
        for fuller batches while the other worker is busy paid off; with processes it cost throughput
        (MiniLM, c=32, wrk, three interleaved runs each: 480-495 msgs/s at 0 ms against 365 at 25 ms)."""
        if self.batch_gather_ms is not None:
            return self.batch_gather_ms / 1000
        return 0.0 if self.inference_processes else 0.025

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
            elif isinstance(value, list):
                text = ",".join(str(item) for item in value)
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
        data["audit_url"] = _without_password(self.audit_url)
        data["context_redis_url"] = _without_password(self.context_redis_url)
        if self.rate_limit_redis_url is not None:
            data["rate_limit_redis_url"] = _without_password(self.rate_limit_redis_url)
        data["api_keys"] = len(self.api_key_digests)
        return data


def _without_password(url: str) -> str:
    return re.sub(r"//([^/@:]*)(:[^/@]*)?@", r"//\1:***@", url)


def _read_secret_file(path: Path, field: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"{field}: cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ValueError(f"{field}: {path} is not UTF-8 text") from None
