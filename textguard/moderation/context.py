"""Bounded in-memory state of live caption streams: a rolling window of recent final segments per speaker.

A threat or a glorifying statement is often split across caption segments ("...we will" / "...burn it
down"); scoring each segment alone misses it. So each segment is also scored with the same speaker's
recent FINAL segments in front of it. Interim hypotheses are scored but never stored: the recogniser
will replace them, and only its final text is what was said. A final that arrives again for the same
segment id (a recogniser correction) replaces the earlier one in place.

Memory is bounded on every axis: meetings (LRU eviction beyond `max_meetings`), idle time (meetings
idle for `meeting_ttl_seconds` are dropped, checked lazily on every access, which is O(1) amortised
because the LRU order is also the idle order), speakers per meeting (LRU) and segments per window.
The window is indexed by caption time (`start`/`end` in seconds), not arrival time, because captions
often arrive in bursts.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class CaptionSegment:
    segment_id: str
    text: str
    start: float
    end: float


@dataclass(frozen=True, slots=True)
class CaptionLimits:
    #: Segments in one scored window, the current segment included (1 = no context).
    window_segments: int = 4
    #: Only final segments that end within this many caption-seconds of the current one's end.
    window_seconds: float = 30.0
    max_meetings: int = 1000
    meeting_ttl_seconds: float = 900.0
    max_speakers: int = 64

    def __post_init__(self) -> None:
        if self.window_segments < 1 or self.max_meetings < 1 or self.max_speakers < 1:
            raise ValueError("caption window_segments, max_meetings and max_speakers must be at least 1")
        if self.window_seconds <= 0 or self.meeting_ttl_seconds <= 0:
            raise ValueError("caption window_seconds and meeting_ttl_seconds must be positive")

    @classmethod
    def from_settings(cls, settings: Any) -> CaptionLimits:
        """From ServiceSettings' caption_* fields; fields a settings object lacks keep their defaults."""
        defaults = cls()
        return cls(
            window_segments=int(getattr(settings, "caption_window_segments", defaults.window_segments)),
            window_seconds=float(getattr(settings, "caption_window_seconds", defaults.window_seconds)),
            max_meetings=int(getattr(settings, "caption_max_meetings", defaults.max_meetings)),
            meeting_ttl_seconds=float(
                getattr(settings, "caption_meeting_ttl_seconds", defaults.meeting_ttl_seconds)
            ),
            max_speakers=int(getattr(settings, "caption_max_speakers", defaults.max_speakers)),
        )


def fit_window(
    context: list[CaptionSegment], count_tokens: Callable[[str], int], max_tokens: int
) -> list[CaptionSegment]:
    """Drop the oldest segments until the joined window fits the model's input length.

    The tokenizer truncates from the end, so an over-long window would lose the CURRENT segment (the
    last one), which is the text being decided on. `count_tokens` may itself truncate at `max_tokens`,
    so reaching the limit counts as not fitting. The current segment is always kept.
    """
    while len(context) > 1 and count_tokens(" ".join(item.text for item in context)) >= max_tokens:
        context = context[1:]
    return context


class SpeakerWindow:
    """One speaker's recent final segments, oldest first, at most `max_segments` of them."""

    def __init__(self, max_segments: int, max_seconds: float) -> None:
        self.max_segments = max_segments
        self.max_seconds = max_seconds
        self._segments: list[CaptionSegment] = []

    @property
    def segments(self) -> tuple[CaptionSegment, ...]:
        return tuple(self._segments)

    def __len__(self) -> int:
        return len(self._segments)

    def has_final(self, segment_id: str) -> bool:
        return any(segment.segment_id == segment_id for segment in self._segments)

    def context(self, segment: CaptionSegment) -> list[CaptionSegment]:
        """The segments to score together: earlier finals still inside the window, then `segment`.

        A final already stored under the same id is left out (the new text replaces it), and so is any
        final that starts after `segment` (a late-arriving segment is not scored with its future).
        """
        horizon = segment.end - self.max_seconds
        earlier = [
            stored
            for stored in self._segments
            if stored.segment_id != segment.segment_id
            and stored.start <= segment.start
            and stored.end >= horizon
        ]
        if self.max_segments == 1:
            return [segment]
        return [*earlier[-(self.max_segments - 1) :], segment]

    def add_final(self, segment: CaptionSegment) -> None:
        """Store a final segment, replacing an earlier final with the same id, then trim the window."""
        self._segments = [stored for stored in self._segments if stored.segment_id != segment.segment_id]
        self._segments.append(segment)
        # Stable sort: segments with equal start keep arrival order.
        self._segments.sort(key=lambda stored: stored.start)
        newest_end = max(stored.end for stored in self._segments)
        self._segments = [stored for stored in self._segments if stored.end >= newest_end - self.max_seconds]
        del self._segments[: -self.max_segments]

    def clear(self) -> None:
        self._segments.clear()


@dataclass
class MeetingState:
    limits: CaptionLimits
    last_active: float
    speakers: OrderedDict[str, SpeakerWindow] = field(default_factory=OrderedDict)

    def speaker(self, speaker_id: str) -> SpeakerWindow:
        window = self.speakers.get(speaker_id)
        if window is None:
            window = SpeakerWindow(self.limits.window_segments, self.limits.window_seconds)
            self.speakers[speaker_id] = window
            while len(self.speakers) > self.limits.max_speakers:
                self.speakers.popitem(last=False)
        else:
            self.speakers.move_to_end(speaker_id)
        return window


class CaptionRegistry:
    """All live meetings of this process. Not thread-safe: use it from the event loop only."""

    def __init__(self, limits: CaptionLimits, clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = limits
        self._clock = clock
        self._meetings: OrderedDict[str, MeetingState] = OrderedDict()
        self.evicted = 0
        self.expired = 0

    def __len__(self) -> int:
        return len(self._meetings)

    def __contains__(self, meeting_id: object) -> bool:
        return meeting_id in self._meetings

    def expire(self) -> int:
        """Drop meetings idle for longer than the TTL; returns how many were dropped."""
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

    def meeting(self, meeting_id: str) -> MeetingState:
        """The meeting's state (created if new), marked active now; expires and evicts others."""
        self.expire()
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

    def speaker(self, meeting_id: str, speaker_id: str) -> SpeakerWindow:
        return self.meeting(meeting_id).speaker(speaker_id)
