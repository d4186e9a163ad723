"""The label taxonomy: the one place that names labels, their order and their version.

Multi-label: a text may carry any subset of LABELS; the empty set means benign.
Bump TAXONOMY_VERSION whenever a definition changes meaning, because a model is
trained against one version and its spec records it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

TAXONOMY_VERSION = "1.0.0"


class Label(StrEnum):
    VIOLENT_THREAT = "violent_threat"
    EXTREMIST_GLORIFICATION = "extremist_glorification"
    HATE_DEHUMANIZATION = "hate_dehumanization"


@dataclass(frozen=True)
class LabelDefinition:
    label: Label
    summary: str
    includes: tuple[str, ...]


DEFINITIONS: dict[Label, LabelDefinition] = {
    Label.VIOLENT_THREAT: LabelDefinition(
        Label.VIOLENT_THREAT,
        "Threats, incitement or calls to violence against people or groups.",
        (
            "direct threats to harm a person or group",
            "conditional or normative statements that violence should happen",
            "incitement and calls to attack, kill or injure",
        ),
    ),
    Label.EXTREMIST_GLORIFICATION: LabelDefinition(
        Label.EXTREMIST_GLORIFICATION,
        "Praise, support, propaganda or recruitment for terrorist or violent extremist groups, "
        "attacks or perpetrators.",
        (
            "praising a terrorist attack, a mass shooter or a live-streamed attack",
            "support for or recruitment into a violent extremist group",
            "sharing or promoting propaganda and manifestos",
        ),
    ),
    Label.HATE_DEHUMANIZATION: LabelDefinition(
        Label.HATE_DEHUMANIZATION,
        "Attacks on people for a protected identity: dehumanisation, derogation, slurs.",
        (
            "comparing a protected group to vermin, disease or animals",
            "derogatory generalisations about a protected group",
            "slurs aimed at people for their identity",
        ),
    ),
}

#: Canonical label order: the column order of every logits/probability matrix.
LABELS: tuple[str, ...] = tuple(label.value for label in Label)

#: Hard-negative categories that the taxonomy card requires to stay benign.
HARD_NEGATIVE_TYPES: tuple[str, ...] = (
    "news_reporting",
    "counter_speech",
    "quoting_to_criticise",
    "negation",
    "neutral_identity_mention",
    "untargeted_profanity",
    "fiction_gaming",
    "history_teaching",
)


class UnknownLabelError(ValueError):
    """A label name that is not in the taxonomy."""


def validate_labels(names: list[str] | tuple[str, ...]) -> list[str]:
    """Return `names` de-duplicated in canonical order; raise on a name outside the taxonomy."""
    unknown = [name for name in names if name not in LABELS]
    if unknown:
        raise UnknownLabelError(f"unknown label(s) {unknown}; the taxonomy has {list(LABELS)}")
    wanted = set(names)
    return [label for label in LABELS if label in wanted]


def to_multi_hot(names: list[str] | tuple[str, ...]) -> list[float]:
    """Multi-hot vector in canonical label order."""
    wanted = set(validate_labels(names))
    return [1.0 if label in wanted else 0.0 for label in LABELS]


def from_multi_hot(vector: list[float] | tuple[float, ...], threshold: float = 0.5) -> list[str]:
    return [label for label, value in zip(LABELS, vector, strict=True) if value >= threshold]


id2label: dict[int, str] = dict(enumerate(LABELS))
label2id: dict[str, int] = {label: index for index, label in id2label.items()}
