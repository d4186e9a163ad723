"""Errors a user can act on. The CLI prints them as one line; the service maps them to 4xx."""

from __future__ import annotations


class TextguardError(Exception):
    """Base class: the message is shown to the user as is, so it must say what to do."""


class ConfigError(TextguardError):
    """A configuration file or override is invalid (unknown key, wrong type, missing file)."""


class DataError(TextguardError):
    """Input data is invalid; the message names file, row/line and field."""


class ModelLoadError(TextguardError):
    """A model artefact cannot be found, fetched or verified."""
