"""Decisions: the one path from items (chat messages, caption segments) to allow / review / block.

`Moderator` runs the stages (language, known content, meeting context, the Scorer's windows, policy,
evidence, audit, metrics); `Item` goes in, `Moderation` (one `ItemDecision` per item) comes out.
"""

from textguard.moderation.context import ContextLimits, ContextStore, MemoryContextStore, WindowLimits
from textguard.moderation.decision import FiringWindow, Item, ItemDecision, Moderation, ServedModel
from textguard.moderation.moderator import AsyncScoring, DecisionMetrics, Moderator

__all__ = [
    "AsyncScoring",
    "ContextLimits",
    "ContextStore",
    "DecisionMetrics",
    "FiringWindow",
    "Item",
    "ItemDecision",
    "MemoryContextStore",
    "Moderation",
    "Moderator",
    "ServedModel",
    "WindowLimits",
]
