"""Stance wrappers: a training-time augmentation that puts a harmful text inside a frame.

A `condemn` frame quotes the text to report, criticise or refuse it, so the copy is benign; an
`endorse` frame quotes it to agree, so the copy keeps its labels. Seeing both teaches the model that
the speaker's frame decides, not the quotation marks or the quoted words. Frames are written per
language in `resources/stance/wrappers/wrappers.yaml`; rows in a language without frames, caption rows
(speech has no quotation marks) and rows too long to keep the frame after truncation are left alone.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import yaml

from textguard.errors import ConfigError
from textguard.paths import resources_dir

WRAPPERS_FILE = Path("stance") / "wrappers" / "wrappers.yaml"
QUOTE = "{quote}"


@dataclass(frozen=True)
class Frames:
    condemn: tuple[str, ...]
    endorse: tuple[str, ...]


@dataclass(frozen=True)
class Wrapped:
    index: int  # the row it wraps
    text: str
    benign: bool  # a condemn frame: the copy's labels are []


@lru_cache(maxsize=4)
def load_frames(path: Path | None = None) -> dict[str, Frames]:
    """language -> its frames; every frame must hold `{quote}` exactly once."""
    source = path or resources_dir() / WRAPPERS_FILE
    document = yaml.safe_load(source.read_text(encoding="utf-8")) or {}
    frames: dict[str, Frames] = {}
    for language, kinds in document.items():
        parsed = {}
        for kind in ("condemn", "endorse"):
            templates = tuple(str(item) for item in (kinds or {}).get(kind, []))
            bad = [template for template in templates if template.count(QUOTE) != 1]
            if bad:
                raise ConfigError(f"{source}: {language}.{kind}: {bad[0]!r} must hold {QUOTE} exactly once")
            parsed[kind] = templates
        frames[str(language)] = Frames(**parsed)
    return frames


def wrap_harmful(
    texts: Sequence[str],
    harmful: Sequence[bool],
    languages: Sequence[str],
    sources: Sequence[str],
    *,
    rate: float,
    endorse_share: float,
    max_chars: int,
    seed: int,
) -> list[Wrapped]:
    """One framed copy for a seeded `rate` share of the harmful chat rows that have frames.

    `max_chars` bounds the framed text so the frame survives truncation to the model's max_length.
    """
    frames = load_frames()
    rng = random.Random(f"stance-wrap:{seed}")
    out: list[Wrapped] = []
    for index, (text, bad, language, source) in enumerate(zip(texts, harmful, languages, sources, strict=True)):
        options = frames.get(language.split("-")[0])
        if not bad or source != "chat" or options is None or rng.random() >= rate:
            continue
        endorse = bool(options.endorse) and rng.random() < endorse_share
        pool = options.endorse if endorse else options.condemn
        if not pool:
            continue
        framed = rng.choice(pool).replace(QUOTE, text.strip())
        if len(framed) <= max_chars:
            out.append(Wrapped(index, framed, benign=not endorse))
    return out
