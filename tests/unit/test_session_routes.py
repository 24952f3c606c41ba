"""createSession, joinSession, getSessionStatus, heartbeat and $default against moto tables from template.yaml."""

from __future__ import annotations

from typing import Any

import pytest

from broadcast import service
from broadcast.handlers import create_session, default, heartbeat, join_session, session_status
from tests.helpers import Driver, body_of, load_event, message_event

# --- createSession ---------------------------------------------------------------------------


def test_create_session_authenticated_writes_session_and_speaker_record(backend: Any) -> None:
    driver = Driver()
    driver.connect("spk-1", "alice")
    reply = driver.create("spk-1", "alice", "en")

    assert reply["type"] == "sessionCreated"
    assert reply["sourceLanguage"] == "en"
    assert isinstance(reply["timestamp"], int)
    session = backend.session(reply["sessionId"])
    assert session["speakerUserId"] == "alice"
    assert session["speakerConnectionId"] == "spk-1"
    assert session["isActive"] is True
    assert session["listenerCount"] == 0
    assert session["expiresAt"] > session["createdAt"] // 1000
    record = backend.connection("spk-1")
    assert (record["sessionId"], record["role"]) == (reply["sessionId"], "speaker")


def test_create_session_id_is_adjective_noun_number(backend: Any) -> None:
    driver = Driver()
    session_id = driver.speaker_session()
    adjective, noun, number = session_id.split("-")
    adjectives, nouns = service._words()
    assert adjective in adjectives
    assert noun in nouns
    assert len(number) == 3
    assert number.isdigit()


def test_create_session_anonymous_unauthorized_and_writes_nothing(backend: Any) -> None:
    result = create_session.handler(load_event("create_session_anonymous"), None)
    body = body_of(result)
    assert (body["code"], body["status"]) == ("UNAUTHORIZED", 401)
    assert backend.ddb.scan(TableName="test-sessions")["Count"] == 0


def test_create_session_unsupported_language_rejected(backend: Any) -> None:
    body = body_of(create_session.handler(load_event("create_session_unsupported_language"), None))
    assert (body["code"], body["status"]) == ("UNSUPPORTED_LANGUAGE", 400)
    assert backend.ddb.scan(TableName="test-sessions")["Count"] == 0


@pytest.mark.parametrize("language", ["EN", "eng", "klingon", "e", "es-ES"])
def test_create_session_any_unsupported_string_unsupported_language(backend: Any, language: str) -> None:
    event = message_event("create_session", body={"action": "createSession", "sourceLanguage": language})
    reply = body_of(create_session.handler(event, None))
    assert (reply["code"], reply["status"]) == ("UNSUPPORTED_LANGUAGE", 400)
    assert backend.ddb.scan(TableName="test-sessions")["Count"] == 0


@pytest.mark.parametrize("language", [None, "", 7, ["en"], {"code": "en"}])
def test_create_session_missing_or_non_string_language_invalid_parameters(backend: Any, language: Any) -> None:
    body: dict[str, Any] = {"action": "createSession"}
    if language is not None:
        body["sourceLanguage"] = language
    event = message_event("create_session", body=body)
    reply = body_of(create_session.handler(event, None))
    assert reply["code"] == "INVALID_PARAMETERS"
    assert backend.ddb.scan(TableName="test-sessions")["Count"] == 0


