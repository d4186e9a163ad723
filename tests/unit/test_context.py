"""Meeting context (chat and captions): rolling windows, interim handling, bounded meetings/speakers, TTL
expiry, the same rules in Redis, and the caption message parser's error reporting."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from pydantic import SecretStr

from textguard.moderation.context import (
    ContextEntry,
    ContextLimits,
    ContextStore,
    MemoryContextStore,
    SpeakerWindow,
    WindowLimits,
)
from textguard.service.captions import ProtocolError, parse_message

REDIS_URL = "redis://127.0.0.1:6379/15"


class Clock:
    """A settable clock: TTL tests advance time instead of sleeping."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def seg(segment_id: str, start: float, end: float | None = None, text: str | None = None) -> ContextEntry:
    return ContextEntry(segment_id, text or f"text of {segment_id}", start, start + 1 if end is None else end)


def ids(entries: list[ContextEntry] | tuple[ContextEntry, ...]) -> list[str]:
    return [entry.message_id for entry in entries]


def window(messages: int = 5, seconds: float = 60, max_chars: int = 1000) -> SpeakerWindow:
    return SpeakerWindow(WindowLimits(messages, seconds), max_chars)


def test_window_keeps_the_last_n_messages_in_time_order() -> None:
    speaker = window(messages=3)
    for index in range(5):
        speaker.add(seg(f"s{index}", start=index * 2))
    assert ids(speaker.entries) == ["s2", "s3", "s4"]
    # The current message counts towards N: two earlier ones, then it.
    assert ids(speaker.context(seg("s5", start=10))) == ["s3", "s4", "s5"]


def test_window_drops_messages_older_than_t_seconds() -> None:
    speaker = window(messages=10, seconds=5)
    speaker.add(seg("old", start=0, end=1))
    speaker.add(seg("recent", start=4, end=5))
    assert ids(speaker.context(seg("now", start=5.5, end=6.5))) == ["recent", "now"]
    speaker.add(seg("later", start=20, end=21))
    assert ids(speaker.entries) == ["later"]


def test_a_window_of_one_message_has_no_context() -> None:
    speaker = window(messages=1)
    speaker.add(seg("a", 0))
    assert ids(speaker.context(seg("b", 1))) == ["b"]
    assert ids(speaker.entries) == ["a"]


def test_a_repeated_message_replaces_the_earlier_one_in_place() -> None:
    speaker = window()
    speaker.add(seg("s1", 0, text="one"))
    speaker.add(seg("s2", 2, text="two"))
    speaker.add(seg("s1", 0, text="one corrected"))
    assert [(e.message_id, e.text) for e in speaker.entries] == [("s1", "one corrected"), ("s2", "two")]
    # Re-scoring s1 leaves its own earlier version out of the context.
    assert ids(speaker.context(seg("s1", 0, text="one again"))) == ["s1"]


def test_late_messages_are_not_scored_with_their_future() -> None:
    speaker = window()
    speaker.add(seg("s1", 0))
    speaker.add(seg("s3", 4))
    assert ids(speaker.context(seg("s2", 2))) == ["s1", "s2"]
    speaker.add(seg("s2", 2))
    assert ids(speaker.entries) == ["s1", "s2", "s3"]


def test_forget_drops_the_flagged_message_and_what_came_before_it() -> None:
    speaker = window()
    for index in range(3):
        speaker.add(seg(f"s{index}", index))
    speaker.forget(seg("s1", 1))
    assert ids(speaker.entries) == ["s2"]  # sent after the flagged one: kept
    assert ids(speaker.context(seg("s3", 3))) == ["s2", "s3"]


def test_only_the_end_of_a_long_message_is_kept() -> None:
    speaker = window(max_chars=10)
    speaker.add(seg("long", 0, text="x" * 100 + "tail words"))
    assert speaker.entries[0].text == "tail words"


