"""Races and faults: concurrent requests over a serialized moto, injected throttling, lost events.

After each scenario the invariant checker asserts that every session's counts equal its live
listener records and that every active session's speaker connection is live.
"""

from __future__ import annotations

import json
import time
from types import SimpleNamespace
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse

from broadcast import aws, config, timer
from broadcast.handlers import send_audio
from tests.helpers import Driver, assert_invariants, audio_event, run_concurrently


def test_race_concurrent_joins_at_capacity_never_overfill(threaded: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAX_LISTENERS_PER_SESSION", "5")
    config.reset()
    driver = Driver()
    session_id = driver.speaker_session()
    for i in range(20):
        driver.connect(f"lst-{i}")
    replies = run_concurrently(*(lambda i=i: driver.join(f"lst-{i}", session_id, connect=False) for i in range(20)))
    joined = [r for r in replies if r["type"] == "sessionJoined"]
    full = [r for r in replies if r.get("code") == "SESSION_FULL"]
    assert (len(joined), len(full)) == (5, 15), replies
    assert threaded.session(session_id)["listenerCount"] == 5
    assert_invariants(threaded)


@pytest.mark.parametrize("first", ["refresh", "disconnect"])
def test_race_listener_refresh_and_old_disconnect_concurrently(threaded: Any, first: str) -> None:
    driver = Driver()
    session_id = driver.speaker_session()
    pairs = [(f"old-{i}", f"new-{i}") for i in range(8)]
    for old, new in pairs:
        driver.join(old, session_id, "es")
        driver.connect(new)
    actions = []
    for old, new in pairs:
        refresh = lambda new=new: driver.refresh(new, session_id, "listener", language="es", connect=False)  # noqa: E731
        drop = lambda old=old: driver.disconnect(old)  # noqa: E731
        actions += [refresh, drop] if first == "refresh" else [drop, refresh]
    run_concurrently(*actions)
    assert threaded.session(session_id)["listenerCount"] == len(pairs)
    assert_invariants(threaded)


@pytest.mark.parametrize("first", ["refresh", "disconnect"])
def test_race_speaker_refresh_and_old_disconnect_concurrently(
    threaded: Any, monkeypatch: pytest.MonkeyPatch, first: str
) -> None:
    monkeypatch.setenv("SPEAKER_GRACE_SECONDS", "30")
    config.reset()
    driver = Driver()
    session_id = driver.speaker_session("spk-1", "alice")
    driver.connect("spk-2", "alice")
    refresh = lambda: driver.refresh("spk-2", session_id, "speaker", user_id="alice", connect=False)  # noqa: E731
    drop = lambda: driver.disconnect("spk-1")  # noqa: E731
    run_concurrently(*([refresh, drop] if first == "refresh" else [drop, refresh]))
    session = threaded.session(session_id)
    assert (session["isActive"], session["speakerConnectionId"]) == (True, "spk-2")
    assert_invariants(threaded)


def test_fault_disconnect_never_delivered_converges_through_410(backend: Any) -> None:
    driver = Driver()
    session_id = driver.speaker_session("spk-1", "alice")
    driver.join("lst-1", session_id)
    driver.join("lst-2", session_id)
    # lst-1 vanished without a $disconnect: its record carries a TTL...
    record = backend.connection("lst-1")
    assert record["ttl"] <= record["connectedAt"] // 1000 + 3 * 3600
    # ...and the next post that meets its 410 removes it and uncounts it
    backend.management.gone.add("lst-1")
    send_audio.handler(audio_event("spk-1", 1), None)
    assert backend.connection("lst-1") is None
    assert backend.session(session_id)["listenerCount"] == 1
    assert_invariants(backend)
    # and a late $disconnect after that changes nothing
    driver.disconnect("lst-1")
    assert backend.session(session_id)["listenerCount"] == 1


def test_fault_410_mid_broadcast_removes_only_the_gone(backend: Any) -> None:
    driver = Driver()
    session_id = driver.speaker_session("spk-1", "alice")
    for i in range(10):
        driver.join(f"lst-{i}", session_id, ("es", "fr")[i % 2])
    backend.management.gone.update({"lst-3", "lst-4", "lst-7"})
    send_audio.handler(audio_event("spk-1", 1), None)
    send_audio.handler(audio_event("spk-1", 2), None)
    assert backend.session(session_id)["listenerCount"] == 7
    assert len(backend.management.messages_to("lst-0", "audio")) == 2
    assert_invariants(backend)


class _Raw:
    def __init__(self, body: bytes) -> None:
        self.body = body

    def stream(self, **_kwargs: Any) -> Any:
        yield self.body

    def read(self, *_args: Any) -> bytes:
        return self.body


@pytest.fixture
def throttle(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Inject throttling errors that AWS would return *instead of* doing the request.

    botocore calls every before-send handler and uses the first response, so moto would still
    apply a request we answered for it: a throttled request is marked, and moto skips it. The
    retry backoff is recorded instead of slept.
    """
    import botocore.endpoint
    from moto.core.botocore_stubber import BotocoreStubber

    original = BotocoreStubber.__call__

    def moto_unless_throttled(self: Any, event_name: str, request: Any, **kwargs: Any) -> Any:
        if getattr(request, "throttled_by_test", False):
            return None
        return original(self, event_name, request, **kwargs)

    monkeypatch.setattr(BotocoreStubber, "__call__", moto_unless_throttled)
    slept: list[float] = []
    monkeypatch.setattr(botocore.endpoint, "time", SimpleNamespace(sleep=slept.append, time=time.time))

    def inject(service: str, operation: str, times: int, code: str) -> list[int]:
        client = aws.client(service)
        calls = [0]

        def answer(request: Any, **_kwargs: Any) -> AWSResponse | None:
            calls[0] += 1
            if calls[0] > times:
                return None
            request.throttled_by_test = True
            body = json.dumps({"__type": code, "message": "Rate exceeded"}).encode()
            return AWSResponse(request.url, 400, {"x-amzn-ErrorType": code}, _Raw(body))

        service_id = client.meta.service_model.service_id.hyphenize()
        client.meta.events.register_first(f"before-send.{service_id}.{operation}", answer)
        return calls

    inject.slept = slept  # type: ignore[attr-defined]
    return inject


def test_fault_dynamodb_throttling_is_retried_and_the_join_lands(backend: Any, throttle: Any) -> None:
    driver = Driver()
    session_id = driver.speaker_session()
    driver.connect("lst-1")
    calls = throttle("dynamodb", "TransactWriteItems", 2, "ProvisionedThroughputExceededException")
    reply = driver.join("lst-1", session_id, connect=False)
    assert reply["type"] == "sessionJoined", reply
    assert calls[0] == 3
    assert len(throttle.slept) == 2  # backed off twice before the third attempt
    assert backend.session(session_id)["listenerCount"] == 1
    assert_invariants(backend)


def test_fault_dynamodb_throttled_beyond_retries_is_500_and_changes_nothing(backend: Any, throttle: Any) -> None:
    driver = Driver()
    session_id = driver.speaker_session()
    driver.connect("lst-1")
    throttle("dynamodb", "TransactWriteItems", 99, "ProvisionedThroughputExceededException")
    reply = driver.join("lst-1", session_id, connect=False)
    assert (reply["code"], reply["status"]) == ("INTERNAL_ERROR", 500)  # not the client's mistake
    assert backend.connection("lst-1") is not None  # the connection is not lost: it may join again
    assert backend.session(session_id)["listenerCount"] == 0
    assert_invariants(backend)


def test_fault_step_functions_throttling_is_retried_and_the_timer_starts(backend: Any, throttle: Any) -> None:
    calls = throttle("stepfunctions", "StartExecution", 2, "ThrottlingException")
    driver = Driver()
    assert driver.connect("c-1") == {"statusCode": 200}
    assert calls[0] == 3
    assert [e["name"] for e in backend.executions()] == [timer.execution_name("c-1")]


def test_fault_step_functions_throttled_beyond_retries_keeps_the_connection(backend: Any, throttle: Any) -> None:
    throttle("stepfunctions", "StartExecution", 99, "ThrottlingException")
    driver = Driver()
    assert driver.connect("c-1") == {"statusCode": 200}
    assert backend.connection("c-1") is not None
    assert backend.executions() == []


def test_fault_stop_execution_throttled_disconnect_still_cleans_up(backend: Any, throttle: Any) -> None:
    driver = Driver()
    session_id = driver.speaker_session()
    driver.join("lst-1", session_id)
    throttle("stepfunctions", "StopExecution", 99, "ThrottlingException")
    driver.disconnect("lst-1")
    assert backend.connection("lst-1") is None
    assert backend.session(session_id)["listenerCount"] == 0
    assert_invariants(backend)


def fail_after_the_write_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """The next join or refresh fails after its write has landed: in the wait before its reply (as
    a function that times out there would), once."""
    from broadcast import service

    wait = service.clock.sleep_until
    failed: list[int] = []

    def sleep_until(at: int) -> None:
        if not failed:
            failed.append(at)
            raise RuntimeError("the function failed after its write")
        wait(at)

    monkeypatch.setattr(service.clock, "sleep_until", sleep_until)


@pytest.mark.parametrize("capacity", [500, 1])
def test_fault_join_sent_again_after_its_write_landed_is_answered_and_counted_once(
    backend: Any, monkeypatch: pytest.MonkeyPatch, capacity: int
) -> None:
    # GIVEN a join whose handler failed after its write (API Gateway answers such a failure with
    # "Internal server error", and the clients send the request again), in a session with room,
    # or one that this very join filled
    monkeypatch.setenv("MAX_LISTENERS_PER_SESSION", str(capacity))
    config.reset()
    driver = Driver()
    session_id = driver.speaker_session()
    fail_after_the_write_once(monkeypatch)
    assert driver.join("lst-1", session_id, "es")["code"] == "INTERNAL_ERROR"
    # WHEN the client sends it again on the same connection
    again = driver.join("lst-1", session_id, "es", connect=False)
    # THEN it is answered as the first would have been, and counted once
    assert (again["type"], again["targetLanguage"], again["listenerCount"]) == ("sessionJoined", "es", 1), again
    assert again["resumeToken"]
    assert backend.session(session_id)["listenerCount"] == 1
    assert_invariants(backend)
    # AND a join of the same connection to another language is still refused (a full session
    # says so first), changing nothing
    other = driver.join("lst-1", session_id, "fr", connect=False)
    refused = "INVALID_PARAMETERS" if capacity > 1 else "SESSION_FULL"
    assert (other["code"], backend.session(session_id)["listenerCount"]) == (refused, 1)
    assert backend.connection("lst-1")["targetLanguage"] == "es"


def test_fault_refresh_sent_again_after_its_hand_over_landed_is_answered_and_counted_once(
    backend: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a listener's refresh whose handler failed after its hand-over had landed
    driver = Driver()
    session_id = driver.speaker_session()
    driver.join("lst-1", session_id, "es")
    fail_after_the_write_once(monkeypatch)
    failed = driver.refresh("lst-1b", session_id, "listener", language="es", resume_from="lst-1")
    assert failed["code"] == "INTERNAL_ERROR"
    # WHEN the client sends it again with the same token
    again = driver.refresh("lst-1b", session_id, "listener", language="es", connect=False, resume_from="lst-1")
    # THEN it completes, and the place is still counted once
    assert again["type"] == "connectionRefreshComplete", again
    assert backend.session(session_id)["listenerCount"] == 1
    driver.disconnect("lst-1")
    assert backend.session(session_id)["listenerCount"] == 1
    assert_invariants(backend)
