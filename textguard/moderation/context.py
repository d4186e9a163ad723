"""Meeting context: a speaker's recent messages, scored together with the current one (chat and captions).

A threat or a glorifying statement is often split across caption segments ("...we will" / "...burn it
down") or across chat sends; scoring each piece alone misses it. So each message that carries a meeting
and a speaker is also scored with the same speaker's recent messages of the same kind (chat with chat,
captions with captions) in that meeting in front of it. Interim caption hypotheses are scored with their
context but never stored: the recogniser will replace them. A message that arrives again under the same
id (a caption correction, a client retry) replaces the earlier one in place.

Which earlier messages form the window: at most `messages - 1` of them, that end within `seconds` of
the current one's end and do not start after it (a late-arriving caption is not scored with its future).
Captions are placed in caption time (their `start`/`end`, seconds into the stream), because captions
arrive in bursts; chat messages in arrival time (the moderator's clock).

Memory is bounded on every axis: meetings (LRU beyond `max_meetings`), idle time (meetings idle for
`meeting_ttl_seconds` are dropped, checked lazily on every access, O(1) amortised because the LRU order is
also the idle order), speakers per meeting (LRU), messages per speaker, and characters per stored message
(`max_chars`, the END of the message: where a statement split across sends continues).

The selection rules are pure functions (`select_window`, `store_entry`, `forget_entries`), shared by the
in-process `MemoryContextStore` (the default) and `RedisContextStore` (several replicas serving one
meeting, see `textguard.moderation.redis_context`), so both stores form the same windows.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol

from textguard.errors import TextguardError

Source = Literal["chat", "caption"]


@dataclass(frozen=True, slots=True)
class ContextEntry:
    """One message as the context keeps it: its id, text and place in time (seconds)."""

    message_id: str
    text: str
    start: float
    end: float


@dataclass(frozen=True, slots=True)
class WindowLimits:
    #: Messages in one scored window, the current one included (1 = no context).
    messages: int = 4
    #: Only earlier messages that end within this many seconds of the current one's end.
    seconds: float = 30.0

    def __post_init__(self) -> None:
        if self.messages < 1 or self.seconds <= 0:
            raise ValueError("a context window needs messages >= 1 and seconds > 0")


@dataclass(frozen=True, slots=True)
class ContextLimits:
    caption: WindowLimits = field(default_factory=lambda: WindowLimits(5, 30.0))
    chat: WindowLimits = field(default_factory=lambda: WindowLimits(4, 60.0))
    max_meetings: int = 1000
    meeting_ttl_seconds: float = 900.0
    max_speakers: int = 64
    #: Characters kept of each stored message (its end).
    max_chars: int = 1000

    def __post_init__(self) -> None:
        if self.max_meetings < 1 or self.max_speakers < 1 or self.max_chars < 1:
            raise ValueError("context max_meetings, max_speakers and max_chars must be at least 1")
        if self.meeting_ttl_seconds <= 0:
            raise ValueError("context meeting_ttl_seconds must be positive")

    def window(self, source: Source) -> WindowLimits:
        return self.caption if source == "caption" else self.chat

    @classmethod
    def from_settings(cls, settings: Any) -> ContextLimits:
        """From ServiceSettings' caption_* / chat_* / context_* fields; missing fields keep defaults."""
        defaults = cls()

        def get(name: str, default: Any) -> Any:
            return type(default)(getattr(settings, name, default))

        return cls(
            caption=WindowLimits(
                get("caption_window_segments", defaults.caption.messages),
                get("caption_window_seconds", defaults.caption.seconds),
            ),
            chat=WindowLimits(
                get("chat_window_messages", defaults.chat.messages),
                get("chat_window_seconds", defaults.chat.seconds),
            ),
            max_meetings=get("caption_max_meetings", defaults.max_meetings),
            meeting_ttl_seconds=get("caption_meeting_ttl_seconds", defaults.meeting_ttl_seconds),
            max_speakers=get("context_max_speakers", defaults.max_speakers),
            max_chars=get("context_max_chars", defaults.max_chars),
        )


class ContextUnavailableError(TextguardError):
    """The shared context store did not answer: no decision is given without the context it would have."""


# -- the rules, shared by every store ----------------------------------------------------------------


def select_window(
    stored: Sequence[ContextEntry], entry: ContextEntry, limits: WindowLimits
) -> list[ContextEntry]:
    """The messages to score together: earlier stored ones still inside the window, then `entry`.

    A stored message with the entry's own id is left out (the new text replaces it), and so is any that
    starts after the entry (a late-arriving caption is not scored with its future).
    """
    if limits.messages == 1:
        return [entry]
    horizon = entry.end - limits.seconds
    earlier = [
        item
        for item in stored
        if item.message_id != entry.message_id and item.start <= entry.start and item.end >= horizon
    ]
    return [*earlier[-(limits.messages - 1) :], entry]


def store_entry(
    stored: Sequence[ContextEntry], entry: ContextEntry, limits: WindowLimits, max_chars: int
) -> list[ContextEntry]:
    """`stored` with `entry` added (replacing one with the same id), in time order, trimmed."""
    kept = replace(entry, text=entry.text[-max_chars:])
    entries = [item for item in stored if item.message_id != entry.message_id]
    entries.append(kept)
    # Stable sort: messages with equal start keep arrival order.
    entries.sort(key=lambda item: item.start)
    newest_end = max(item.end for item in entries)
    entries = [item for item in entries if item.end >= newest_end - limits.seconds]
    return entries[-limits.messages :]


