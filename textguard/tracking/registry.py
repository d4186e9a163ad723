"""The model registry: which version each alias (`candidate`, `champion`) points at, and why.

Aliases are the deployment contract: the service loads `models:/textguard@champion`, so promoting is
one alias move. Every move is recorded on the model versions themselves (who, why, when, and which
version held the alias before), so the registry UI shows the audit trail next to the model.
"""

from __future__ import annotations

import getpass
import json
import os
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from textguard.errors import ConfigError, ModelLoadError

if TYPE_CHECKING:
    from mlflow import MlflowClient

TAG_PREFIX = "textguard.alias"
#: Entries of the per-model alias history kept on the registered model (tag values are size-limited).
HISTORY_ENTRIES = 20
HISTORY_MAX_CHARS = 4500
#: What MLflow answers for an unknown alias (INVALID_PARAMETER_VALUE) or model (RESOURCE_DOES_NOT_EXIST).
_NOT_FOUND_CODES = ("INVALID_PARAMETER_VALUE", "RESOURCE_DOES_NOT_EXIST")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


@dataclass(frozen=True)
class Promotion:
    name: str
    alias: str
    version: int
    previous: int | None
    user: str
    reason: str
    at: str

    def describe(self) -> str:
        if self.previous == self.version:
            return f"{self.name}@{self.alias} already pointed at version {self.version} (re-recorded)"
        before = f"version {self.previous}" if self.previous is not None else "nothing"
        return f"{self.name}@{self.alias}: {before} -> version {self.version} (by {self.user}: {self.reason})"


@dataclass(frozen=True)
class VersionInfo:
    name: str
    version: int
    run_id: str | None
    source: str
    status: str
    created_at: str
    aliases: list[str] = field(default_factory=list)
    tags: dict[str, str] = field(default_factory=dict)


def current_user(user: str | None = None) -> str:
    if user and user.strip():
        return user.strip()
    env_user = os.environ.get("USER") or os.environ.get("USERNAME")
    if env_user:
        return env_user
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def _client(tracking_uri: str | None, subject: str) -> tuple[MlflowClient, str]:
    from mlflow import MlflowClient

    from textguard.tracking.uris import check_store, current_tracking_uri

    uri = tracking_uri or current_tracking_uri()
    check_store(uri, subject)
    return MlflowClient(tracking_uri=uri, registry_uri=uri), uri


def _check_name(kind: str, value: str) -> None:
    if not _NAME.match(value):
        raise ConfigError(
            f"{kind} {value!r} must be letters, digits, '_', '.', '-' (starting with a letter/digit)"
        )


def _iso(millis: int | None) -> str:
    if not millis:
        return ""
    return datetime.fromtimestamp(millis / 1000, UTC).isoformat(timespec="seconds")


def alias_version(name: str, alias: str, *, tracking_uri: str | None = None) -> int | None:
    """The version `name@alias` points at, or None if the alias (or the model) does not exist."""
    from mlflow.exceptions import MlflowException

    client, uri = _client(tracking_uri, f"models:/{name}@{alias}")
    try:
        return int(client.get_model_version_by_alias(name, alias).version)
    except MlflowException as exc:
        # "No such alias/model" is an answer; a server error is not, and must not read as "unset".
        if exc.error_code in _NOT_FOUND_CODES:
            return None
        raise ModelLoadError(f"cannot read alias models:/{name}@{alias} at {uri}: {exc.message}") from None


def list_versions(name: str, *, tracking_uri: str | None = None) -> list[VersionInfo]:
    """Every version of a registered model, oldest first, with aliases and tags."""
    from mlflow.exceptions import MlflowException

    _check_name("model name", name)
    client, uri = _client(tracking_uri, f"models:/{name}")
    try:
        aliases_by_version: dict[int, list[str]] = {}
        for alias, version in client.get_registered_model(name).aliases.items():
            aliases_by_version.setdefault(int(version), []).append(alias)
        versions = client.search_model_versions(f"name = '{name}'")
    except MlflowException as exc:
        raise ModelLoadError(f"registered model {name!r} not found at {uri}: {exc.message}") from None
    return sorted(
        (
            VersionInfo(
                name=name,
                version=int(mv.version),
                run_id=mv.run_id or None,
                source=str(mv.source),
                status=str(mv.status),
                created_at=_iso(mv.creation_timestamp),
                aliases=sorted(aliases_by_version.get(int(mv.version), [])),
                tags=dict(mv.tags or {}),
            )
            for mv in versions
        ),
        key=lambda info: info.version,
    )


