"""What a scoring request does, in order, shared by /v1/score and /v1/moderations:

1. check per-request limits (messages, characters) and the policy name, before any inference;
2. fill in missing languages (py3langid);
3. score through the micro-batcher (the one scoring path), getting the exact model version used;
4. apply the policy: flagged labels and one action per message;
5. write the audit records and wait for the commit (write-before-answer);
6. count decisions in metrics and hand the outcome back to the route to serialise.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from starlette.requests import Request

from textguard.policy import Decision, Policy, PolicySet
from textguard.service.batcher import MicroBatcher
from textguard.service.errors import AuditUnavailable, InvalidInput
from textguard.service.language import LanguageDetector
from textguard.service.metrics import ServiceMetrics
from textguard.service.model_manager import LoadedModel
from textguard.service.settings import ServiceSettings

if TYPE_CHECKING:
    from textguard.service.audit import AuditStore


@dataclass(frozen=True)
class Item:
    """One text to decide on, with what the audit trail needs to know about it."""

    id: str
    text: str
    field: str  # where the text sits in the request, for error messages ("messages.3.text")
    language: str | None = None
    source: str = "chat"
    meeting_id: str | None = None
    speaker_id: str | None = None


@dataclass(frozen=True)
class Scored:
    item: Item
    language: str
    scores: dict[str, float]
    decision: Decision


@dataclass(frozen=True)
class Outcome:
    model: LoadedModel
    policy: Policy
    results: list[Scored]


class ScoringService:
    def __init__(
        self,
        settings: ServiceSettings,
        batcher: MicroBatcher,
        policies: PolicySet,
        audit: AuditStore | None,
        metrics: ServiceMetrics,
        languages: LanguageDetector,
    ) -> None:
        self.settings = settings
        self.batcher = batcher
        self.policies = policies
        self.audit = audit
        self.metrics = metrics
        self.languages = languages

    def check_count(self, count: int, collection: str) -> None:
        """Refuse more than max_messages items; callers run it before any per-item work."""
        if count > self.settings.max_messages:
            raise InvalidInput(
                f"at most {self.settings.max_messages} items per request (got {count}): split it",
                field=collection,
            )

    def check_limits(self, items: Sequence[Item], collection: str) -> None:
        self.check_count(len(items), collection)
        seen: set[str] = set()
        for item in items:
            if len(item.text) > self.settings.max_text_chars:
                raise InvalidInput(
                    f"text is {len(item.text)} characters; the limit is {self.settings.max_text_chars}",
                    field=item.field,
                )
            if item.id in seen:
                raise InvalidInput(
                    f"duplicate message id {item.id!r}", field=item.field.rsplit(".", 1)[0] + ".id"
                )
            seen.add(item.id)

    async def decide(
        self,
        items: Sequence[Item],
        policy_name: str | None,
        *,
        collection: str,
        request: Request | None = None,
    ) -> Outcome:
        """Decide on `items` under a policy; `request` gets the fields its access-log line shows."""
        self.check_limits(items, collection)
        policy = self.policies.get(policy_name)
        languages = [item.language or self.languages.detect(item.text) for item in items]
        probs, model = await self.batcher.score_with_model([item.text for item in items])
        labels = model.scorer.spec.labels
        results = []
        for item, language, row in zip(items, languages, probs, strict=True):
            scores = {label: float(value) for label, value in zip(labels, row, strict=True)}
            results.append(
                Scored(item, language, scores, policy.decide(scores, model.scorer.spec.thresholds))
            )
        request_id = getattr(request.state, "request_id", None) if request is not None else None
        await self._audit(results, model, policy, request_id)
        self.metrics.record_decisions(policy.name, ((r.decision.labels, r.decision.action) for r in results))
        if request is not None:
            request.state.n_messages = len(results)
            request.state.model_version = model.version
            request.state.actions = dict(Counter(r.decision.action for r in results))
        return Outcome(model, policy, results)

    async def _audit(
        self, results: list[Scored], model: LoadedModel, policy: Policy, request_id: str | None
    ) -> None:
        if self.audit is None:
            return
        from textguard.service.audit import AuditRecord, AuditUnavailableError

        records = [
            AuditRecord(
                text=result.item.text,
                scores=result.scores,
                labels=result.decision.labels,
                action=result.decision.action,
                model_name=model.name,
                model_version=model.version,
                policy=policy.name,
                source=result.item.source,
                language=result.language,
                message_id=result.item.id,
                meeting_id=result.item.meeting_id,
                speaker_id=result.item.speaker_id,
                request_id=request_id,
            )
            for result in results
        ]
        try:
            await self.audit.record(records)
        except AuditUnavailableError as exc:
            raise AuditUnavailable(str(exc), retry_after=5) from None
