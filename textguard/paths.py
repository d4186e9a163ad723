"""Where things live on disk, resolved in one place."""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path


def resources_dir() -> Path:
    """Data files shipped inside the package (seed set, functional suites, metric modules)."""
    return Path(str(resources.files("textguard") / "resources"))


def project_root() -> Path:
    """The checkout root when running from a source tree (where configs/ lives), else the cwd."""
    here = Path(__file__).resolve().parent.parent
    return here if (here / "configs").is_dir() else Path.cwd()


#: Root of textguard's caches (downloaded models, prepared backbones); default ~/.cache/textguard.
CACHE_ENV = "TEXTGUARD_CACHE_DIR"


def cache_dir() -> Path:
    """$TEXTGUARD_CACHE_DIR, else $XDG_CACHE_HOME/textguard, else ~/.cache/textguard."""
    override = os.environ.get(CACHE_ENV)
    if override:
        return Path(override).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "textguard"


def backbones_cache_dir() -> Path:
    """Prepared offline backbones: $TEXTGUARD_CACHE_DIR/backbones, else ~/.cache/textguard/backbones."""
    return cache_dir() / "backbones"


def shared_datasets_dir() -> Path:
    """The public datasets folder: $TEXTGUARD_SHARED_DATASETS, else ../shared/datasets beside the checkout."""
    override = os.environ.get("TEXTGUARD_SHARED_DATASETS")
    if override:
        return Path(override)
    return project_root().parent / "shared" / "datasets"
