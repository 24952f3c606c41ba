"""sendAudio relays to every listener through the session index; endSession ends it for everyone."""

from __future__ import annotations

import json
from typing import Any

import pytest

from broadcast.handlers import end_session, send_audio
from tests.helpers import AwsCallCounter, Driver, audio_event, body_of, load_event, message_event


@pytest.fixture
def session_id(driver: Driver) -> str:
    sid = driver.speaker_session("spk-1", "alice")
    driver.join("lst-es", sid, "es")
    driver.join("lst-fr", sid, "fr")
    return sid


def test_send_audio_relays_unchanged_to_every_listener(backend: Any, session_id: str) -> None:
    result = send_audio.handler(audio_event("spk-1", 7, "UklGRg=="), None)
    assert result == {"statusCode": 200}  # no reply on success
    for listener in ("lst-es", "lst-fr"):
        (frame,) = backend.management.messages_to(listener, "audio")
        assert (frame["sessionId"], frame["seq"], frame["audio"]) == (session_id, 7, "UklGRg==")
    assert backend.management.messages_to("spk-1") == []


def test_send_audio_uses_the_index_never_a_scan(backend: Any, session_id: str) -> None:
    with AwsCallCounter() as counter:
        send_audio.handler(audio_event("spk-1", 1), None)
    assert "dynamodb.Scan" not in counter.calls
    assert "dynamodb.Query" in counter.calls


def test_send_audio_from_both_speaker_connections_during_handover(
    driver: Driver, backend: Any, session_id: str
) -> None:
    driver.refresh("spk-2", session_id, "speaker", user_id="alice")
    send_audio.handler(audio_event("spk-1", 1), None)
    send_audio.handler(audio_event("spk-2", 2), None)
    assert [m["seq"] for m in backend.management.messages_to("lst-es", "audio")] == [1, 2]


def test_send_audio_gone_listener_removed_not_the_sender(backend: Any, session_id: str) -> None:
    backend.management.gone.add("lst-fr")
    send_audio.handler(audio_event("spk-1", 1), None)
    assert backend.connection("lst-fr") is None
    assert backend.connection("spk-1") is not None
    session = backend.session(session_id)
    assert session["listenerCount"] == 1
    assert session["languageCounts"] == {"es": 1, "fr": 0}
    assert len(backend.management.messages_to("lst-es", "audio")) == 1


def test_send_audio_reaches_a_handed_over_connection_and_its_410_uncounts_nothing(
    driver: Driver, backend: Any, session_id: str
) -> None:
    # GIVEN a listener whose refresh took over its place; its old connection is still open
    driver.refresh("lst-fr2", session_id, "listener", language="fr", resume_from="lst-fr")
    send_audio.handler(audio_event("spk-1", 1), None)
    assert len(backend.management.messages_to("lst-fr", "audio")) == 1  # the old one still hears frames
    # WHEN the old connection is gone (410) before its $disconnect
    backend.management.gone.add("lst-fr")
    send_audio.handler(audio_event("spk-1", 2), None)
    # THEN its record goes and the place stays counted, once, for the new connection
    assert backend.connection("lst-fr") is None
    session = backend.session(session_id)
    assert session["listenerCount"] == 2
    assert session["languageCounts"] == {"es": 1, "fr": 1}
    assert [m["seq"] for m in backend.management.messages_to("lst-fr2", "audio")][-1:] == [2]


