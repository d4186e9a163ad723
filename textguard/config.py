"""Typed configuration: pydantic models loaded from YAML, with dotted command-line overrides.

Every subsystem declares its own schema as a `StrictModel` subclass (unknown keys are errors, so a
typo never silently falls back to a default); this module only knows how to load, override,
validate, hash and flatten them.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from textguard.errors import ConfigError

ModelT = TypeVar("ModelT", bound=BaseModel)


class StrictModel(BaseModel):
    """Base for every config section: unknown keys are rejected, values validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: the top level must be a mapping, got {type(loaded).__name__}")
    return loaded


def parse_override(item: str) -> tuple[list[str], Any]:
    """Parse `a.b.c=value`; the value is read as YAML so `3e-5`, `true`, `[a, b]` get their types."""
    if "=" not in item:
        raise ConfigError(f"override {item!r} must look like section.key=value")
    dotted, raw = item.split("=", 1)
    keys = [key for key in dotted.strip().split(".") if key]
    if not keys:
        raise ConfigError(f"override {item!r} has an empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return keys, value


def apply_overrides(data: dict[str, Any], overrides: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """Return a copy of `data` with each dotted override set (missing sections are created)."""
    result = json.loads(json.dumps(data, default=str))
    for item in overrides:
        keys, value = parse_override(item)
        node = result
        for key in keys[:-1]:
            child = node.get(key)
            if not isinstance(child, dict):
                child = {}
                node[key] = child
            node = child
        node[keys[-1]] = value
    return result


def format_validation_error(exc: ValidationError, source: str) -> str:
    """One readable line per problem: `source: field.path: message`."""
    lines = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"]) or "(top level)"
        if error["type"] == "extra_forbidden":
            message = "unknown key (check the spelling; see the config reference in README)"
        else:
            message = error["msg"]
        lines.append(f"{source}: {where}: {message}")
    return "; ".join(lines)


def validate(model: type[ModelT], data: dict[str, Any], source: str) -> ModelT:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source)) from None


def load_config(model: type[ModelT], path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> ModelT:
    """Load YAML at `path`, apply `--set` overrides, validate against `model`."""
    data = apply_overrides(read_yaml(path), overrides)
    return validate(model, data, str(path))


def flatten(data: dict[str, Any] | BaseModel, prefix: str = "") -> dict[str, Any]:
    """Flatten nested mappings to dotted keys (for MLflow params)."""
    if isinstance(data, BaseModel):
        data = data.model_dump(mode="json")
    flat: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, prefix=f"{name}."))
        else:
            flat[name] = value
    return flat


def config_hash(config: BaseModel | dict[str, Any]) -> str:
    """Stable short hash of a resolved config: the same settings give the same hash."""
    data = config.model_dump(mode="json") if isinstance(config, BaseModel) else config
    payload = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]
