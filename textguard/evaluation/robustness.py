"""Robustness: the evaluated split re-scored under seeded perturbations (obfuscation, caption style, typos).

Each row gets its own seed, derived from the run seed, the perturbation and the row id, so a row is
perturbed the same way in every run (two models see identical perturbed texts) and adding rows does
not change how the others are perturbed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

from textguard.errors import ConfigError

#: `--perturb obfuscation` stands for these: the spellings people use to slip past filters.
OBFUSCATION = ("leetspeak", "homoglyphs", "zero_width", "spacing")
GROUPS = {"obfuscation": OBFUSCATION}


def available() -> tuple[str, ...]:
    from textguard.perturb import PERTURBATIONS

    return tuple(PERTURBATIONS)


def expand_kinds(values: Iterable[str]) -> list[str]:
    """Comma-separated kinds and groups -> distinct kinds in the given order; ConfigError for unknown ones."""
    requested = [
        part.strip().replace("-", "_") for value in values for part in value.split(",") if part.strip()
    ]
    if not requested:
        return []
    known = available()
    kinds: list[str] = []
    for item in requested:
        for kind in GROUPS.get(item, (item,)):
            if kind not in known:
                choices = ", ".join([*GROUPS, *known])
                raise ConfigError(f"unknown perturbation {item!r}; choose from {choices}")
            if kind not in kinds:
                kinds.append(kind)
    return kinds


def row_seed(seed: int, kind: str, row_id: str) -> int:
    digest = hashlib.sha256(f"{seed}:{kind}:{row_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def perturb_texts(texts: Sequence[str], row_ids: Sequence[str], kind: str, seed: int) -> list[str]:
    from textguard.perturb import perturb

    return [
        perturb(text, kind, row_seed(seed, kind, row_id)) for text, row_id in zip(texts, row_ids, strict=True)
    ]
