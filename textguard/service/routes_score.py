"""`POST /v1/score`: decisions for chat messages and caption segments."""

from __future__ import annotations

from fastapi import APIRouter, Request

from textguard.moderation import ItemDecision
from textguard.service.deps import ScoreCaller, Scoring
from textguard.service.json_body import StrictJSONRoute
from textguard.service.ratelimit import spend
from textguard.service.schemas import (
    SCORING_ERRORS,
    EvidenceSpan,
    FiringWindow,
    KnownContentMatch,
    MessageResult,
    ModelInfo,
    ScoreRequest,
    ScoreResponse,
)
from textguard.service.scoring import Item

router = APIRouter(tags=["scoring"], route_class=StrictJSONRoute)


@router.post("/v1/score", response_model=ScoreResponse, responses=SCORING_ERRORS)
async def score(body: ScoreRequest, request: Request, service: Scoring, caller: ScoreCaller) -> ScoreResponse:
    """Scores, flagged labels and an action (allow / review / block) per message, under one policy.

    Messages with a meeting_id and a speaker_id are also scored joined with that speaker's recent
    messages in that meeting; `context` lists the messages scored together.
    """
    service.check_count(len(body.messages), "messages")  # an over-long request is refused, not charged
    await spend(request, caller, len(body.messages))
    items = [
        (
            Item(
                m.id,
                m.text,
                source=m.source,
                language=m.language,
                meeting_id=m.meeting_id,
                speaker_id=m.speaker_id,
            ),
            f"messages.{i}.text",
        )
        for i, m in enumerate(body.messages)
    ]
    outcome = await service.decide(
        items, body.policy, collection="messages", request=request, evidence=body.evidence
    )
    return ScoreResponse(
        model=ModelInfo(name=outcome.model.name, version=outcome.model.version, alias=outcome.model.alias),
        policy=outcome.policy.name,
        results=[message_result(decision) for decision in outcome.decisions],
    )


def message_result(decision: ItemDecision) -> MessageResult:
    return MessageResult(
        id=decision.item.id,
        scores=decision.scores,
        labels=decision.labels,
        action=decision.action,
        language=decision.language,
        context=list(decision.context),
        windows={
            label: FiringWindow(
                messages=list(window.messages),
                context=window.context,
                index=window.index,
                count=window.count,
                start=window.start,
                end=window.end,
            )
            for label, window in decision.windows.items()
        },
        matches=[
            KnownContentMatch(
                list_id=str(match.list_id),
                list_version=str(match.list_version),
                kind=str(match.kind),
                hash_id=str(match.hash_id),
                distance=None if match.distance is None else float(match.distance),
                label=match.label,
            )
            for match in decision.matches
        ],
        decision_id=decision.decision_id,
        evidence=None
        if decision.evidence is None
        else {
            label: [
                EvidenceSpan(
                    message_id=span.message_id,
                    start=span.start,
                    end=span.end,
                    text=span.text,
                    weight=span.weight,
                )
                for span in spans
            ]
            for label, spans in decision.evidence.items()
        },
    )
