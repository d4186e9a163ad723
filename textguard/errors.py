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


class InvalidScoresError(TextguardError):
    """The model produced non-finite scores (NaN or infinite logits): there is no decision to give.

    NaN passes no threshold, so answering would mean "allow" for every message: scoring fails closed.
    """
