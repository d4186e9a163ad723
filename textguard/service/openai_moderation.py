"""Mapping textguard labels onto OpenAI's moderation categories (documented in docs/moderations.md).

Every category of the current OpenAI moderation response is present, so SDK clients parse the reply
unchanged. Categories textguard does not model (sexual, self-harm, illicit, violence/graphic) are
always `false` / `0.0` with no applied input types: "not assessed", not "assessed as safe".

- "any" categories take the highest probability of their source labels and are flagged when any
  source label is flagged by the policy;
- "all" categories (a conjunction, like hate/threatening = hateful AND threatening) take the lowest
  probability and are flagged only when every source label is flagged.
"""

from __future__ import annotations

from typing import Literal

from textguard.service.errors import InvalidInput

Combine = Literal["any", "all"]

#: OpenAI category -> how it is derived from textguard labels; () = not modelled by textguard.
CATEGORY_SOURCES: dict[str, tuple[Combine, tuple[str, ...]]] = {
    "harassment": ("any", ("violent_threat", "hate_dehumanization")),
    "harassment/threatening": ("any", ("violent_threat",)),
    "hate": ("any", ("hate_dehumanization",)),
    "hate/threatening": ("all", ("hate_dehumanization", "violent_threat")),
    "illicit": ("any", ()),
    "illicit/violent": ("any", ()),
    "self-harm": ("any", ()),
    "self-harm/instructions": ("any", ()),
    "self-harm/intent": ("any", ()),
    "sexual": ("any", ()),
    "sexual/minors": ("any", ()),
    "violence": ("any", ("violent_threat", "extremist_glorification")),
    "violence/graphic": ("any", ()),
}

OPENAI_MODEL_NAMES = frozenset(
    {
        "omni-moderation-latest",
        "omni-moderation-2024-09-26",
        "text-moderation-latest",
        "text-moderation-stable",
    }
)


def map_to_openai(
    scores: dict[str, float], flagged_labels: list[str]
) -> tuple[dict[str, bool], dict[str, float], dict[str, list[str]]]:
    """(categories, category_scores, category_applied_input_types) for one input."""
    flagged = set(flagged_labels)
    categories: dict[str, bool] = {}
    category_scores: dict[str, float] = {}
    applied: dict[str, list[str]] = {}
    for category, (combine, sources) in CATEGORY_SOURCES.items():
        if not sources:
            categories[category], category_scores[category], applied[category] = False, 0.0, []
            continue
        values = [scores[label] for label in sources]
        hits = [label in flagged for label in sources]
        if combine == "all":
            category_scores[category], categories[category] = min(values), all(hits)
        else:
            category_scores[category], categories[category] = max(values), any(hits)
        applied[category] = ["text"]
    return categories, category_scores, applied


def check_model_name(requested: str | None, served: str) -> None:
    """Accept no model, the served name (optionally `name:version` or `name@alias`) or OpenAI's own
    moderation model names (so clients with a hard-coded model switch by base_url alone)."""
    if requested is None or requested in OPENAI_MODEL_NAMES:
        return
    if requested.split("@", 1)[0].split(":", 1)[0] != served:
        raise InvalidInput(f"unknown model {requested!r}; this server serves {served!r}", field="model")