def test_speakers_and_kinds_have_separate_windows_and_are_bounded_lru() -> None:
    store = MemoryContextStore(ContextLimits(max_speakers=3))
    store.window("m", "alice", "caption", seg("a1", 0), keep=True)
    store.window("m", "alice", "chat", seg("c1", 0), keep=True)
    store.window("m", "bob", "caption", seg("b1", 0), keep=True)
    # Alice's captions are not context for her chat, nor for bob's captions.
    assert ids(store.window("m", "alice", "chat", seg("c2", 1), keep=False)) == ["c1", "c2"]
    assert ids(store.window("m", "bob", "caption", seg("b2", 1), keep=False)) == ["b1", "b2"]
    store.window("m", "carol", "caption", seg("k1", 0), keep=True)  # evicts alice's captions (LRU)
    assert ids(store.window("m", "alice", "caption", seg("a2", 1), keep=False)) == ["a2"]


def test_meetings_are_bounded_lru() -> None:
    store = MemoryContextStore(ContextLimits(max_meetings=2))
    store.window("m1", "a", "chat", seg("x", 0), keep=True)
    store.speaker("m2", "a")
    store.speaker("m1", "a")  # touch: m2 is now the least recently used
    store.speaker("m3", "a")
    assert "m1" in store and "m3" in store and "m2" not in store
    assert len(store) == 2 and store.evicted == 1
    assert ids(store.window("m1", "a", "chat", seg("y", 1), keep=False)) == ["x", "y"]


def test_idle_meetings_expire_after_the_ttl() -> None:
    clock = Clock()
    store = MemoryContextStore(ContextLimits(meeting_ttl_seconds=60), clock=clock)
    store.window("quiet", "a", "caption", seg("q", 0), keep=True)
    clock.now += 30
    store.speaker("busy", "b")
    clock.now += 31  # quiet idle for 61 s, busy for 31 s
    assert store.expire() == 1
    assert "quiet" not in store and "busy" in store
    clock.now += 100
    # Lazy expiry: any access drops idle meetings before serving.
    assert ids(store.window("new", "c", "caption", seg("n", 0), keep=False)) == ["n"]
    assert list(store._meetings) == ["new"] and store.expired == 2


def test_activity_keeps_a_meeting_alive() -> None:
    clock = Clock()
    store = MemoryContextStore(ContextLimits(meeting_ttl_seconds=60), clock=clock)
    for _ in range(5):
        store.window("m", "a", "caption", seg(f"s{clock.now}", clock.now), keep=True)
        clock.now += 50
    assert "m" in store


def test_limits_from_settings_and_validation() -> None:
    from textguard.service.settings import ServiceSettings

    settings = ServiceSettings(
        caption_window_segments=3,
        caption_window_seconds=12,
        caption_max_meetings=7,
        caption_meeting_ttl_seconds=99,
        chat_window_messages=2,
        chat_window_seconds=45,
        context_max_chars=300,
        audit_hash_key=SecretStr("k"),
    )
    limits = ContextLimits.from_settings(settings)
    assert limits == ContextLimits(
        caption=WindowLimits(3, 12.0),
        chat=WindowLimits(2, 45.0),
        max_meetings=7,
        meeting_ttl_seconds=99.0,
        max_chars=300,
    )
    assert ContextLimits.from_settings(None) == ContextLimits()
    with pytest.raises(ValueError, match="messages >= 1"):
        WindowLimits(messages=0)
    with pytest.raises(ValueError, match="at least 1"):
        ContextLimits(max_meetings=0)


# -- the same rules in every store -----------------------------------------------------------------------


def _redis_store(limits: ContextLimits) -> ContextStore:
    redis = pytest.importorskip("redis")
    from textguard.moderation.redis_context import RedisContextStore

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping()
    except redis.RedisError:
        pytest.skip("no Redis server answers on 127.0.0.1:6379")
    return RedisContextStore(REDIS_URL, limits)


