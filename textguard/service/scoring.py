"""What a scoring request does, shared by /v1/score, /v1/moderations and the caption stream:

1. check per-request limits (messages, characters, duplicate ids) before any work, naming the field;
   admit the request by its deadline (textguard.service.deadline.AdmissionGate: refused at once with a
   503 when the messages ahead of it cannot be answered in time);
2. hand the items to the library's `Moderator` (language, known content, context windows, the
   scorer through the micro-batcher, policy, audit before the answer, metrics);
3. turn library errors into the service's error kinds, and note what the access log shows.

Everything that makes a decision lives in `textguard.moderation`; this module only translates.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from starlette.requests import Request

from textguard.audit import AuditUnavailableError
from textguard.moderation import Item, Moderation, Moderator
from textguard.moderation.context import ContextUnavailableError
from textguard.service.batcher import MicroBatcher
from textguard.service.deadline import AdmissionGate
from textguard.service.errors import AuditUnavailable, ContextUnavailable, InvalidInput
from textguard.service.settings import ServiceSettings

__all__ = ["Item", "ScoringService"]


class ScoringService:
    def __init__(
        self,
        settings: ServiceSettings,
        batcher: MicroBatcher,
        moderator: Moderator,
        admission: AdmissionGate | None = None,
    ) -> None:
        self.settings = settings
        self.batcher = batcher
        self.moderator = moderator
        self.admission = admission or AdmissionGate()

    def check_count(self, count: int, collection: str) -> None:
        """Refuse more than max_messages items; callers run it before any per-item work."""
        if count > self.settings.max_messages:
            raise InvalidInput(
                f"at most {self.settings.max_messages} items per request (got {count}): split it",
                field=collection,
            )

    def check_limits(self, items: Sequence[tuple[Item, str]], collection: str) -> None:
        self.check_count(len(items), collection)
        seen: set[str] = set()
        for item, field in items:
            if len(item.text) > self.settings.max_text_chars:
                raise InvalidInput(
                    f"text is {len(item.text)} characters; the limit is {self.settings.max_text_chars}",
                    field=field,
                )
            if item.id in seen:
                raise InvalidInput(f"duplicate message id {item.id!r}", field=field.rsplit(".", 1)[0] + ".id")
            seen.add(item.id)

    async def decide(
        self,
        items: Sequence[tuple[Item, str]],
        policy_name: str | None,
        *,
        collection: str,
        request: Request | None = None,
        request_id: str | None = None,
        evidence: bool = False,
        tenant: str | None = None,
        key_id: str | None = None,
    ) -> Moderation:
        """Decide on `items` (each with its field path) under a policy.

        `request` gets the fields its access-log line shows; `request_id` ties the audit rows of one
        request or caption connection together. The audit rows carry the caller's tenant and key id
        (from `request.state.principal` when not given).
        """
        self.check_limits(items, collection)
        self.moderator.policy(policy_name)  # an unknown policy is a 422 before any work
        if request is not None:
            request_id = getattr(request.state, "request_id", None)
            principal = getattr(request.state, "principal", None)
            if principal is not None:
                tenant = tenant or principal.tenant
                key_id = key_id or principal.key_id
        self.admission.admit(len(items))
        try:
            outcome = await self.moderator.decide_async(
                [item for item, _ in items],
                self.batcher,
                policy=policy_name,
                evidence=evidence,
                request_id=request_id,
                tenant=tenant,
                key_id=key_id,
            )
        except AuditUnavailableError as exc:
            raise AuditUnavailable(str(exc), retry_after=5) from None
        except ContextUnavailableError as exc:
            raise ContextUnavailable(str(exc), retry_after=5) from None
        finally:
            self.admission.done(len(items))
        if request is not None:
            request.state.n_messages = len(outcome.decisions)
            request.state.model_version = outcome.model.version
            request.state.actions = dict(Counter(d.action for d in outcome.decisions))
        return outcome
