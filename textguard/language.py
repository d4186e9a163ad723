"""Language of a message when the client did not say: py3langid (offline, ~30 µs per chat message).

The identifier is built once per process, during start-up, not on the first request. py3langid ships
its tables LZMA-compressed (4.6 MB -> 68 MB); decompressing them took 0.42 s of CPU of the 0.5-0.67 s
load on a 2-core machine, a share of every server's cold start. The first load writes the decompressed
tables to the cache (`$TEXTGUARD_CACHE_DIR/langid/`, else ~/.cache/textguard/langid/); later loads read
those (0.18 s in one measurement, imports included). Without a writable cache it decompresses in
memory as before.
Short or ambiguous messages ("ok", "lol") get "und" (BCP-47 undetermined) instead of a guess.
"""

from __future__ import annotations

import contextlib
import logging
import lzma
import os
import shutil
import tempfile
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from textguard.paths import cache_dir

logger = logging.getLogger("textguard.language")

UNDETERMINED = "und"
#: Below this normalised probability the answer is "und".
MIN_CONFIDENCE = 0.5


class LanguageDetector:
    def __init__(self, min_confidence: float = MIN_CONFIDENCE) -> None:
        self.min_confidence = min_confidence
        self._identifier: Any = None

    def load(self) -> None:
        self._identifier = _identifier()

    def detect(self, text: str) -> str:
        if not text.strip():
            return UNDETERMINED
        if self._identifier is None:
            self.load()
        language, confidence = self._identifier.classify(text)
        return str(language) if confidence >= self.min_confidence else UNDETERMINED


@cache
def _identifier() -> Any:
    # One per process: the model is read-only once loaded, and several apps (tests) can share it.
    from py3langid.langid import MODEL_DIR, MODEL_FILE, LanguageIdentifier

    ptc, pc, classes, nextmove, row, output = _tables(Path(MODEL_DIR) / MODEL_FILE)
    return LanguageIdentifier(
        np.asarray(ptc), np.asarray(pc), classes, nextmove, output, norm_probs=True, tk_row=row
    )


def _tables(model: Path) -> tuple[Any, ...]:
    """py3langid's model tables, as `py3langid.modelio.load_model` returns them, read from the
    decompressed copy in the cache (written on first use)."""
    from py3langid.modelio import load_model

    cached = decompressed_path(model)
    if not cached.is_file():
        with contextlib.suppress(OSError):
            _decompress(model, cached)
    if cached.is_file():
        try:
            return _read_npz(cached)
        except (OSError, ValueError, KeyError) as exc:  # damaged: rebuilt on the next start
            logger.warning("ignoring the language model cache %s: %s", cached, exc)
            with contextlib.suppress(OSError):
                cached.unlink()
    return tuple(load_model(model))


def decompressed_path(model: Path) -> Path:
    """Where the decompressed tables of `model` live: named by its size and modification time, so an
    upgraded py3langid gets a new file."""
    stat = model.stat()
    return cache_dir() / "langid" / f"{model.name.removesuffix('.xz')}-{stat.st_size}-{stat.st_mtime_ns}"


def _decompress(model: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    # Written beside the target and renamed: a concurrent start never reads half a file.
    handle, partial = tempfile.mkstemp(dir=target.parent, prefix=".partial-")
    try:
        with os.fdopen(handle, "wb") as out, lzma.open(model) as source:
            shutil.copyfileobj(source, out, length=1 << 20)
        os.replace(partial, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(partial)
        raise


def _read_npz(path: Path) -> tuple[Any, ...]:
    from py3langid.modelio import _to_array

    with np.load(path, allow_pickle=False) as data:
        return (
            data["ptc"],
            data["pc"],
            data["classes"].tolist(),
            _to_array(data["nextmove"]),
            _to_array(data["nextmove_row"]),
            data["out_feat"].tolist(),
        )