def test_create_session_id_collision_draws_another(backend: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    driver = Driver()
    taken = driver.speaker_session("spk-1", "alice")
    draws = iter([taken, taken, "fresh-otter-123"])
    monkeypatch.setattr(service, "new_session_id", lambda: next(draws))
    driver.connect("spk-2", "bob")
    reply = driver.create("spk-2", "bob")
    assert reply["sessionId"] == "fresh-otter-123"
    assert backend.session(taken)["speakerUserId"] == "alice"


def test_create_session_second_time_on_same_connection_refused(backend: Any) -> None:
    driver = Driver()
    first = driver.speaker_session("spk-1", "alice")
    reply = driver.create("spk-1", "alice")
    assert reply["code"] == "INVALID_PARAMETERS"
    assert backend.ddb.scan(TableName="test-sessions")["Count"] == 1
    assert backend.connection("spk-1")["sessionId"] == first


# --- joinSession -----------------------------------------------------------------------------


def test_join_session_records_listener_and_counts_it(backend: Any) -> None:
    driver = Driver()
    session_id = driver.speaker_session()
    reply = driver.join("lst-1", session_id, "es")

    assert reply == {**reply, "type": "sessionJoined", "sessionId": session_id, "sourceLanguage": "en"}
    assert (reply["targetLanguage"], reply["listenerCount"]) == ("es", 1)
    session = backend.session(session_id)
    assert session["listenerCount"] == 1
    assert session["languageCounts"] == {"es": 1}
    record = backend.connection("lst-1")
    assert (record["sessionId"], record["role"], record["targetLanguage"]) == (session_id, "listener", "es")


def test_join_session_event_from_events_dir_unknown_session_not_found(backend: Any) -> None:
    body = body_of(join_session.handler(load_event("join_session_unknown"), None))
    assert (body["code"], body["status"], body["action"]) == ("SESSION_NOT_FOUND", 404, "joinSession")


def test_join_session_bad_id_invalid_parameters(backend: Any) -> None:
    body = body_of(join_session.handler(load_event("join_session_bad_id"), None))
    assert (body["code"], body["status"]) == ("INVALID_PARAMETERS", 400)


def test_join_session_missing_id_invalid_parameters(backend: Any) -> None:
    event = message_event("join_session", body={"action": "joinSession", "targetLanguage": "es"})
    assert body_of(join_session.handler(event, None))["code"] == "INVALID_PARAMETERS"


def test_join_session_unsupported_language_rejected_and_not_counted(backend: Any) -> None:
    driver = Driver()
    session_id = driver.speaker_session()
    reply = driver.join("lst-1", session_id, "xx")
    assert reply["code"] == "UNSUPPORTED_LANGUAGE"
    assert backend.session(session_id)["listenerCount"] == 0
    assert "sessionId" not in backend.connection("lst-1")


@pytest.mark.usefixtures("no_grace")
def test_join_session_inactive_session_not_found(backend: Any) -> None:
    driver = Driver()
    session_id = driver.speaker_session("spk-1")
    driver.disconnect("spk-1")
    reply = driver.join("lst-1", session_id)
    assert reply["code"] == "SESSION_NOT_FOUND"
    assert backend.session(session_id)["listenerCount"] == 0


def test_join_session_at_capacity_session_full(backend: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAX_LISTENERS_PER_SESSION", "2")
    driver = Driver()
    session_id = driver.speaker_session()
    driver.join("lst-1", session_id)
    driver.join("lst-2", session_id)
    reply = driver.join("lst-3", session_id)
    assert (reply["code"], reply["status"]) == ("SESSION_FULL", 503)
    assert backend.session(session_id)["listenerCount"] == 2
    assert "sessionId" not in backend.connection("lst-3")


def test_join_session_capacity_enforced_by_the_write_not_only_the_read(
    backend: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a read that saw room (another join then filled the last place)
    monkeypatch.setenv("MAX_LISTENERS_PER_SESSION", "1")
    driver = Driver()
    session_id = driver.speaker_session()
    real_get = service.sessions_table.get
    stale = real_get(session_id)
    driver.join("lst-1", session_id)
    monkeypatch.setattr(service.sessions_table, "get", lambda _sid: stale)
    # WHEN a second listener joins on that stale read THEN the conditional write refuses it
    assert driver.join("lst-2", session_id)["code"] == "SESSION_FULL"
    assert real_get(session_id).listener_count == 1


def test_join_session_twice_on_one_connection_counts_once(backend: Any) -> None:
    # The same join again is answered as the first (a client sending it again after a failure,
    # tests/unit/test_races_and_faults.py); a join to another session is refused. Counted once.
    driver = Driver()
    session_id = driver.speaker_session()
    other_session = driver.speaker_session("spk-2", "bob")
    assert driver.join("lst-1", session_id)["listenerCount"] == 1
    again = driver.join("lst-1", session_id, connect=False)
    assert (again["type"], again["listenerCount"]) == ("sessionJoined", 1)
    assert driver.join("lst-1", other_session, connect=False)["code"] == "INVALID_PARAMETERS"
    assert backend.session(session_id)["listenerCount"] == 1
    assert backend.session(other_session)["listenerCount"] == 0


# --- getSessionStatus, heartbeat, $default -------------------------------------------------------


def test_session_status_counts_per_language(backend: Any) -> None:
    driver = Driver()
    session_id = driver.speaker_session("spk-1")
    driver.join("lst-1", session_id, "es")
    driver.join("lst-2", session_id, "es")
    driver.join("lst-3", session_id, "fr")
    for asker in ("spk-1", "lst-3"):
        status = driver.status(asker)
        assert status["type"] == "sessionStatus"
        assert (status["sessionId"], status["isActive"], status["listenerCount"]) == (session_id, True, 3)
        assert status["languages"] == {"es": 2, "fr": 1}


def test_session_status_outside_a_session_forbidden(backend: Any) -> None:
    driver = Driver()
    driver.connect("lonely")
    assert driver.status("lonely")["code"] == "FORBIDDEN"


def test_session_status_event_from_events_dir_answers(backend: Any) -> None:
    body = body_of(session_status.handler(load_event("get_session_status"), None))
    assert body["type"] == "error"
    assert body["code"] == "FORBIDDEN"


def test_heartbeat_answers_ack_without_any_aws_call(monkeypatch: pytest.MonkeyPatch) -> None:
    from broadcast import aws

    def no_aws(*_args: Any, **_kwargs: Any) -> Any:
        raise AssertionError("heartbeat made an AWS call")

    monkeypatch.setattr(aws, "client", no_aws)
    result = heartbeat.handler(load_event("heartbeat"), None)
    assert result["statusCode"] == 200
    assert body_of(result)["type"] == "heartbeatAck"


@pytest.mark.parametrize("event_name", ["default_unknown_action", "default_not_json"])
def test_default_route_invalid_action(event_name: str) -> None:
    result = default.handler(load_event(event_name), None)
    body = body_of(result)
    assert (body["code"], body["status"], result["statusCode"]) == ("INVALID_ACTION", 400, 400)


@pytest.mark.parametrize("frame", ["[1,2]", '"text"', "null", "", "{", '{"action": 5}'])
def test_default_route_non_object_frames_invalid_action(frame: str) -> None:
    event = message_event("default_unknown_action", body=frame)
    assert body_of(default.handler(event, None))["code"] == "INVALID_ACTION"


def test_error_envelope_has_protocol_fields_and_no_internals(backend: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError("Table test-sessions exploded at line 42")

    monkeypatch.setattr(service.sessions_table, "get", boom)
    event = load_event("join_session")
    body = body_of(join_session.handler(event, None))
    assert (body["type"], body["code"], body["status"]) == ("error", "INTERNAL_ERROR", 500)
    assert body["requestId"] == event["requestContext"]["requestId"]
    assert body["action"] == "joinSession"
    assert isinstance(body["timestamp"], int)
    text = str(body)
    for leak in ("Traceback", "test-sessions", "line 42", "RuntimeError"):
        assert leak not in text
