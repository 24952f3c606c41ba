"""$connect registers and starts the timer without posting; $disconnect is idempotent and ends a speaker's session."""

from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.exceptions import ClientError

from broadcast import aws, timer
from broadcast.handlers import connect, disconnect
from tests.helpers import Driver, load_event


def test_connect_registers_connection_with_ttl(backend: Any) -> None:
    event = load_event("connect_anonymous")
    assert connect.handler(event, None) == {"statusCode": 200}
    record = backend.connection(event["requestContext"]["connectionId"])
    assert record["connectedAt"] == event["requestContext"]["connectedAt"]
    assert record["ttl"] > record["connectedAt"] // 1000 + 7200
    assert "sessionId" not in record


def test_connect_speaker_records_user(backend: Any) -> None:
    event = load_event("connect_speaker")
    connect.handler(event, None)
    assert backend.connection(event["requestContext"]["connectionId"])["userId"] == "speaker-sub-1"


def test_connect_posts_nothing(backend: Any) -> None:
    connect.handler(load_event("connect_speaker"), None)
    assert backend.management.posts == []


def test_connect_starts_timer_named_after_connection(backend: Any) -> None:
    event = load_event("connect_anonymous")
    connect.handler(event, None)
    (execution,) = backend.executions()
    assert execution["name"] == timer.execution_name(event["requestContext"]["connectionId"])
    described = backend.sfn.describe_execution(executionArn=execution["executionArn"])
    payload = json.loads(described["input"])
    assert payload["connectionId"] == event["requestContext"]["connectionId"]
    assert 6000 - 120 <= payload["refreshAfterSeconds"] <= 6000
    assert payload["refreshAfterSeconds"] + payload["warnAfterSeconds"] == 6300


def test_connect_delivered_twice_starts_one_timer(backend: Any) -> None:
    event = load_event("connect_anonymous")
    connect.handler(event, None)
    connect.handler(event, None)
    assert len(backend.executions()) == 1


def test_execution_name_is_valid_and_injective_over_base64_ids() -> None:
    # API Gateway connection ids are standard base64, which has no '-' or '_' of its own.
    names = {timer.execution_name(c) for c in ("ab+c/d=", "ab/c+d=", "ab+c+d=", "ab/c/d=", "abcd", "L0SM9cOFvHcCIhw=")}
    assert len(names) == 6
    for name in names:
        assert not set(name) & set(' <>{}[]?*"#%\\^|~`$&,;:/')
        assert len(name) <= 80


class _ThrottledStepFunctions:
    calls = 0

    def start_execution(self, **_kwargs: Any) -> Any:
        type(self).calls += 1
        raise ClientError({"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}}, "StartExecution")


def test_connect_timer_throttled_keeps_connection(
    backend: Any, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    aws.inject("stepfunctions", _ThrottledStepFunctions())
    event = load_event("connect_anonymous")
    assert connect.handler(event, None) == {"statusCode": 200}
    assert backend.connection(event["requestContext"]["connectionId"]) is not None
    assert "connection timer not started" in caplog.text
    assert '"TimerStartFailed"' in capsys.readouterr().out


def test_disconnect_listener_twice_decrements_once(backend: Any) -> None:
    driver = Driver()
    session_id = driver.speaker_session()
    driver.join("lst-1", session_id)
    driver.join("lst-2", session_id)
    driver.disconnect("lst-1")
    driver.disconnect("lst-1")
    session = backend.session(session_id)
    assert session["listenerCount"] == 1
    assert session["languageCounts"] == {"es": 1}
    assert backend.connection("lst-1") is None


def test_disconnect_unknown_connection_changes_nothing(backend: Any) -> None:
    result = disconnect.handler(load_event("disconnect"), None)
    assert result == {"statusCode": 200}
    assert backend.all_connections() == []


def test_disconnect_stops_the_timer(backend: Any) -> None:
    driver = Driver()
    driver.connect("lst-1")
    driver.disconnect("lst-1")
    (execution,) = backend.executions()
    assert execution["status"] == "ABORTED"


def test_disconnect_that_cannot_forget_leaves_the_timer_to_finish(
    backend: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a listener whose $disconnect cannot uncount it (every conflict retry lost, say)
    from broadcast import sessions_table

    driver = Driver()
    session_id = driver.speaker_session("spk-1", "alice")
    driver.join("lst-1", session_id, "es")

    def conflicted(*_args: Any, **_kwargs: Any) -> bool:
        raise ClientError({"Error": {"Code": "TransactionConflictException", "Message": "busy"}}, "TransactWriteItems")

    monkeypatch.setattr(sessions_table, "remove_listener", conflicted)
    with pytest.raises(ClientError):
        driver.disconnect("lst-1")
    # THEN its timer still runs (its next notice meets the 410 and forgets the record then)
    statuses = {e["name"]: e["status"] for e in backend.executions()}
    assert statuses[timer.execution_name("lst-1")] == "RUNNING"
    assert backend.connection("lst-1") is not None


def test_disconnect_never_counts_below_zero(backend: Any) -> None:
    driver = Driver()
    session_id = driver.speaker_session()
    driver.join("lst-1", session_id)
    backend.ddb.update_item(
        TableName="test-sessions",
        Key={"sessionId": {"S": session_id}},
        UpdateExpression="SET listenerCount = :zero",
        ExpressionAttributeValues={":zero": {"N": "0"}},
    )
    driver.disconnect("lst-1")
    assert backend.session(session_id)["listenerCount"] == 0
    assert backend.connection("lst-1") is None


@pytest.mark.usefixtures("no_grace")
def test_disconnect_current_speaker_ends_session_and_tells_listeners(backend: Any) -> None:
    driver = Driver()
    session_id = driver.speaker_session("spk-1")
    driver.join("lst-1", session_id)
    driver.join("lst-2", session_id, "fr")
    driver.disconnect("spk-1")

    session = backend.session(session_id)
    assert session["isActive"] is False
    assert session["endReason"] == "speakerDisconnected"
    for listener in ("lst-1", "lst-2"):
        (ended,) = backend.management.messages_to(listener, "sessionEnded")
        assert ended["sessionId"] == session_id
        assert ended["reason"] == "speakerDisconnected"
    assert backend.connection("spk-1") is None


@pytest.mark.usefixtures("no_grace")
def test_disconnect_speaker_gone_listener_removed_others_told(backend: Any) -> None:
    driver = Driver()
    session_id = driver.speaker_session("spk-1")
    driver.join("lst-1", session_id)
    driver.join("lst-2", session_id)
    backend.management.gone.add("lst-1")
    driver.disconnect("spk-1")
    assert backend.connection("lst-1") is None
    assert backend.connection("lst-2") is not None
    assert backend.session(session_id)["listenerCount"] == 1
    assert backend.management.messages_to("lst-2", "sessionEnded")


@pytest.mark.usefixtures("no_grace")
def test_disconnect_speaker_twice_announces_once(backend: Any) -> None:
    driver = Driver()
    session_id = driver.speaker_session("spk-1")
    driver.join("lst-1", session_id)
    driver.disconnect("spk-1")
    driver.disconnect("spk-1")
    assert len(backend.management.messages_to("lst-1", "sessionEnded")) == 1
