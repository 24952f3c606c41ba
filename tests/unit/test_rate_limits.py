"""Rate limits: fixed windows in the RateLimits table; refused requests change nothing else."""

from __future__ import annotations

from typing import Any

import pytest

from broadcast import clock, config
from broadcast.handlers import connect, join_session
from tests.helpers import Driver, body_of, message_event


@pytest.fixture
def limits(monkeypatch: pytest.MonkeyPatch) -> Any:
    def set_limits(sessions: int = 0, joins: int = 0, connects: int = 0) -> None:
        monkeypatch.setenv("RATE_LIMIT_SESSIONS_PER_USER_PER_HOUR", str(sessions))
        monkeypatch.setenv("RATE_LIMIT_JOINS_PER_IP_PER_MINUTE", str(joins))
        monkeypatch.setenv("RATE_LIMIT_CONNECTS_PER_IP_PER_MINUTE", str(connects))
        config.reset()

    return set_limits


@pytest.fixture
def frozen_clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    now = [1_795_888_830.0]  # 30 s into a minute
    monkeypatch.setattr(clock, "_now", lambda: now[0])
    return now


def test_rate_limit_session_creations_per_user(backend: Any, limits: Any, frozen_clock: list[float]) -> None:
    limits(sessions=2)
    driver = Driver()
    driver.connect("spk-1", "alice")
    first = driver.create("spk-1", "alice")
    driver.connect("spk-2", "alice")
    driver.create("spk-2", "alice")
    driver.connect("spk-3", "alice")
    refused = driver.create("spk-3", "alice")
    assert (refused["code"], refused["status"]) == ("RATE_LIMIT_EXCEEDED", 429)
    assert 0 < refused["retryAfterSeconds"] <= 3600
    assert backend.ddb.scan(TableName="test-sessions")["Count"] == 2
    assert "sessionId" not in backend.connection("spk-3")
    # another speaker is not affected
    driver.connect("spk-b", "bob")
    assert driver.create("spk-b", "bob")["type"] == "sessionCreated"
    assert first["type"] == "sessionCreated"


def test_rate_limit_joins_per_source_ip(backend: Any, limits: Any, frozen_clock: list[float]) -> None:
    limits(joins=2)
    driver = Driver()
    session_id = driver.speaker_session()
    assert driver.join("lst-1", session_id)["type"] == "sessionJoined"
    assert driver.join("lst-2", session_id)["type"] == "sessionJoined"
    refused = driver.join("lst-3", session_id)
    assert (refused["code"], refused["status"], refused["retryAfterSeconds"]) == ("RATE_LIMIT_EXCEEDED", 429, 30)
    assert backend.session(session_id)["listenerCount"] == 2
    assert "sessionId" not in backend.connection("lst-3")
    # from another address the join goes through
    event = message_event(
        "join_session",
        connection_id="lst-3",
        body={"action": "joinSession", "sessionId": session_id, "targetLanguage": "es"},
    )
    event["requestContext"]["identity"]["sourceIp"] = "198.51.100.7"
    assert body_of(join_session.handler(event, None))["type"] == "sessionJoined"


def test_rate_limit_window_resets(backend: Any, limits: Any, frozen_clock: list[float]) -> None:
    limits(joins=1)
    driver = Driver()
    session_id = driver.speaker_session()
    driver.join("lst-1", session_id)
    assert driver.join("lst-2", session_id)["code"] == "RATE_LIMIT_EXCEEDED"
    frozen_clock[0] += 31  # the next minute
    assert driver.join("lst-2", session_id, connect=False)["type"] == "sessionJoined"


def test_rate_limit_connects_per_ip_refuses_handshake_with_429(
    backend: Any, limits: Any, frozen_clock: list[float]
) -> None:
    limits(connects=2)
    driver = Driver()
    assert driver.connect("c-1") == {"statusCode": 200}
    assert driver.connect("c-2") == {"statusCode": 200}
    refused = driver.connect("c-3")
    assert refused["statusCode"] == 429
    assert refused["headers"]["Retry-After"] == "30"
    assert backend.connection("c-3") is None
    assert {e["name"] for e in backend.executions()} == {"conn-c-1", "conn-c-2"}


def test_rate_limit_counter_items_expire(backend: Any, limits: Any, frozen_clock: list[float]) -> None:
    limits(connects=5)
    connect.handler(message_event("connect_anonymous", connection_id="c-1"), None)
    (item,) = backend.ddb.scan(TableName="test-rate-limits")["Items"]
    assert int(item["expiresAt"]["N"]) <= frozen_clock[0] + 120
    assert item["limitKey"]["S"].startswith("connect#203.0.113.10#")


def test_rate_limit_zero_disables(backend: Any, limits: Any) -> None:
    limits()
    driver = Driver()
    for i in range(30):
        assert driver.connect(f"c-{i}") == {"statusCode": 200}
    assert backend.ddb.scan(TableName="test-rate-limits")["Count"] == 0


def test_rate_limit_missing_table_with_limits_fails_loudly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RATE_LIMIT_JOINS_PER_IP_PER_MINUTE", "10")
    monkeypatch.delenv("RATE_LIMITS_TABLE")
    config.reset()
    with pytest.raises(config.ConfigurationError, match="RATE_LIMITS_TABLE"):
        config.settings()
