"""Human review and platform events against audited decisions.

- `POST /v1/decisions/{decision_id}/review` (`review` scope): a confirm / overturn / appeal / reinstate
  outcome, optionally with the labels the reviewer found. Overturning an `allow` decision (a miss) must
  say which labels it should have had; overturning a flagged one without labels means "benign".
- `POST /v1/decisions/{decision_id}/events` (`score` scope: the platform integration that scores
  messages also shows and removes them): participants in the meeting when the message or caption was
  shown, when it was shown, when the platform removed it. Several events may be sent for one decision
  (shown first, removed later); the report takes the largest audience and the first times.

The decision id is the `decision_id` of a /v1/score result (or caption reply). Unknown ids answer 404;
a decision of another tenant answers 403 unless the key has the `admin` scope. Both write to the audit
store in a worker thread and answer only after the commit, like decisions.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import anyio.to_thread
from fastapi import APIRouter, Depends, Path, Request
from pydantic import AwareDatetime, Field, model_validator

from textguard.audit import AuditStore, AuditUnavailableError, DecisionInfo, utc_now
from textguard.labels import LABELS
from textguard.service.errors import AuditUnavailable, Forbidden, InvalidInput, NotFound
from textguard.service.json_body import StrictJSONRoute
from textguard.service.schemas import Contract, error_responses
from textguard.service.security import Principal, require

router = APIRouter(tags=["review"], route_class=StrictJSONRoute)

ReviewCaller = Annotated[Principal, Depends(require("review"))]
EventCaller = Annotated[Principal, Depends(require("score"))]
DecisionId = Annotated[str, Path(min_length=1, max_length=64, description="a decision_id from /v1/score")]
Outcome = Literal["confirm", "overturn", "appeal", "reinstate"]
ERRORS = error_responses(400, 401, 403, 415, 422, 429, 503) | {
    404: error_responses(422)[422] | {"description": "no decision with this id"}
}


class ReviewIn(Contract):
    outcome: Outcome = Field(
        description="confirm / overturn (a reviewer's verdict), appeal (contested), reinstate (restored)"
    )
    labels: list[str] | None = Field(
        default=None,
        max_length=len(LABELS),
        description="confirm/overturn: the labels found ([] = benign); needed to overturn an allow",
    )


class ReviewOut(Contract):
    review_id: str
    decision_id: str
    outcome: Outcome
    labels: list[str] | None
    created_at: datetime


class EventIn(Contract):
    participants: int | None = Field(
        default=None, ge=0, le=1_000_000, description="participants in the meeting when it was shown"
    )
    shown_at: AwareDatetime | None = Field(default=None, description="when the message became visible")
    removed_at: AwareDatetime | None = Field(default=None, description="when the platform removed it")

    @model_validator(mode="after")
    def _something(self) -> EventIn:
        if self.participants is None and self.shown_at is None and self.removed_at is None:
            raise ValueError("give at least one of participants, shown_at, removed_at")
        if self.shown_at is not None and self.removed_at is not None and self.removed_at < self.shown_at:
            raise ValueError("removed_at is before shown_at")
        return self


class EventOut(Contract):
    event_id: str
    decision_id: str


async def _decision(store: AuditStore | None, decision_id: str, caller: Principal) -> DecisionInfo:
    if store is None:
        raise AuditUnavailable("this server keeps no audit store", retry_after=None)
    try:
        decision = await anyio.to_thread.run_sync(store.decision, decision_id)
    except AuditUnavailableError as exc:
        raise AuditUnavailable(str(exc), retry_after=5) from None
    if decision is None:
        raise NotFound(f"no decision {decision_id!r} in the audit trail", field="decision_id")
    if decision.tenant != caller.tenant and not caller.allows("admin"):
        raise Forbidden("this decision belongs to another tenant")
    return decision


async def _audit(request: Request) -> AuditStore | None:
    store: AuditStore | None = getattr(request.app.state, "audit", None)
    return store


Audit = Annotated[AuditStore | None, Depends(_audit)]


@router.post(
    "/v1/decisions/{decision_id}/review", status_code=201, response_model=ReviewOut, responses=ERRORS
)
async def review_decision(
    decision_id: DecisionId, body: ReviewIn, caller: ReviewCaller, store: Audit
) -> ReviewOut:
    """Record a human review outcome of an automated decision (the transparency report counts them;
    `textguard data import-reviews` turns overturned ones into training rows)."""
    labels = body.labels
    if labels is not None:
        for index, label in enumerate(labels):
            if label not in LABELS:
                raise InvalidInput(f"unknown label (one of {', '.join(LABELS)})", field=f"labels.{index}")
        labels = [label for label in LABELS if label in labels]
    decision = await _decision(store, decision_id, caller)
    if body.outcome == "overturn" and decision.action == "allow" and not labels:
        raise InvalidInput(
            "overturning an allow decision needs the labels it should have had", field="labels"
        )
    assert store is not None
    created_at = utc_now()
    try:
        review_id = await anyio.to_thread.run_sync(
            lambda: store.record_review(
                decision, body.outcome, labels=labels, reviewer=caller.key_id, created_at=created_at
            )
        )
    except AuditUnavailableError as exc:
        raise AuditUnavailable(str(exc), retry_after=5) from None
    return ReviewOut(
        review_id=review_id,
        decision_id=decision.decision_id,
        outcome=body.outcome,
        labels=labels,
        created_at=created_at,
    )


@router.post("/v1/decisions/{decision_id}/events", status_code=201, response_model=EventOut, responses=ERRORS)
async def decision_event(
    decision_id: DecisionId, body: EventIn, caller: EventCaller, store: Audit
) -> EventOut:
    """Report what happened to a decision's message on the platform: its audience and how long it was
    visible (the transparency report's exposure and time-to-action figures)."""
    decision = await _decision(store, decision_id, caller)
    assert store is not None
    try:
        event_id = await anyio.to_thread.run_sync(
            lambda: store.record_event(
                decision,
                participants=body.participants,
                shown_at=body.shown_at,
                removed_at=body.removed_at,
                reporter=caller.key_id,
            )
        )
    except AuditUnavailableError as exc:
        raise AuditUnavailable(str(exc), retry_after=5) from None
    return EventOut(event_id=event_id, decision_id=decision.decision_id)