def forget_entries(stored: Sequence[ContextEntry], upto: ContextEntry) -> list[ContextEntry]:
    """Drop `upto` and everything that started before it (after a flag: those words were decided on)."""
    return [item for item in stored if item.start > upto.start and item.message_id != upto.message_id]


# -- the stores --------------------------------------------------------------------------------------


class ContextStore(Protocol):
    """Where speakers' recent messages live. Safe to call from several threads."""

    #: Whether an operation may wait on I/O (a network store): then it never runs on an event loop.
    waits_on_io: bool

    def window(
        self, meeting_id: str, speaker_id: str, source: Source, entry: ContextEntry, *, keep: bool
    ) -> list[ContextEntry]:
        """The window for `entry` (earlier messages, then it); with `keep`, `entry` is stored in one step,
        so a second message sent before the first is decided is still scored with it."""
        ...

    def forget(self, meeting_id: str, speaker_id: str, source: Source, upto: ContextEntry) -> None:
        """Drop `upto` and the speaker's messages that started before it."""
        ...

    def close(self) -> None: ...


class SpeakerWindow:
    """One speaker's recent messages of one kind, oldest first."""

    def __init__(self, limits: WindowLimits, max_chars: int) -> None:
        self.limits = limits
        self.max_chars = max_chars
        self.entries: list[ContextEntry] = []

    def __len__(self) -> int:
        return len(self.entries)

    def context(self, entry: ContextEntry) -> list[ContextEntry]:
        return select_window(self.entries, entry, self.limits)

    def add(self, entry: ContextEntry) -> None:
        self.entries = store_entry(self.entries, entry, self.limits, self.max_chars)

    def forget(self, upto: ContextEntry) -> None:
        self.entries = forget_entries(self.entries, upto)


@dataclass
class MeetingState:
    limits: ContextLimits
    last_active: float
    speakers: OrderedDict[tuple[str, Source], SpeakerWindow] = field(default_factory=OrderedDict)

    def speaker(self, speaker_id: str, source: Source) -> SpeakerWindow:
        key = (speaker_id, source)
        window = self.speakers.get(key)
        if window is None:
            window = SpeakerWindow(self.limits.window(source), self.limits.max_chars)
            self.speakers[key] = window
            while len(self.speakers) > self.limits.max_speakers:
                self.speakers.popitem(last=False)
        else:
            self.speakers.move_to_end(key)
        return window


class MemoryContextStore:
    """All live meetings of this process (the default store). One lock: every operation is microseconds."""

    waits_on_io = False

    def __init__(self, limits: ContextLimits, clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = limits
        self._clock = clock
        self._meetings: OrderedDict[str, MeetingState] = OrderedDict()
        self._lock = threading.Lock()
        self.evicted = 0
        self.expired = 0

    def __len__(self) -> int:
        return len(self._meetings)

    def __contains__(self, meeting_id: object) -> bool:
        return meeting_id in self._meetings

    def expire(self) -> int:
        """Drop meetings idle for longer than the TTL; returns how many were dropped."""
        with self._lock:
            return self._expire()

    def _expire(self) -> int:
        deadline = self._clock() - self.limits.meeting_ttl_seconds
        dropped = 0
        # The dict is in last-activity order, so the idle meetings are all at the front.
        while self._meetings:
            oldest = next(iter(self._meetings.values()))
            if oldest.last_active > deadline:
                break
            self._meetings.popitem(last=False)
            dropped += 1
        self.expired += dropped
        return dropped

    def _meeting(self, meeting_id: str) -> MeetingState:
        """The meeting's state (created if new), marked active now; expires and evicts others."""
        self._expire()
        now = self._clock()
        state = self._meetings.get(meeting_id)
        if state is None:
            state = MeetingState(self.limits, now)
            self._meetings[meeting_id] = state
            while len(self._meetings) > self.limits.max_meetings:
                self._meetings.popitem(last=False)
                self.evicted += 1
        else:
            state.last_active = now
            self._meetings.move_to_end(meeting_id)
        return state

    def speaker(self, meeting_id: str, speaker_id: str, source: Source = "caption") -> SpeakerWindow:
        with self._lock:
            return self._meeting(meeting_id).speaker(speaker_id, source)

    def window(
        self, meeting_id: str, speaker_id: str, source: Source, entry: ContextEntry, *, keep: bool
    ) -> list[ContextEntry]:
        with self._lock:
            speaker = self._meeting(meeting_id).speaker(speaker_id, source)
            context = speaker.context(entry)
            if keep:
                speaker.add(entry)
            return context

    def forget(self, meeting_id: str, speaker_id: str, source: Source, upto: ContextEntry) -> None:
        with self._lock:
            # Looked up again: the meeting may have been evicted and recreated meanwhile.
            self._meeting(meeting_id).speaker(speaker_id, source).forget(upto)

    def close(self) -> None:
        with self._lock:
            self._meetings.clear()