def _version_for_run(client: MlflowClient, name: str, run_id: str, uri: str) -> tuple[int, str]:
    """(version, why) for a run: the version an evaluation run evaluated, else the newest version of
    `name` the run registered."""
    from mlflow.exceptions import MlflowException

    from textguard.tracking.run_index import run_type

    try:
        tags = client.get_run(run_id).data.tags
        if run_type(tags) == "evaluation":
            evaluated, version = tags.get("textguard.model.name"), tags.get("textguard.model.version")
            if evaluated != name or not version:
                evaluated_uri = tags.get("textguard.model.uri", "an unknown model")
                raise ModelLoadError(
                    f"evaluation run {run_id} evaluated {evaluated_uri}, not a registered version of "
                    f"{name!r}: promote with --version"
                )
            return int(version), f"evaluated by run {run_id}"
        versions = client.search_model_versions(f"name = '{name}' and run_id = '{run_id}'")
    except MlflowException as exc:
        raise ModelLoadError(f"cannot search versions of {name!r} at {uri}: {exc.message}") from None
    if not versions:
        raise ModelLoadError(f"run {run_id} has no registered version of {name!r} at {uri}")
    return max(int(mv.version) for mv in versions), f"registered by run {run_id}"


def promote_alias(
    name: str,
    alias: str,
    *,
    version: int | None = None,
    run_id: str | None = None,
    reason: str,
    user: str | None = None,
    tracking_uri: str | None = None,
) -> Promotion:
    """Point `name@alias` at a version: given, or the one `run_id` names (full id or unique prefix):
    the version an evaluation run evaluated, or the newest one a training run registered."""
    from mlflow.exceptions import MlflowException

    _check_name("model name", name)
    _check_name("alias", alias)
    if version is None and run_id is None:
        raise ConfigError(
            "give the version to promote (--version N) or the run that registered it (--run ID)"
        )
    if not reason.strip():
        raise ConfigError("a promotion needs a reason (it is recorded in the registry)")
    client, uri = _client(tracking_uri, f"models:/{name}@{alias}")
    from_run: tuple[int, str] | None = None
    if run_id is not None:
        from textguard.tracking.run_index import resolve_run_id

        run_id = resolve_run_id(run_id, uri)  # a unique prefix is enough
        from_run = _version_for_run(client, name, run_id, uri)
        if version is None:
            version = from_run[0]
    assert version is not None  # given, or taken from the run
    try:
        target = client.get_model_version(name, str(version))
    except MlflowException as exc:
        raise ModelLoadError(f"model version {name}/{version} not found at {uri}: {exc.message}") from None
    if from_run is not None and from_run[0] != int(version):
        raise ConfigError(
            f"version {version} of {name!r} was registered by run {target.run_id}, but run {run_id} "
            f"points at version {from_run[0]} ({from_run[1]})"
        )

    previous = alias_version(name, alias, tracking_uri=uri)
    who = current_user(user)
    now = datetime.now(UTC).isoformat(timespec="seconds")
    try:
        client.set_registered_model_alias(name, alias, str(version))
    except MlflowException as exc:
        raise ConfigError(f"cannot set alias {alias!r} on {name}/{version}: {exc.message}") from None
    prefix = f"{TAG_PREFIX}.{alias}"
    new_tags = {
        f"{prefix}.promoted_by": who,
        f"{prefix}.promoted_at": now,
        f"{prefix}.reason": reason.strip()[:4000],
        f"{prefix}.previous_version": str(previous) if previous is not None else "none",
    }
    for key, value in new_tags.items():
        client.set_model_version_tag(name, str(version), key, value)
    if previous is not None and previous != version:
        client.set_model_version_tag(name, str(previous), f"{prefix}.replaced_by_version", str(version))
        client.set_model_version_tag(name, str(previous), f"{prefix}.replaced_at", now)
    promotion = Promotion(name, alias, int(version), previous, who, reason.strip(), now)
    _append_history(client, promotion)
    return promotion


def promote(
    name: str,
    alias: str,
    *,
    version: int | None = None,
    run_id: str | None = None,
    reason: str,
    user: str | None = None,
    tracking_uri: str | None = None,
) -> int:
    """Move `name@alias` and record who/why/when; returns the version the alias now points at."""
    return promote_alias(
        name, alias, version=version, run_id=run_id, reason=reason, user=user, tracking_uri=tracking_uri
    ).version


def alias_history(
    name: str, alias: str | None = None, *, tracking_uri: str | None = None
) -> list[dict[str, Any]]:
    """The most recent alias moves recorded on the registered model (newest last)."""
    from mlflow.exceptions import MlflowException

    client, _ = _client(tracking_uri, f"models:/{name}")
    try:
        raw = client.get_registered_model(name).tags.get(f"{TAG_PREFIX}.history", "[]")
    except MlflowException:
        return []
    entries: list[dict[str, Any]] = json.loads(raw) if raw else []
    return [entry for entry in entries if alias is None or entry.get("alias") == alias]


def _append_history(client: MlflowClient, promotion: Promotion) -> None:
    key = f"{TAG_PREFIX}.history"
    try:
        entries = json.loads(client.get_registered_model(promotion.name).tags.get(key, "[]") or "[]")
    except ValueError:
        entries = []
    entries.append(
        {
            "alias": promotion.alias,
            "version": promotion.version,
            "previous": promotion.previous,
            "user": promotion.user,
            "reason": promotion.reason[:200],
            "at": promotion.at,
        }
    )
    entries = entries[-HISTORY_ENTRIES:]
    while len(json.dumps(entries)) > HISTORY_MAX_CHARS and len(entries) > 1:
        entries = entries[1:]
    client.set_registered_model_tag(promotion.name, key, json.dumps(entries))
