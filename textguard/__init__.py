"""textguard: detect terrorist and violent extremist content in meeting chat and live captions.

Importing the package is cheap (no torch, no transformers): heavy modules load on first use.
"""

from __future__ import annotations

from textguard.labels import LABELS, TAXONOMY_VERSION
from textguard.text import NORMALIZER_VERSION, normalize

__version__ = "0.1.0"

__all__ = ["LABELS", "NORMALIZER_VERSION", "TAXONOMY_VERSION", "__version__", "normalize"]