@pytest.fixture(params=["memory", "redis"])
def store(request: pytest.FixtureRequest) -> Iterator[ContextStore]:
    limits = ContextLimits(chat=WindowLimits(3, 60.0), caption=WindowLimits(3, 30.0), max_chars=20)
    store = MemoryContextStore(limits) if request.param == "memory" else _redis_store(limits)
    yield store
    store.close()


def test_every_store_forms_the_same_windows(store: ContextStore) -> None:
    meeting = f"m-{uuid.uuid4().hex}"  # Redis outlives the test: a fresh meeting each run
    # Interim hypotheses (keep=False) are scored with their context but never stored.
    assert ids(store.window(meeting, "a", "caption", seg("s1", 0), keep=True)) == ["s1"]
    assert ids(store.window(meeting, "a", "caption", seg("s2", 1), keep=False)) == ["s1", "s2"]
    assert ids(store.window(meeting, "a", "caption", seg("s2", 1, text="final"), keep=True)) == ["s1", "s2"]
    assert ids(store.window(meeting, "a", "caption", seg("s3", 2), keep=True)) == ["s1", "s2", "s3"]
    context = store.window(meeting, "a", "caption", seg("s4", 3, text="x" * 50), keep=True)
    assert ids(context) == ["s2", "s3", "s4"] and context[0].text == "final"
    # The stored copy keeps the end of the text; the window in hand has it whole.
    assert context[-1].text == "x" * 50
    assert store.window(meeting, "a", "caption", seg("s5", 4), keep=False)[-2].text == "x" * 20
    # Other speakers and other kinds of message are separate.
    assert ids(store.window(meeting, "b", "caption", seg("b1", 4), keep=False)) == ["b1"]
    assert ids(store.window(meeting, "a", "chat", seg("c1", 4), keep=False)) == ["c1"]
    store.forget(meeting, "a", "caption", seg("s3", 2))
    assert ids(store.window(meeting, "a", "caption", seg("s5", 4), keep=False)) == ["s4", "s5"]
    # Chat: an hour later nothing earlier joins.
    store.window(meeting, "a", "chat", seg("c1", 0), keep=True)
    assert ids(store.window(meeting, "a", "chat", seg("c2", 3600), keep=False)) == ["c2"]


def test_redis_keys_hold_no_raw_ids_and_expire() -> None:
    limits = ContextLimits(meeting_ttl_seconds=30)
    store = _redis_store(limits)
    from textguard.moderation.redis_context import RedisContextStore

    assert isinstance(store, RedisContextStore)
    meeting = f"secret-meeting-{uuid.uuid4().hex}"
    store.window(meeting, "speaker-name", "chat", seg("m1", 0), keep=True)
    key = store.key(meeting, "speaker-name", "chat")
    assert meeting not in key and "speaker-name" not in key
    assert 0 < store.client.pttl(key) <= 30_000
    store.client.delete(key)
    store.close()


# -- caption message parsing -----------------------------------------------------------------------

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


def test_small_requests_with_context_in_memory_are_prepared_on_the_event_loop() -> None:
    """A worker-thread hop costs more than preparing a few chat messages; Redis (network) never runs on
    the loop, nor does a large request."""
    from textguard.moderation import Item, Moderator
    from textguard.moderation.moderator import INLINE_PREPARE_CHARS
    from textguard.policy import PolicySet

    policies = PolicySet.load()
    chat = [Item(f"m{index}", "see you at the standup") for index in range(3)]
    large = [Item("big", "x" * (INLINE_PREPARE_CHARS + 1))]
    in_memory = Moderator(policies, context=MemoryContextStore(ContextLimits()))
    assert in_memory._prepares_inline(chat) and Moderator(policies)._prepares_inline(chat)
    assert not in_memory._prepares_inline(large)

    try:
        remote = _redis_store(ContextLimits())
    except pytest.skip.Exception:
        return  # no Redis here: the in-memory cases above still ran
    assert not Moderator(policies, context=remote)._prepares_inline(chat)
    remote.close()
