"""`POST /v1/moderations`: the OpenAI moderation API shape; OpenAI SDK clients work by changing base_url."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Request

from textguard.service.deps import Models, ScoreCaller, Scoring
from textguard.service.errors import InvalidInput
from textguard.service.json_body import StrictJSONRoute
from textguard.service.openai_moderation import check_model_name, map_to_openai
from textguard.service.ratelimit import spend
from textguard.service.schemas import (
    SCORING_ERRORS,
    ModerationRequest,
    ModerationResponse,
    ModerationResult,
    moderation_texts,
)
from textguard.service.scoring import Item

router = APIRouter(tags=["openai-compatible"], route_class=StrictJSONRoute)


@router.post("/v1/moderations", response_model=ModerationResponse, responses=SCORING_ERRORS)
async def moderations(
    body: ModerationRequest, request: Request, service: Scoring, models: Models, caller: ScoreCaller
) -> ModerationResponse:
    """Classify text input(s); `flagged` follows the policy's review thresholds (see docs/moderations.md)."""
    check_model_name(body.model, models.current.name)
    if isinstance(body.input, list):
        # Before the per-item checks: a 1 MB body holds ~300k empty strings.
        service.check_count(len(body.input), "input")
    await spend(request, caller, len(body.input) if isinstance(body.input, list) else 1)
    try:
        texts = moderation_texts(body)
    except ValueError as exc:
        where, _, problem = str(exc).partition(": ")
        raise InvalidInput(problem, field=where) from None
    moderation_id = f"modr-{uuid.uuid4().hex}"
    items = [(Item(f"{moderation_id}-{i}", text), where) for i, (where, text) in enumerate(texts)]
    outcome = await service.decide(items, body.policy, collection="input", request=request)
    results = []
    for decision in outcome.decisions:
        categories, category_scores, applied = map_to_openai(decision.scores, decision.labels)
        results.append(
            ModerationResult(
                flagged=decision.action != "allow",
                categories=categories,
                category_scores=category_scores,
                category_applied_input_types=applied,
            )
        )
    return ModerationResponse(
        id=moderation_id, model=f"{outcome.model.name}:{outcome.model.version}", results=results
    )
