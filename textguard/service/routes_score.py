"""`POST /v1/score`: decisions for chat messages and caption segments."""

from __future__ import annotations

from fastapi import APIRouter, Request

from textguard.service.deps import ScoreCaller, Scoring
from textguard.service.json_body import StrictJSONRoute
from textguard.service.ratelimit import spend
from textguard.service.schemas import SCORING_ERRORS, MessageResult, ModelInfo, ScoreRequest, ScoreResponse
from textguard.service.scoring import Item

router = APIRouter(tags=["scoring"], route_class=StrictJSONRoute)


@router.post("/v1/score", response_model=ScoreResponse, responses=SCORING_ERRORS)
async def score(body: ScoreRequest, request: Request, service: Scoring, caller: ScoreCaller) -> ScoreResponse:
    """Scores, flagged labels and an action (allow / review / block) per message, under one policy."""
    service.check_count(len(body.messages), "messages")  # an over-long request is refused, not charged
    await spend(request, caller, len(body.messages))
    items = [
        Item(m.id, m.text, f"messages.{i}.text", m.language, m.source, m.meeting_id, m.speaker_id)
        for i, m in enumerate(body.messages)
    ]
    outcome = await service.decide(items, body.policy, collection="messages", request=request)
    return ScoreResponse(
        model=ModelInfo(name=outcome.model.name, version=outcome.model.version, alias=outcome.model.alias),
        policy=outcome.policy.name,
        results=[
            MessageResult(
                id=r.item.id,
                scores=r.scores,
                labels=r.decision.labels,
                action=r.decision.action,
                language=r.language,
            )
            for r in outcome.results
        ],
    )
