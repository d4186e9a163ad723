"""Caption stream state: rolling windows, interim handling, bounded meetings/speakers, TTL expiry,
and the message parser's error reporting."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from textguard.service.caption_state import CaptionLimits, CaptionRegistry, CaptionSegment, SpeakerWindow
from textguard.service.captions import ProtocolError, parse_message


class Clock:
    """A settable monotonic clock: TTL tests advance time instead of sleeping."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def seg(segment_id: str, start: float, end: float | None = None, text: str | None = None) -> CaptionSegment:
    return CaptionSegment(
        segment_id, text or f"text of {segment_id}", start, start + 1 if end is None else end
    )


def ids(segments: list[CaptionSegment] | tuple[CaptionSegment, ...]) -> list[str]:
    return [segment.segment_id for segment in segments]


def test_window_keeps_the_last_n_segments_in_caption_order() -> None:
    window = SpeakerWindow(max_segments=3, max_seconds=60)
    for index in range(5):
        window.add_final(seg(f"s{index}", start=index * 2))
    assert ids(window.segments) == ["s2", "s3", "s4"]
    # The current segment counts towards N: two earlier finals, then it.
    assert ids(window.context(seg("s5", start=10))) == ["s3", "s4", "s5"]


def test_window_drops_segments_older_than_t_seconds() -> None:
    window = SpeakerWindow(max_segments=10, max_seconds=5)
    window.add_final(seg("old", start=0, end=1))
    window.add_final(seg("recent", start=4, end=5))
    assert ids(window.context(seg("now", start=5.5, end=6.5))) == ["recent", "now"]
    window.add_final(seg("later", start=20, end=21))
    assert ids(window.segments) == ["later"]


def test_a_window_of_one_segment_has_no_context() -> None:
    window = SpeakerWindow(max_segments=1, max_seconds=60)
    window.add_final(seg("a", 0))
    assert ids(window.context(seg("b", 1))) == ["b"]
    assert ids(window.segments) == ["a"]


def test_interims_are_scored_with_context_but_never_stored() -> None:
    registry = CaptionRegistry(CaptionLimits(window_segments=4))
    window = registry.speaker("meeting", "alice")
    window.add_final(seg("s1", 0, text="first final"))
    interim = seg("s2", 1, text="second interi")
    # What the route does for an interim: read the context, do not add.
    assert ids(window.context(interim)) == ["s1", "s2"]
    assert ids(registry.speaker("meeting", "alice").segments) == ["s1"]
    window.add_final(seg("s2", 1, text="second interim corrected"))
    assert [s.text for s in window.segments] == ["first final", "second interim corrected"]


def test_a_repeated_final_replaces_the_earlier_one_in_place() -> None:
    window = SpeakerWindow(max_segments=5, max_seconds=60)
    window.add_final(seg("s1", 0, text="one"))
    window.add_final(seg("s2", 2, text="two"))
    window.add_final(seg("s1", 0, text="one corrected"))
    assert [(s.segment_id, s.text) for s in window.segments] == [("s1", "one corrected"), ("s2", "two")]
    # Re-scoring s1 leaves its own earlier version out of the context.
    assert ids(window.context(seg("s1", 0, text="one again"))) == ["s1"]
    assert window.has_final("s2") and not window.has_final("s9")


def test_late_segments_are_not_scored_with_their_future() -> None:
    window = SpeakerWindow(max_segments=5, max_seconds=60)
    window.add_final(seg("s1", 0))
    window.add_final(seg("s3", 4))
    assert ids(window.context(seg("s2", 2))) == ["s1", "s2"]
    window.add_final(seg("s2", 2))
    assert ids(window.segments) == ["s1", "s2", "s3"]


def test_clear_empties_the_window() -> None:
    window = SpeakerWindow(max_segments=5, max_seconds=60)
    window.add_final(seg("s1", 0))
    window.clear()
    assert len(window) == 0 and ids(window.context(seg("s2", 1))) == ["s2"]


def test_a_window_is_trimmed_from_the_oldest_end_to_fit_the_model() -> None:
    from textguard.service.caption_state import fit_window

    context = [seg("s1", 0, text="a b c d"), seg("s2", 1, text="e f g"), seg("s3", 2, text="h i")]

    def words(text: str) -> int:  # a whitespace tokenizer that, like the real one, caps at the limit
        return min(len(text.split()), 6)

    assert ids(fit_window(context, words, max_tokens=10)) == ["s1", "s2", "s3"]
    assert ids(fit_window(context, lambda text: len(text.split()), max_tokens=9)) == ["s2", "s3"]
    # The capped counter reports 6 for anything longer: treated as not fitting.
    assert ids(fit_window(context, words, max_tokens=6)) == ["s2", "s3"]
    assert ids(fit_window(context, words, max_tokens=2)) == ["s3"]  # the current segment always stays


