"""What goes into the Moderator (items) and what comes out (one decision per item, and which model and
policy made them). Plain frozen dataclasses: transports translate them to and from their own formats."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from textguard.moderation.context import Source
from textguard.policy import Action, Policy

if TYPE_CHECKING:
    from textguard.scorer import Scorer, ScoringModel
    from textguard.spec import ModelSpec


@dataclass(frozen=True)
class Item:
    """One text to decide on, with what context and the audit trail need to know about it."""

    id: str
    text: str
    source: Source = "chat"
    #: BCP-47 tag; detected when absent.
    language: str | None = None
    meeting_id: str | None = None
    speaker_id: str | None = None
    #: Caption time in seconds into the stream; chat messages are placed at the moderator's clock.
    start: float | None = None
    end: float | None = None
    #: Interim caption hypotheses are decided but neither stored as context nor audited.
    final: bool = True

    @property
    def in_meeting(self) -> bool:
        """Scored with the speaker's recent messages too (it names both a meeting and a speaker)."""
        return bool(self.meeting_id) and bool(self.speaker_id)


@dataclass(frozen=True)
class FiringWindow:
    """The window that gave a flagged label its score."""

    #: Ids of the messages whose text the window covers, oldest first.
    messages: tuple[str, ...]
    #: True when the text was the speaker's recent messages joined; False for this message alone.
    context: bool
    #: Which window of that text (0-based), of how many.
    index: int
    count: int
    #: [start, end) characters of the window in the scored text as sent: this message's text, or (with
    #: context) the messages' texts joined by single spaces, oldest first.
    start: int
    end: int


@dataclass(frozen=True)
class EvidenceSpan:
    """Characters `start:end` of one message's text (as sent) that drove a label, and by how much.

    `weight` is how far the label's probability fell when those words were deleted (occlusion, see
    textguard.evidence). For an earlier message of the context longer than the context keeps
    (`context_max_chars`), offsets count from the start of the part kept.
    """

    message_id: str
    start: int
    end: int
    text: str
    weight: float


@dataclass(frozen=True)
class ItemDecision:
    item: Item
    language: str
    #: Calibrated probability per label: each label's highest window, alone or with context.
    scores: dict[str, float]
    #: Labels the policy flags (review or block), in taxonomy order.
    labels: list[str]
    action: Action
    #: Ids of the messages scored together, oldest first, this one last ([id] without context).
    context: tuple[str, ...]
    #: The window that fired, per flagged label.
    windows: dict[str, FiringWindow] = field(default_factory=dict)
    #: Known-content (hash list) matches of the normalised text.
    matches: tuple[Any, ...] = ()
    #: Per flagged label, the spans of the messages' text that drove it (only when asked for).
    evidence: dict[str, list[EvidenceSpan]] | None = None
    #: The audit trail's id of this decision (final decisions with an audit store): reviews and
    #: exposure events name it.
    decision_id: str | None = None


@dataclass(frozen=True)
class ServedModel:
    """The model that made a decision: the scorer and the name/version the audit trail records."""

    scorer: ScoringModel
    name: str
    version: str
    alias: str | None = None

    @property
    def spec(self) -> ModelSpec:
        return self.scorer.spec

    @property
    def info(self) -> dict[str, str | None]:
        return {"name": self.name, "version": self.version, "alias": self.alias}

    @classmethod
    def local(cls, scorer: Scorer) -> ServedModel:
        """A model loaded outside a registry: versioned by a fingerprint of its spec (checksums included)."""
        from textguard.spec import spec_fingerprint

        return cls(scorer, scorer.spec.name, "local-" + spec_fingerprint(scorer.spec))


@dataclass(frozen=True)
class Moderation:
    """The decisions on a batch of items, with the model and policy that made them."""

    model: ServedModel
    policy: Policy
    decisions: list[ItemDecision]
