"""The one path from items to decisions, shared by /v1/score, /v1/moderations, the caption WebSocket,
`textguard score` and the evaluation of functional suites.

    prepare:   language (given or detected) -> known-content match of the normalised text ->
               meeting/speaker context (the speaker's recent messages; this one is stored in the same step)
    score:     every text in overlapping windows through the Scorer (the message alone, and the
               message with its context joined in front when there is context)
    conclude:  per label the highest window -> the policy (thresholds, known-content actions) ->
               the window that fired per flagged label
    explain:   on request, the spans of the messages' text that drove each flagged label (occlusion
               through the same scoring path, see textguard.evidence), in the window that fired
    record:    the audit record of every final decision (write-before-answer), then the speaker's
               context is forgotten after a flag, and the decisions and matches are counted

Scoring the message alone as well as with its context: a classifier pools over the whole sequence, so
benign context in front of a short clear statement lowers its score; the maximum of the two never scores
a message lower than it scores alone, so context can only add recall (the policy's review action absorbs
the extra false positives). After a flagged final decision the speaker's context is forgotten, so the
same words are not flagged and audited again on each of their next few messages.

Transports only translate: they build `Item`s, call `decide` (sync: batch scoring, evaluation) or
`decide_async` (the service: scoring goes through its micro-batcher, which batches the texts of many
requests into one forward pass; the CPU-bound stages run in worker threads, never on the event loop),
and turn the `Moderation` back into their own format.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Protocol

import anyio.from_thread
import anyio.to_thread
import numpy as np

from textguard.known_content import HashMatch, KnownContentIndex, KnownContentReloader
from textguard.moderation.context import ContextEntry, ContextStore
from textguard.moderation.decision import (
    EvidenceSpan,
    FiringWindow,
    Item,
    ItemDecision,
    Moderation,
    ServedModel,
)
from textguard.policy import Policy, PolicySet, UnknownPolicyError
from textguard.text import NormalizedText, normalize, normalize_with_offsets

if TYPE_CHECKING:
    from textguard.audit import AuditRecord, AuditStore
    from textguard.language import LanguageDetector
    from textguard.scorer import WindowScores

#: Texts [n] -> calibrated probabilities [n, labels] through the one scoring path (for evidence).
ProbabilitiesFn = Callable[[list[str]], np.ndarray]

UNDETERMINED = "und"


class DecisionMetrics(Protocol):
    """Where decisions are counted (the service's Prometheus metrics)."""

    def record_decisions(self, policy: str, decisions: Iterable[tuple[list[str], str]]) -> None: ...

    def record_matches(self, matches: Iterable[tuple[str, str]]) -> None:
        """(list id, hash kind) of each known-content match."""
        ...


class AsyncScoring(Protocol):
    """Scores texts for the async path (the service's micro-batcher) and says which model did."""

    async def score_windows(self, texts: Sequence[str]) -> tuple[WindowScores, ServedModel]: ...


@dataclass(frozen=True)
class _Prepared:
    """Everything decided before the model runs, per item, and the texts to score."""

    items: list[Item]
    languages: list[str]
    matches: list[tuple[HashMatch, ...]]
    #: This item's context entry (stored or not) and its window: earlier entries, then it.
    entries: list[ContextEntry | None]
    windows: list[list[ContextEntry]]
    texts: list[str]
    #: Index in `texts` of each item alone, and of its context window (None without context).
    alone: list[int]
    joined: list[int | None]
    #: (message id, start, end) of each message in the joined text (characters as sent).
    bounds: list[list[tuple[str, int, int]]]


#: Characters of a request that `decide_async` prepares on the event loop instead of a worker thread.
INLINE_PREPARE_CHARS = 2000


class Moderator:
    def __init__(
        self,
        policies: PolicySet | Policy,
        *,
        languages: LanguageDetector | None = None,
        context: ContextStore | None = None,
        known_content: KnownContentIndex | KnownContentReloader | None = None,
        audit: AuditStore | None = None,
        metrics: DecisionMetrics | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.policies = policies
        self.languages = languages
        self.context = context
        self.known_content = known_content
        self.audit = audit
        self.metrics = metrics
        #: Places chat messages in time (seconds): context windows join messages sent close together.
        self.clock = clock

    @property
    def known_content_index(self) -> KnownContentIndex | None:
        """The hash lists matched now (a reloader's current index: lists change while serving)."""
        if isinstance(self.known_content, KnownContentReloader):
            return self.known_content.index
        return self.known_content

    def policy(self, name: str | None = None) -> Policy:
        """The named policy (the file's default for None); raises UnknownPolicyError."""
        if isinstance(self.policies, Policy):
            if name is not None and name != self.policies.name:
                raise UnknownPolicyError(name, [self.policies.name])
            return self.policies
        return self.policies.get(name)

    # -- the two entry points ---------------------------------------------------------------------

    def decide(
        self,
        items: Sequence[Item],
        model: ServedModel,
        *,
        policy: str | None = None,
        evidence: bool = False,
        request_id: str | None = None,
        tenant: str | None = None,
        key_id: str | None = None,
    ) -> Moderation:
        """Decide on `items` with `model` in this thread (batch scoring, evaluation)."""
        chosen = self.policy(policy)
        prepared = self.prepare(items)
        scores = model.scorer.score_windows(prepared.texts)
        decisions = self.conclude(prepared, scores, model, chosen)
        if evidence:
            decisions = self.explain(prepared, decisions, model.scorer.predict_proba)
        if self.audit is not None:
            records = self.audit_records(decisions, model, chosen, request_id, tenant=tenant, key_id=key_id)
            decisions = _with_ids(decisions, self.audit.record_sync(records))
        self.settle(prepared, decisions, chosen)
        return Moderation(model, chosen, decisions)

    async def decide_async(
        self,
        items: Sequence[Item],
        scoring: AsyncScoring,
        *,
        policy: str | None = None,
        evidence: bool = False,
        request_id: str | None = None,
        tenant: str | None = None,
        key_id: str | None = None,
    ) -> Moderation:
        """Decide on `items`, scoring through `scoring` (the service's micro-batcher).

        The answer exists only once the final decisions are audited (write-before-answer).
        """
        chosen = self.policy(policy)
        if self._prepares_inline(items):
            prepared = self.prepare(items)
        else:
            prepared = await anyio.to_thread.run_sync(self.prepare, list(items))
        scores, model = await scoring.score_windows(prepared.texts)
        decisions = self.conclude(prepared, scores, model, chosen)
        if evidence:

            def probabilities(texts: list[str]) -> np.ndarray:
                # The variants go through the same batcher as every other text (queue, shedding).
                variant_scores, _ = anyio.from_thread.run(scoring.score_windows, texts)
                return variant_scores.per_text()

            decisions = await anyio.to_thread.run_sync(self.explain, prepared, decisions, probabilities)
        if self.audit is not None:
            records = self.audit_records(decisions, model, chosen, request_id, tenant=tenant, key_id=key_id)
            decisions = _with_ids(decisions, await self.audit.record(records))
        if self._flagged_in_meetings(prepared, decisions):  # the store may be Redis: not on the loop
            await anyio.to_thread.run_sync(self.forget_flagged, prepared, decisions)
        self.count(decisions, chosen)
        return Moderation(model, chosen, decisions)

    def _prepares_inline(self, items: Sequence[Item]) -> bool:
        """Whether `prepare` may run on the caller's event loop: a few chat messages with context kept in
        memory cost less to prepare (language, known content, context window: ~50 µs a message) than the
        hop to a worker thread and back (MiniLM, c=32, wrk: 331 against 313 requests/s, three runs each);
        a large request, or context in Redis (network), leaves the loop."""
        in_memory = self.context is None or not self.context.waits_on_io
        return in_memory and sum(len(item.text) for item in items) <= INLINE_PREPARE_CHARS

    # -- stages -----------------------------------------------------------------------------------

    def prepare(self, items: Sequence[Item]) -> _Prepared:
        """Language, known-content matches and context windows; the texts the model must score."""
        items = list(items)
        languages = [item.language or self._detect(item.text) for item in items]
        index = self.known_content_index
        matches = [tuple(index.match(normalize(item.text))) if index else () for item in items]
        entries: list[ContextEntry | None] = []
        windows: list[list[ContextEntry]] = []
        texts: list[str] = []
        alone: list[int] = []
        joined: list[int | None] = []
        bounds: list[list[tuple[str, int, int]]] = []
        for item in items:
            entry, window = self._window(item)
            entries.append(entry)
            windows.append(window)
            alone.append(len(texts))
            texts.append(item.text)
            if len(window) > 1:
                text, spans = _join(window)
                joined.append(len(texts))
                texts.append(text)
                bounds.append(spans)
            else:
                joined.append(None)
                bounds.append([])
        return _Prepared(items, languages, matches, entries, windows, texts, alone, joined, bounds)

    def conclude(
        self, prepared: _Prepared, scores: WindowScores, model: ServedModel, policy: Policy
    ) -> list[ItemDecision]:
        """Per label the highest window (alone or with context), then the policy."""
        spec = model.spec
        decisions = []
        offsets: dict[int, NormalizedText] = {}  # scored text -> offsets, only for texts that fired
        for index, item in enumerate(prepared.items):
            own = scores.windows_of(prepared.alone[index])
            joined = prepared.joined[index]
            rows = np.concatenate([own, scores.windows_of(joined)]) if joined is not None else own
            best = scores.probabilities[rows].max(axis=0)
            values = {label: float(value) for label, value in zip(spec.labels, best, strict=True)}
            matches = prepared.matches[index]
            decision = policy.decide(values, spec.thresholds, matches)
            windows = {
                label: _firing_window(prepared, index, scores, rows, spec.labels.index(label), offsets)
                for label in decision.labels
            }
            decisions.append(
                ItemDecision(
                    item=item,
                    language=prepared.languages[index],
                    scores=values,
                    labels=decision.labels,
                    action=decision.action,
                    context=tuple(entry.message_id for entry in prepared.windows[index]),
                    windows=windows,
                    matches=matches,
                )
            )
        return decisions

    def explain(
        self, prepared: _Prepared, decisions: list[ItemDecision], probabilities: ProbabilitiesFn
    ) -> list[ItemDecision]:
        """Evidence for every flagged label: occlusion of the text in the window that fired.

        Labels that fired in the same window are explained together (one batch of variants); a long text
        is occluded only inside its window, which bounds the cost (see textguard.evidence).
        """
        from textguard.evidence import explain

        explained = []
        for index, decision in enumerate(decisions):
            groups: dict[tuple[bool, int, int, bool], list[str]] = {}
            for label, window in decision.windows.items():
                key = (window.context, window.start, window.end, window.count > 1)
                groups.setdefault(key, []).append(label)
            evidence: dict[str, list[EvidenceSpan]] = {label: [] for label in decision.labels}
            for (in_context, start, end, partial), labels in groups.items():
                joined = prepared.joined[index]
                text = prepared.texts[joined] if in_context and joined is not None else decision.item.text
                bounds = prepared.bounds[index] if in_context else [(decision.item.id, 0, len(text))]
                indices = [list(decision.scores).index(label) for label in labels]
                region = (start, end) if partial and end > start else None
                found = explain(probabilities, text, indices, window=region)
                for label, label_index in zip(labels, indices, strict=True):
                    evidence[label] = [
                        piece for span in found[label_index] for piece in _per_message(span, text, bounds)
                    ]
            explained.append(replace(decision, evidence=evidence))
        return explained

    def audit_records(
        self,
        decisions: Sequence[ItemDecision],
        model: ServedModel,
        policy: Policy,
        request_id: str | None,
        *,
        tenant: str | None = None,
        key_id: str | None = None,
    ) -> list[AuditRecord]:
        """One record per final decision: interim caption hypotheses are answered, not recorded."""
        from textguard.audit import DEFAULT_TENANT, AuditRecord

        return [
            AuditRecord(
                text=decision.item.text,
                scores=decision.scores,
                labels=decision.labels,
                action=decision.action,
                model_name=model.name,
                model_version=model.version,
                policy=policy.name,
                source=decision.item.source,
                language=decision.language,
                message_id=decision.item.id,
                meeting_id=decision.item.meeting_id,
                speaker_id=decision.item.speaker_id,
                request_id=request_id,
                context_message_ids=list(decision.context[:-1]),
                matches=[_match_record(match) for match in decision.matches],
                tenant=tenant or DEFAULT_TENANT,
                key_id=key_id,
                policy_version=policy.version,
            )
            for decision in decisions
            if decision.item.final
        ]

    def settle(self, prepared: _Prepared, decisions: Sequence[ItemDecision], policy: Policy) -> None:
        """After the decisions are recorded: forget flagged speakers' context, count decisions and matches."""
        self.forget_flagged(prepared, decisions)
        self.count(decisions, policy)

    def forget_flagged(self, prepared: _Prepared, decisions: Sequence[ItemDecision]) -> None:
        for entry, decision in self._flagged_in_meetings(prepared, decisions):
            item = decision.item
            assert self.context is not None and item.meeting_id is not None and item.speaker_id is not None
            self.context.forget(item.meeting_id, item.speaker_id, item.source, entry)

    def count(self, decisions: Sequence[ItemDecision], policy: Policy) -> None:
        if self.metrics is not None:
            final = [decision for decision in decisions if decision.item.final]
            self.metrics.record_decisions(policy.name, ((d.labels, d.action) for d in final))
            self.metrics.record_matches(
                (str(match.list_id), str(match.kind)) for d in final for match in d.matches
            )

    def _flagged_in_meetings(
        self, prepared: _Prepared, decisions: Sequence[ItemDecision]
    ) -> list[tuple[ContextEntry, ItemDecision]]:
        if self.context is None:
            return []
        return [
            (entry, decision)
            for entry, decision in zip(prepared.entries, decisions, strict=True)
            if entry is not None
            and decision.item.final
            and (bool(decision.labels) or decision.action != "allow")
        ]

    # -- helpers ----------------------------------------------------------------------------------

    def _detect(self, text: str) -> str:
        return self.languages.detect(text) if self.languages is not None else UNDETERMINED

    def _window(self, item: Item) -> tuple[ContextEntry | None, list[ContextEntry]]:
        start = item.start if item.start is not None else self.clock()
        entry = ContextEntry(item.id, item.text, start, item.end if item.end is not None else start)
        if self.context is None or not item.in_meeting:
            return None, [entry]
        assert item.meeting_id is not None and item.speaker_id is not None
        window = self.context.window(item.meeting_id, item.speaker_id, item.source, entry, keep=item.final)
        # The current message is scored whole; the store may keep only its end.
        return entry, [*window[:-1], entry]


def _with_ids(decisions: list[ItemDecision], ids: Sequence[str]) -> list[ItemDecision]:
    """The audit trail's decision ids on the final decisions (in order: one record per final one)."""
    remaining = iter(ids)
    return [replace(d, decision_id=next(remaining)) if d.item.final else d for d in decisions]


def _join(window: Sequence[ContextEntry]) -> tuple[str, list[tuple[str, int, int]]]:
    """The window's texts joined by single spaces, oldest first, and where each message lies in it."""
    spans: list[tuple[str, int, int]] = []
    position = 0
    for entry in window:
        spans.append((entry.message_id, position, position + len(entry.text)))
        position += len(entry.text) + 1
    return " ".join(entry.text for entry in window), spans


def _firing_window(
    prepared: _Prepared,
    index: int,
    scores: WindowScores,
    rows: np.ndarray,
    label: int,
    offsets: dict[int, NormalizedText],
) -> FiringWindow:
    """The window with the label's highest score, in characters of the text as sent."""
    best = int(rows[int(np.argmax(scores.probabilities[rows, label]))])
    text = int(scores.owner[best])
    siblings = scores.windows_of(text)
    if text not in offsets:
        offsets[text] = normalize_with_offsets(prepared.texts[text])
    start, end = scores.spans[best]
    start, end = offsets[text].original_span(start, end) if end > start else (0, 0)
    in_context = text == prepared.joined[index]
    if in_context:
        messages = tuple(
            message
            for message, first, last in prepared.bounds[index]
            if first < max(end, start + 1) and last > start
        )
    else:
        messages = (prepared.items[index].id,)
    return FiringWindow(
        messages=messages or (prepared.items[index].id,),
        context=in_context,
        index=int(np.flatnonzero(siblings == best)[0]),
        count=len(siblings),
        start=start,
        end=end,
    )


def _per_message(span: Any, text: str, bounds: list[tuple[str, int, int]]) -> list[EvidenceSpan]:
    """A span of the scored text as spans of the messages it covers (split at message boundaries)."""
    pieces = []
    for message, first, last in bounds:
        start, end = max(span.start, first), min(span.end, last)
        if start < end:
            pieces.append(EvidenceSpan(message, start - first, end - first, text[start:end], span.weight))
    return pieces


def _match_record(match: HashMatch) -> dict[str, Any]:
    """What the audit trail keeps of a known-content match (never the listed text: there is none)."""
    return {
        "list_id": str(match.list_id),
        "list_version": str(match.list_version),
        "kind": str(match.kind),
        "hash_id": str(match.hash_id),
        "distance": None if match.distance is None else float(match.distance),
        "label": match.label,
    }
