"""Each handler emits its metrics (CloudWatch EMF on stdout), dimensioned as the alarms expect."""

from __future__ import annotations

import io
import json
from functools import partial
from typing import Any

import pytest

from broadcast import aws
from broadcast.handlers import end_session, send_audio
from tests.helpers import Driver, audio_event, message_event, run_concurrently


def emitted_values(capsys: pytest.CaptureFixture[str]) -> list[tuple[str, dict[str, str], list[float]]]:
    """(metric name, dimensions, values) for every EMF record printed since the last call."""
    found = []
    for line in capsys.readouterr().out.splitlines():
        if not line.startswith('{"_aws"'):
            continue
        record = json.loads(line)
        for directive in record["_aws"]["CloudWatchMetrics"]:
            dimensions = {name: record[name] for group in directive["Dimensions"] for name in group}
            assert directive["Namespace"] == "BroadcastTests"
            for metric in directive["Metrics"]:
                value = record[metric["Name"]]
                found.append((metric["Name"], dimensions, value if isinstance(value, list) else [value]))
    return found


def emitted(capsys: pytest.CaptureFixture[str]) -> list[tuple[str, dict[str, str]]]:
    """(metric name, dimensions) for every EMF record printed since the last call."""
    return [(name, dimensions) for name, dimensions, _ in emitted_values(capsys)]


def names(records: list[tuple[str, dict[str, str]]]) -> list[str]:
    return [name for name, _ in records]


def test_metrics_session_created_and_listener_joined(backend: Any, capsys: pytest.CaptureFixture[str]) -> None:
    driver = Driver()
    session_id = driver.speaker_session()
    assert names(emitted(capsys)) == ["SessionsCreated"]
    driver.join("lst-1", session_id)
    assert names(emitted(capsys)) == ["ListenersJoined"]


def test_metrics_refresh_completed_by_role(backend: Any, capsys: pytest.CaptureFixture[str]) -> None:
    driver = Driver()
    session_id = driver.speaker_session("spk-1", "alice")
    driver.join("lst-1", session_id)
    emitted(capsys)
    driver.refresh("spk-2", session_id, "speaker", user_id="alice")
    driver.refresh("lst-2", session_id, "listener", language="es")
    records = emitted(capsys)
    assert ("RefreshCompleted", {"service": "broadcast", "role": "speaker"}) in records
    assert ("RefreshCompleted", {"service": "broadcast", "role": "listener"}) in records


def test_metrics_refresh_failed_by_code(backend: Any, capsys: pytest.CaptureFixture[str]) -> None:
    driver = Driver()
    session_id = driver.speaker_session("spk-1", "alice")
    emitted(capsys)
    driver.refresh("x-1", session_id, "speaker", user_id="mallory")
    driver.refresh("x-2", "silent-otter-001", "listener", language="es")
    records = emitted(capsys)
    assert ("RefreshFailed", {"service": "broadcast", "code": "FORBIDDEN"}) in records
    assert ("RefreshFailed", {"service": "broadcast", "code": "SESSION_NOT_FOUND"}) in records


def test_metrics_timer_start_failed(backend: Any, capsys: pytest.CaptureFixture[str]) -> None:
    class Refusing:
        def start_execution(self, **_kwargs: Any) -> Any:
            raise RuntimeError("endpoint unreachable")

    aws.inject("stepfunctions", Refusing())
    Driver().connect("c-1")
    assert names(emitted(capsys)) == ["TimerStartFailed"]


def test_metrics_stale_connections_removed_and_session_ended(backend: Any, capsys: pytest.CaptureFixture[str]) -> None:
    driver = Driver()
    session_id = driver.speaker_session("spk-1", "alice")
    driver.join("lst-1", session_id)
    driver.join("lst-2", session_id)
    backend.management.gone.add("lst-2")
    emitted(capsys)
    send_audio.handler(audio_event("spk-1", 1), None)
    assert names(emitted(capsys)) == ["StaleConnectionsRemoved"]
    end_session.handler(message_event("end_session", connection_id="spk-1", user_id="alice"), None)
    assert names(emitted(capsys)) == ["SessionsEnded"]


def test_logs_are_json_and_correlated(backend: Any) -> None:
    from broadcast.observability import logger

    buffer = io.StringIO()
    previous = logger.registered_handler.setStream(buffer)  # Powertools keeps the stream it met at import
    try:
        driver = Driver()
        session_id = driver.speaker_session("spk-1", "alice")
        driver.refresh("x-1", session_id, "speaker", user_id="mallory")
    finally:
        logger.registered_handler.setStream(previous)
    lines = [json.loads(line) for line in buffer.getvalue().splitlines()]
    refused = next(line for line in lines if line["message"] == "request refused")
    assert refused["connectionId"] == "x-1"
    assert refused["sessionId"] == session_id
    assert refused["code"] == "FORBIDDEN"


def test_metrics_internal_error_counted_by_action(
    backend: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from broadcast import service

    driver = Driver()
    session_id = driver.speaker_session()
    emitted(capsys)

    def broken(*_args: Any, **_kwargs: Any) -> None:
        raise RuntimeError("table unreachable")

    monkeypatch.setattr(service.sessions_table, "get", broken)
    # WHEN a join fails inside the handler (answered, not raised)
    reply = driver.join("lst-1", session_id)
    assert reply["code"] == "INTERNAL_ERROR"
    # THEN the failure is counted by action, since Lambda's Errors metric never sees it
    assert ("InternalError", {"service": "broadcast", "action": "joinSession"}) in emitted(capsys)


def test_metrics_internal_error_of_unknown_action_has_a_bounded_dimension(
    backend: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from broadcast import protocol, routing

    def broken(_body: Any, _action: Any) -> None:
        raise RuntimeError("bug")

    monkeypatch.setattr(protocol, "reject_unknown_fields", broken)
    routing.message_route(message_event("join_session", body={"action": "x" * 40}), lambda *_: None)
    assert ("InternalError", {"service": "broadcast", "action": "unknown"}) in emitted(capsys)


def test_metrics_counted_on_many_threads_are_each_printed_once(capsys: pytest.CaptureFixture[str]) -> None:
    """Powertools keeps one metric set per process; threads of one process (the local stack's
    runtimes, the tests' bursts) add and flush it at once. Each count is printed exactly once,
    and no flush fails with 'dictionary changed size during iteration'."""
    from broadcast.observability import count, metrics

    threads, rounds, names_per_round = 8, 60, 12
    metrics.clear_metrics()

    def invocation(thread: int) -> None:
        for _ in range(rounds):
            for name in range(names_per_round):
                count(f"Probe{thread}x{name}")
            metrics.flush_metrics()

    run_concurrently(*(partial(invocation, t) for t in range(threads)))  # re-raises a thread's error
    metrics.flush_metrics()

    printed: dict[str, float] = {}
    for name, _, values in emitted_values(capsys):
        printed[name] = printed.get(name, 0) + sum(values)
    assert printed == {f"Probe{t}x{n}": rounds for t in range(threads) for n in range(names_per_round)}
