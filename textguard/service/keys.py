"""API keys that belong to tenants and carry scopes, stored as sha256 digests only.

The key file (`api_keys_file`, YAML) lists digests, never keys; `textguard keys new` mints a key, prints
it once and appends its entry:

    tenants:                          # optional: per-tenant settings
      acme: {rate_limit_per_minute: 6000}
    keys:
      - id: acme-chat-1               # shown in logs, metrics and audit rows (key_id); never secret
        sha256: 3f2a...               # sha256 hex digest of the key
        tenant: acme
        scopes: [score]               # score, report, review, admin (admin: every scope, every tenant)
        rate_limit_per_minute: 600    # optional: overrides the server's per-key limit

A file of bare digests, one per line with `#` comments (the format before tenants existed), is still
read, as is `api_key_hashes`: each such key belongs to the tenant `default` with every scope.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

Scope = Literal["score", "report", "review", "admin"]
SCOPES: tuple[Scope, ...] = ("score", "report", "review", "admin")
DEFAULT_TENANT = "default"
SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
NAME_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,63}$"


class KeyFileError(ValueError):
    """The key file cannot be used; the message names the file and the entry, never a key."""


class ApiKeyEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=NAME_PATTERN, description="public key id (logs, metrics, audit)")
    sha256: str = Field(description="sha256 hex digest of the key")
    tenant: str = Field(pattern=NAME_PATTERN)
    scopes: tuple[Scope, ...] = Field(min_length=1)
    rate_limit_per_minute: int | None = Field(default=None, ge=0)

    @field_validator("sha256")
    @classmethod
    def _digest(cls, value: str) -> str:
        digest = value.lower()
        if not SHA256_HEX.match(digest):
            # Not echoed: it may be a plaintext key pasted by mistake.
            raise ValueError("is not a sha256 hex digest (store `textguard keys new` digests, not keys)")
        return digest


class TenantEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    rate_limit_per_minute: int | None = Field(default=None, ge=0)


class KeyFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tenants: dict[str, TenantEntry] = Field(default_factory=dict)
    keys: list[ApiKeyEntry] = Field(default_factory=list)


@dataclass(frozen=True)
class KeyRegistry:
    """Every accepted key and the tenants' settings; empty = authentication off."""

    keys: tuple[ApiKeyEntry, ...] = ()
    tenants: tuple[tuple[str, TenantEntry], ...] = ()

    def tenant(self, name: str) -> TenantEntry:
        return dict(self.tenants).get(name, TenantEntry())

    @property
    def digests(self) -> frozenset[str]:
        return frozenset(key.sha256 for key in self.keys)


def legacy_entry(digest: str) -> ApiKeyEntry:
    """A digest from `api_key_hashes` or a line-per-digest file: tenant `default`, every scope."""
    return ApiKeyEntry(id=digest[:12], sha256=digest, tenant=DEFAULT_TENANT, scopes=SCOPES)


def parse_legacy_digests(items: Iterable[tuple[str, str]]) -> list[ApiKeyEntry]:
    """(value, where) pairs of bare digests -> entries; the error names `where`, not the value."""
    entries = []
    for item, where in items:
        digest = item.lower()
        if not SHA256_HEX.match(digest):
            raise KeyFileError(
                f"{where} is not a sha256 hex digest (store `textguard api-key` digests, not keys)"
            )
        entries.append(legacy_entry(digest))
    return entries


