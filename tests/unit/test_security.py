"""Security: no identity can act as another, and nothing secret leaks into replies or logs."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import pytest

from broadcast.handlers import authorizer, connect, create_session, join_session, refresh_connection
from tests.helpers import Driver, body_of, load_event, message_event
from tests.jwt_keys import KeySet


def test_security_oversized_but_validly_signed_token_refused(keys: KeySet) -> None:
    token = keys.token(padding="x" * 9000)
    event = load_event("authorizer_anonymous")
    event["queryStringParameters"] = {"token": token}
    with pytest.raises(Exception, match=r"^Unauthorized$"):
        authorizer.handler(event, None)


def test_security_listener_cannot_claim_speaker_identity_through_the_body(backend: Any) -> None:
    # The identity comes from the authorizer context only; a body field named userId changes nothing.
    driver = Driver()
    session_id = driver.speaker_session("spk-1", "alice")
    event = message_event(
        "refresh_speaker",
        connection_id="evil-1",
        body={"action": "refreshConnection", "sessionId": session_id, "role": "speaker", "userId": "alice"},
        anonymous=True,
    )
    reply = body_of(refresh_connection.handler(event, None))
    assert reply["code"] == "INVALID_PARAMETERS"  # unknown field; without it: UNAUTHORIZED (see test_refresh)
    assert backend.session(session_id)["speakerConnectionId"] == "spk-1"


def test_security_error_messages_never_echo_a_token(backend: Any, keys: KeySet) -> None:
    token = keys.token()
    frames = [
        {"action": "joinSession", "sessionId": token, "targetLanguage": "es"},
        {"action": "joinSession", "sessionId": "golden-eagle-427", "targetLanguage": token},
        {"action": "createSession", "sourceLanguage": token},
        {"action": "joinSession", token: "x"},
        {"action": token},
    ]
    for frame in frames:
        reply = body_of(join_session.handler(message_event("join_session", body=frame), None))
        assert reply["type"] == "error"
        assert token not in json.dumps(reply)
        assert token[:40] not in json.dumps(reply)


def test_security_no_log_line_contains_a_token(
    backend: Any, keys: KeySet, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    good, bad = keys.token(), keys.token(iss="https://evil.example")
    for token in (good, bad):
        event = load_event("authorizer_anonymous")
        event["queryStringParameters"] = {"token": token}
        with contextlib.suppress(Exception):  # the bad token is refused; only the logs matter here
            authorizer.handler(event, None)
    connect_event = load_event("connect_speaker")
    connect_event["queryStringParameters"] = {"token": good}
    connect.handler(connect_event, None)
    event = message_event("create_session", body={"action": "createSession", "sourceLanguage": "en"}, user_id="alice")
    create_session.handler(event, None)
    output = capsys.readouterr()
    everything = output.out + output.err + caplog.text
    for token in (good, bad):
        for part in token.split("."):
            assert part not in everything


def test_security_internal_error_reply_carries_no_exception_text(backend: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from broadcast import service

    def leak(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError("arn:aws:dynamodb:us-east-1:123456789012:table/secret-table")

    monkeypatch.setattr(service.connections_table, "get", leak)
    event = message_event("get_session_status", connection_id="x")
    from broadcast.handlers import session_status

    reply = body_of(session_status.handler(event, None))
    assert reply["code"] == "INTERNAL_ERROR"
    assert "arn:" not in json.dumps(reply)
    assert "secret-table" not in json.dumps(reply)
