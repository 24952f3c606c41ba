"""sendAudio's route cache (audio_routes): no DynamoDB read per frame, a bounded staleness, 410s dropped at once."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from broadcast import audio_routes
from broadcast import clock as broadcast_clock
from broadcast.handlers import end_session, send_audio
from tests.helpers import AwsCallCounter, Driver, audio_event, body_of, message_event


class Clock:
    def __init__(self) -> None:
        self.now = 1_795_888_800.0  # epoch seconds, as the service's clock gives them

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Iterator[Clock]:
    fake = Clock()
    real = broadcast_clock._now
    broadcast_clock.use(fake)
    yield fake
    broadcast_clock.use(real)


@pytest.fixture
def session_id(driver: Driver) -> str:
    sid = driver.speaker_session("spk-1", "alice")
    driver.join("lst-1", sid, "es")
    return sid


def reads(counter: AwsCallCounter) -> list[str]:
    return [c for c in counter.calls if c.startswith("dynamodb.")]


def test_frames_after_the_first_read_nothing(backend: Any, session_id: str, clock: Clock) -> None:
    with AwsCallCounter() as first:
        send_audio.handler(audio_event("spk-1", 1), None)
    with AwsCallCounter() as steady:
        for seq in range(2, 12):
            clock.now += 0.09
            send_audio.handler(audio_event("spk-1", seq), None)
    assert sorted(reads(first)) == ["dynamodb.GetItem", "dynamodb.GetItem", "dynamodb.Query"]
    assert reads(steady) == []
    assert [m["seq"] for m in backend.management.messages_to("lst-1", "audio")] == list(range(1, 12))


def test_a_new_listener_hears_audio_within_the_bound(
    backend: Any, driver: Driver, session_id: str, clock: Clock
) -> None:
    # GIVEN a cached route, then a listener joining
    send_audio.handler(audio_event("spk-1", 1), None)
    driver.join("lst-2", session_id, "fr")
    # WHEN frames go on: within the second, from the cache; after it, read again
    clock.now += 0.5
    send_audio.handler(audio_event("spk-1", 2), None)
    clock.now += 0.6
    send_audio.handler(audio_event("spk-1", 3), None)
    # THEN the new listener has every frame from the first one after the bound
    assert [m["seq"] for m in backend.management.messages_to("lst-2", "audio")] == [3]
    assert [m["seq"] for m in backend.management.messages_to("lst-1", "audio")] == [1, 2, 3]


def test_a_gone_listener_is_dropped_from_the_cache_at_once(backend: Any, session_id: str, clock: Clock) -> None:
    send_audio.handler(audio_event("spk-1", 1), None)
    backend.management.gone.add("lst-1")
    posts = len(backend.management.posts)
    send_audio.handler(audio_event("spk-1", 2), None)  # meets the 410: removed, uncounted
    send_audio.handler(audio_event("spk-1", 3), None)  # from the cache, without lst-1
    assert len(backend.management.posts) == posts  # the fake records delivered posts only
    assert audio_routes.get("spk-1", 1000) is not None
    assert audio_routes.get("spk-1", 1000).listeners == {}


def test_an_ended_session_is_refused_once_the_route_is_stale(
    backend: Any, driver: Driver, session_id: str, clock: Clock
) -> None:
    send_audio.handler(audio_event("spk-1", 1), None)
    end_session.handler(message_event("end_session", connection_id="spk-1", user_id="alice"), None)
    clock.now += 1.1
    result = send_audio.handler(audio_event("spk-1", 2), None)
    assert body_of(result)["code"] == "SESSION_NOT_FOUND"


def test_someone_else_cannot_use_a_cached_route(backend: Any, session_id: str, clock: Clock) -> None:
    send_audio.handler(audio_event("spk-1", 1), None)
    # the same connection id with another user's token (a forged request context)
    result = send_audio.handler(audio_event("spk-1", 2, user_id="mallory"), None)
    assert body_of(result)["code"] == "FORBIDDEN"
    assert [m["seq"] for m in backend.management.messages_to("lst-1", "audio")] == [1]


def test_refusals_are_not_cached(backend: Any, session_id: str, clock: Clock) -> None:
    assert body_of(send_audio.handler(audio_event("lst-1", 1, user_id=None), None))["code"] == "FORBIDDEN"
    assert audio_routes.get("lst-1", 1000) is None


def test_the_cache_is_bounded(clock: Clock) -> None:
    for i in range(audio_routes.MAX_ROUTES + 10):
        audio_routes.put(f"spk-{i}", audio_routes.Route(f"s-{i}", "u", {}))
    assert audio_routes.get("spk-0", 1000) is None
    assert audio_routes.get(f"spk-{audio_routes.MAX_ROUTES + 9}", 1000) is not None