def read_key_file(path: Path, text: str) -> KeyFile:
    """Either format: bare digest lines (legacy) or the YAML document described above."""
    lines = [(line.split("#", 1)[0].strip(), number) for number, line in enumerate(text.splitlines(), 1)]
    lines = [(item, number) for item, number in lines if item]
    if _is_digest_lines(text) or not lines:
        return KeyFile(keys=parse_legacy_digests((item, f"{path} line {n}") for item, n in lines))
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise KeyFileError(
            f"{path}{where}: not a key file (YAML with `keys:`, or one digest per line)"
        ) from None
    if not isinstance(document, dict):
        # Most likely a digest-per-line file with a bad line: say which, without the value.
        bad = next(n for item, n in lines if not SHA256_HEX.match(item.lower()))
        raise KeyFileError(
            f"{path} line {bad} is not a sha256 hex digest (store `textguard api-key` digests, not keys)"
        )
    try:
        parsed = KeyFile.model_validate(document)
    except ValidationError as exc:
        first = exc.errors()[0]
        location = [str(part) for part in first["loc"]]
        message = str(first["msg"]).removeprefix("Value error, ")
        if first["type"] == "extra_forbidden":
            # An unknown name is not echoed: it could be a key pasted in the wrong place.
            location, message = location[:-1], "unknown field (allowed: see docs/serving.md)"
        raise KeyFileError(f"{path}: {'.'.join(location) or 'top level'}: {message}") from None
    _check_unique(path, parsed.keys)
    return parsed


def _check_unique(path: Path | str, keys: Iterable[ApiKeyEntry]) -> None:
    ids: set[str] = set()
    digests: set[str] = set()
    for key in keys:
        if key.id in ids:
            raise KeyFileError(f"{path}: key id {key.id!r} is used twice")
        if key.sha256 in digests:
            raise KeyFileError(f"{path}: key {key.id!r} has the same digest as an earlier key")
        ids.add(key.id)
        digests.add(key.sha256)


def build_registry(entries: list[ApiKeyEntry], tenants: dict[str, TenantEntry]) -> KeyRegistry:
    _check_unique("api keys", entries)
    return KeyRegistry(tuple(entries), tuple(sorted(tenants.items())))


def key_file_entry(entry: ApiKeyEntry) -> str:
    """One `keys:` list item as YAML, indented for appending under `keys:`."""
    data: dict[str, object] = {
        "id": entry.id,
        "sha256": entry.sha256,
        "tenant": entry.tenant,
        "scopes": list(entry.scopes),
    }
    if entry.rate_limit_per_minute is not None:
        data["rate_limit_per_minute"] = entry.rate_limit_per_minute
    body = yaml.safe_dump([data], sort_keys=False, default_flow_style=None)
    return "".join(f"  {line}\n" for line in body.splitlines())


def append_key(path: Path, entry: ApiKeyEntry) -> None:
    """Add `entry` to the key file at `path` (created when missing); comments and order are kept.

    The entry is appended as text under a trailing `keys:` block, and the result is parsed before it
    replaces the file, so a file the server would refuse is never written.
    """
    existing = path.read_text(encoding="utf-8") if path.exists() else ""
    if not existing.strip():
        existing = "# textguard API keys: sha256 digests only (docs/serving.md)\n"
        count = 0
    else:
        if _is_digest_lines(existing):
            raise KeyFileError(
                f"{path} holds bare digests (the older format): move them under `keys:` first "
                "(docs/serving.md) or write the new key to another file"
            )
        count = len(read_key_file(path, existing).keys)
    text = existing if existing.endswith("\n") else existing + "\n"
    if not re.search(r"^keys:[ \t]*$", text, flags=re.MULTILINE):
        text += "keys:\n"
    updated = text + key_file_entry(entry)
    try:
        parsed = read_key_file(path, updated)
    except KeyFileError as exc:
        raise KeyFileError(f"cannot append to {path}: {exc}") from None
    if len(parsed.keys) != count + 1 or parsed.keys[-1] != entry:
        raise KeyFileError(f"cannot append to {path}: keep `keys:` as its last section, in block style")
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(updated, encoding="utf-8")
    temporary.replace(path)


def _is_digest_lines(text: str) -> bool:
    items = [line.split("#", 1)[0].strip() for line in text.splitlines()]
    items = [item for item in items if item]
    return bool(items) and all(SHA256_HEX.match(item.lower()) for item in items)