def test_send_audio_one_failing_listener_does_not_stop_the_others(
    backend: Any, session_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = backend.management.post_to_connection

    def flaky(*, ConnectionId: str, Data: bytes) -> Any:
        if ConnectionId == "lst-es":
            raise ConnectionResetError("network blip")
        return real(ConnectionId=ConnectionId, Data=Data)

    monkeypatch.setattr(backend.management, "post_to_connection", flaky)
    assert send_audio.handler(audio_event("spk-1", 1), None) == {"statusCode": 200}
    assert len(backend.management.messages_to("lst-fr", "audio")) == 1
    assert backend.connection("lst-es") is not None  # a failure is not a 410: the listener stays


def test_send_audio_from_listener_forbidden(backend: Any, session_id: str) -> None:
    reply = body_of(send_audio.handler(audio_event("lst-es", 1, user_id=None), None))
    assert (reply["code"], reply["status"]) == ("FORBIDDEN", 403)
    assert backend.management.posts == []


def test_send_audio_from_another_authenticated_user_forbidden(driver: Driver, backend: Any, session_id: str) -> None:
    driver.connect("mallory-1", "mallory")
    reply = body_of(send_audio.handler(audio_event("mallory-1", 1, user_id="mallory"), None))
    assert reply["code"] == "FORBIDDEN"
    assert backend.management.posts == []


def test_send_audio_too_large_payload_too_large(backend: Any, session_id: str) -> None:
    event = load_event("send_audio_too_large")
    event["requestContext"]["connectionId"] = "spk-1"
    reply = body_of(send_audio.handler(event, None))
    assert (reply["code"], reply["status"]) == ("PAYLOAD_TOO_LARGE", 413)
    assert backend.management.posts == []


@pytest.mark.parametrize(
    "fields",
    [
        {"seq": -1, "audio": "AAAA"},
        {"seq": "1", "audio": "AAAA"},
        {"seq": True, "audio": "AAAA"},
        {"seq": 1.5, "audio": "AAAA"},
        {"seq": 1},
        {"seq": 1, "audio": ""},
        {"seq": 1, "audio": "not base64!"},
        {"audio": "AAAA"},
    ],
)
def test_send_audio_malformed_frame_invalid_parameters(backend: Any, session_id: str, fields: dict[str, Any]) -> None:
    event = message_event("send_audio", connection_id="spk-1", body={"action": "sendAudio", **fields}, user_id="alice")
    assert body_of(send_audio.handler(event, None))["code"] == "INVALID_PARAMETERS"
    assert backend.management.posts == []


def test_send_audio_after_end_session_not_found(backend: Any, session_id: str) -> None:
    end_session.handler(message_event("end_session", connection_id="spk-1", user_id="alice"), None)
    reply = body_of(send_audio.handler(audio_event("spk-1", 9), None))
    assert reply["code"] == "SESSION_NOT_FOUND"
    assert backend.management.messages_to("lst-es", "audio") == []


def test_end_session_tells_everyone_and_stops_listener_timers(backend: Any, session_id: str) -> None:
    result = end_session.handler(message_event("end_session", connection_id="spk-1", user_id="alice"), None)
    reply = body_of(result)
    assert (reply["type"], reply["sessionId"], reply["reason"]) == ("sessionEnded", session_id, "endedBySpeaker")
    session = backend.session(session_id)
    assert (session["isActive"], session["endReason"]) == (False, "endedBySpeaker")
    for listener in ("lst-es", "lst-fr"):
        (ended,) = backend.management.messages_to(listener, "sessionEnded")
        assert ended["reason"] == "endedBySpeaker"
    statuses = {e["name"]: e["status"] for e in backend.executions()}
    assert statuses["conn-lst-es"] == statuses["conn-lst-fr"] == "ABORTED"
    assert statuses["conn-spk-1"] == "RUNNING"


def test_end_session_by_listener_forbidden(backend: Any, session_id: str) -> None:
    reply = body_of(end_session.handler(message_event("end_session", connection_id="lst-es", anonymous=True), None))
    assert (reply["code"], reply["status"]) == ("FORBIDDEN", 403)
    assert backend.session(session_id)["isActive"] is True


def test_end_session_by_other_speaker_forbidden(driver: Driver, backend: Any, session_id: str) -> None:
    driver.speaker_session("spk-b", "bob")
    reply = body_of(end_session.handler(message_event("end_session", connection_id="spk-b", user_id="bob"), None))
    assert reply["type"] == "sessionEnded"  # bob ends *his* session...
    assert backend.session(session_id)["isActive"] is True  # ...never alice's


def test_end_session_twice_not_found(backend: Any, session_id: str) -> None:
    event = message_event("end_session", connection_id="spk-1", user_id="alice")
    end_session.handler(event, None)
    assert body_of(end_session.handler(event, None))["code"] == "SESSION_NOT_FOUND"
    assert len(backend.management.messages_to("lst-es", "sessionEnded")) == 1


def test_audio_event_from_events_dir_is_valid_json(backend: Any) -> None:
    body = json.loads(load_event("send_audio")["body"])
    assert body["action"] == "sendAudio"
    reply = body_of(send_audio.handler(load_event("send_audio_from_listener"), None))
    assert reply["code"] == "FORBIDDEN"