def test_speakers_have_separate_windows_and_are_bounded_lru() -> None:
    registry = CaptionRegistry(CaptionLimits(max_speakers=2))
    registry.speaker("m", "alice").add_final(seg("a1", 0))
    registry.speaker("m", "bob").add_final(seg("b1", 0))
    assert ids(registry.speaker("m", "alice").segments) == ["a1"]  # alice is now the most recent
    registry.speaker("m", "carol")  # evicts bob, the least recently active speaker
    meeting = registry.meeting("m")
    assert list(meeting.speakers) == ["alice", "carol"]
    assert ids(registry.speaker("m", "bob").segments) == []


def test_meetings_are_bounded_lru() -> None:
    registry = CaptionRegistry(CaptionLimits(max_meetings=2))
    registry.speaker("m1", "a").add_final(seg("x", 0))
    registry.meeting("m2")
    registry.meeting("m1")  # touch: m2 is now the least recently used
    registry.meeting("m3")
    assert "m1" in registry and "m3" in registry and "m2" not in registry
    assert len(registry) == 2 and registry.evicted == 1
    assert ids(registry.speaker("m1", "a").segments) == ["x"]


def test_idle_meetings_expire_after_the_ttl() -> None:
    clock = Clock()
    registry = CaptionRegistry(CaptionLimits(meeting_ttl_seconds=60), clock=clock)
    registry.speaker("quiet", "a").add_final(seg("q", 0))
    clock.now += 30
    registry.speaker("busy", "b")
    clock.now += 31  # quiet idle for 61 s, busy for 31 s
    assert registry.expire() == 1
    assert "quiet" not in registry and "busy" in registry
    clock.now += 100
    # Lazy expiry: any access drops idle meetings before serving.
    assert ids(registry.speaker("new", "c").segments) == []
    assert list(registry._meetings) == ["new"] and registry.expired == 2


def test_activity_keeps_a_meeting_alive() -> None:
    clock = Clock()
    registry = CaptionRegistry(CaptionLimits(meeting_ttl_seconds=60), clock=clock)
    for _ in range(5):
        registry.speaker("m", "a").add_final(seg(f"s{clock.now}", clock.now))
        clock.now += 50
    assert "m" in registry


def test_limits_from_settings_and_validation() -> None:
    from textguard.service.settings import ServiceSettings

    settings = ServiceSettings(
        caption_window_segments=3,
        caption_window_seconds=12,
        caption_max_meetings=7,
        caption_meeting_ttl_seconds=99,
        audit_hash_key=SecretStr("k"),
    )
    limits = CaptionLimits.from_settings(settings)
    assert (
        limits.window_segments,
        limits.window_seconds,
        limits.max_meetings,
        limits.meeting_ttl_seconds,
    ) == (
        3,
        12.0,
        7,
        99.0,
    )
    assert CaptionLimits.from_settings(None) == CaptionLimits()
    with pytest.raises(ValueError, match="at least 1"):
        CaptionLimits(window_segments=0)


# -- message parsing -------------------------------------------------------------------------------

VALID = '{"segment_id": "s1", "speaker_id": "a", "text": "hello", "start": 1, "end": 2.5, "final": true}'


def test_a_valid_message_parses_and_whole_seconds_are_accepted() -> None:
    message = parse_message(VALID)
    assert (message.segment_id, message.start, message.end, message.final) == ("s1", 1.0, 2.5, True)
    assert parse_message(VALID[:-1] + ', "language": "fr", "confidence": 0.9}').language == "fr"


@pytest.mark.parametrize(
    ("raw", "kind", "field", "message"),
    [
        ("{not json", "invalid_json", None, "not JSON"),
        ("[1, 2]", "validation_error", None, "JSON object"),
        (VALID.replace('"final": true', '"final": "yes"'), "validation_error", "final", "boolean"),
        (VALID.replace('"text": "hello", ', ""), "validation_error", "text", "required"),
        (VALID.replace('"text": "hello"', '"text": "   "'), "validation_error", "text", "whitespace"),
        (VALID.replace('"end": 2.5', '"end": 0.5'), "validation_error", "end", "before start"),
        (VALID.replace('"start": 1', '"start": -1'), "validation_error", "start", "greater than or equal"),
        (VALID.replace('"segment_id": "s1"', '"segment_id": 7'), "validation_error", "segment_id", "string"),
        (VALID.replace('"hello"', '"' + "x" * 5000 + '"'), "validation_error", "text", "limit is 4096"),
    ],
)
def test_malformed_messages_name_the_field(raw: str, kind: str, field: str | None, message: str) -> None:
    with pytest.raises(ProtocolError, match=message) as caught:
        parse_message(raw)
    assert caught.value.type == kind and caught.value.field == field
    assert caught.value.payload() == {
        "error": {"type": kind, "message": caught.value.message, "field": field}
    }
