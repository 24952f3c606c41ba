"""DynamoDB's transaction contention, emulated (local_stack/aws_faults.py), and the backend surviving it."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from broadcast import dynamo
from local_stack import aws_faults
from tests.helpers import Driver, assert_invariants, run_concurrently, wait_until

KEYS = {"test-sessions": ["sessionId"], "test-connections": ["connectionId"], "test-rate-limits": ["limitKey"]}


@pytest.fixture
def contention(threaded: Any) -> Iterator[aws_faults.DynamoContention]:
    """The local stack's contention layer over the test tables; transactions in flight for 20 ms."""
    layer = aws_faults.DynamoContention(KEYS, transaction_seconds=0.02)
    aws_faults.install(layer)
    yield layer
    aws_faults.install(None)


def count_update(session_id: str, connection_id: str) -> dict[str, Any]:
    return {
        "TransactItems": [
            {
                "Update": {
                    "TableName": "test-sessions",
                    "Key": {"sessionId": {"S": session_id}},
                    "UpdateExpression": "ADD listenerCount :one",
                    "ExpressionAttributeValues": {":one": {"N": "1"}},
                }
            },
            {"Put": {"TableName": "test-connections", "Item": {"connectionId": {"S": connection_id}}}},
        ]
    }


def test_contention_overlapping_transactions_on_one_item_conflict(contention: Any, threaded: Any) -> None:
    outcomes: list[str] = []

    def transact(connection_id: str) -> None:
        try:
            threaded.ddb.transact_write_items(**count_update("golden-eagle-427", connection_id))
            outcomes.append("ok")
        except ClientError as exc:
            reasons = [r["Code"] for r in exc.response["CancellationReasons"]]
            outcomes.append(f"{exc.response['Error']['Code']}:{','.join(reasons)}")

    # "a" in flight (held 0.3 s, so a slow machine cannot start "b" after it ended), then "b"
    contention.transaction_seconds = 0.3
    first = threading.Thread(target=transact, args=("a",))
    first.start()
    wait_until(contention.in_flight)
    transact("b")
    first.join()
    assert sorted(outcomes) == ["TransactionCanceledException:TransactionConflict,None", "ok"]
    assert contention.transaction_conflicts == 1


def test_contention_plain_write_to_an_item_in_a_transaction_is_refused(contention: Any, threaded: Any) -> None:
    contention.transaction_seconds = 0.3
    inside = threading.Thread(target=threaded.ddb.transact_write_items, kwargs=count_update("golden-eagle-427", "a"))
    inside.start()
    threading.Event().wait(0.1)
    with pytest.raises(ClientError) as refused:
        threaded.ddb.update_item(
            TableName="test-sessions",
            Key={"sessionId": {"S": "golden-eagle-427"}},
            UpdateExpression="SET isActive = :f",
            ExpressionAttributeValues={":f": {"BOOL": False}},
        )
    inside.join()
    assert refused.value.response["Error"]["Code"] == "TransactionConflictException"
    assert dynamo.is_conflict(refused.value)


def test_contention_a_join_burst_all_get_in_with_conflicts_retried(contention: Any, threaded: Any) -> None:
    # GIVEN 20 listeners joining one session at once (a QR code on a screen), every join a
    # transaction on the session item
    driver = Driver()
    session_id = driver.speaker_session()
    for i in range(20):
        driver.connect(f"lst-{i}")
    replies = run_concurrently(*(lambda i=i: driver.join(f"lst-{i}", session_id, connect=False) for i in range(20)))
    # THEN the overlaps conflicted, and every join was retried into success
    assert contention.transaction_conflicts > 0
    assert [r["type"] for r in replies] == ["sessionJoined"] * 20, replies
    assert threaded.session(session_id)["listenerCount"] == 20
    assert_invariants(threaded)


def test_contention_a_join_that_loses_every_retry_is_told_to_come_back_and_gets_in(
    contention: Any, threaded: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What AWS does to a join whose retries all lose: the loser is told to come back (429
    # RATE_LIMIT_EXCEEDED, retryAfterSeconds), never INTERNAL_ERROR, and nothing was written.
    monkeypatch.setattr(dynamo, "CONFLICT_ATTEMPTS", 1)
    driver = Driver()
    session_id = driver.speaker_session()
    for i in range(10):
        driver.connect(f"lst-{i}")
    replies = run_concurrently(*(lambda i=i: driver.join(f"lst-{i}", session_id, connect=False) for i in range(10)))
    busy = [i for i, r in enumerate(replies) if r.get("type") == "error"]
    assert busy
    assert {(replies[i]["code"], replies[i]["retryAfterSeconds"]) for i in busy} == {("RATE_LIMIT_EXCEEDED", 1)}
    assert_invariants(threaded)  # a cancelled transaction changed nothing
    # AND each one that was told to come back gets in when it does
    again = [driver.join(f"lst-{i}", session_id, connect=False)["type"] for i in busy]
    assert again == ["sessionJoined"] * len(busy)
    assert threaded.session(session_id)["listenerCount"] == 10


def test_contention_patience_retries_for_a_time_then_raises_the_conflict(monkeypatch: pytest.MonkeyPatch) -> None:
    conflict = ClientError(
        {"Error": {"Code": "TransactionCanceledException"}, "CancellationReasons": [{"Code": "TransactionConflict"}]},
        "TransactWriteItems",
    )
    now = [0.0]
    monkeypatch.setattr(dynamo.time, "monotonic", lambda: now[0])
    monkeypatch.setattr(dynamo.time, "sleep", lambda seconds: now.__setitem__(0, now[0] + seconds))
    monkeypatch.setattr(dynamo.random, "uniform", lambda low, high: high)  # the jitter at its longest
    tries: list[float] = []

    def write() -> None:
        tries.append(now[0])
        raise conflict

    # GIVEN a write that always loses, 15 s of patience: it is tried far more often than 14 times
    # (pauses of 20, 40, ... 320 ms, then 500 ms), never after the patience is spent, and the last
    # conflict is raised
    with pytest.raises(ClientError):
        dynamo.retry_conflicts(write, patience=15.0)
    assert len(tries) == 5 + 28 + 1
    assert 14.5 < tries[-1] <= 15.0
    # AND without patience, CONFLICT_ATTEMPTS tries
    tries.clear()
    with pytest.raises(ClientError):
        dynamo.retry_conflicts(write)
    assert len(tries) == dynamo.CONFLICT_ATTEMPTS


def test_contention_switch_turns_it_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(aws_faults.SWITCH, "off")
    assert not aws_faults.enabled_by_environment()
    monkeypatch.setenv(aws_faults.SWITCH, "on")
    assert aws_faults.enabled_by_environment()


def test_throttling_token_bucket_refuses_beyond_its_capacity_and_refills() -> None:
    now = [0.0]
    bucket = aws_faults.TokenBucket(3, 2, clock=lambda: now[0])
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]
    now[0] = 0.5  # half a second refills one token at 2 per second
    assert [bucket.take(), bucket.take()] == [True, False]
    assert bucket.refused == 2


def test_throttling_step_functions_start_refused_connection_stays_and_is_counted(
    threaded: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN StartExecution's bucket is empty (a connect burst above 1,300 at once)
    throttling = aws_faults.Throttling()
    throttling.buckets["StartExecution"] = aws_faults.TokenBucket(0, 0)
    aws_faults.install_throttling(throttling)
    try:
        Driver().connect("lst-1")
    finally:
        aws_faults.install_throttling(None)
    # THEN botocore's 3 attempts met ThrottlingException, the connection stays, and
    # TimerStartFailed counts it
    assert throttling.buckets["StartExecution"].refused == 3
    assert threaded.connection("lst-1") is not None
    assert "TimerStartFailed" in capsys.readouterr().out


def step_functions_worst_seconds() -> float:
    """A Step Functions call with every attempt throttled and timing out: each attempt's connect and
    read timeouts, plus botocore's own longest backoff between attempts (its ExponentialBackoff,
    the jitter at its top)."""
    from types import SimpleNamespace

    from botocore.retries import standard

    from broadcast import aws

    config = aws._config("stepfunctions")
    attempts = config.retries["total_max_attempts"]

    class Throttled:
        def is_throttling_error_from_context(self, context: Any) -> bool:
            return True

    backoff = standard.ExponentialBackoff(random=lambda: 1.0, throttling_detector=Throttled())
    waits = [backoff.delay_amount(SimpleNamespace(attempt_number=n, http_response=None)) for n in range(1, attempts)]
    assert waits == [1.0, 2.0]
    return attempts * (config.connect_timeout + config.read_timeout) + sum(waits)


def function_timeout(template: dict[str, Any], function: str) -> float:
    properties = template["Resources"][function]["Properties"]
    return float(properties.get("Timeout", template["Globals"]["Function"]["Timeout"]))


def test_throttling_start_execution_retries_fit_inside_connect_timeout(template: dict[str, Any]) -> None:
    # $connect's StartExecution at its worst must leave room in the function's timeout for the
    # rest of $connect, or a throttled start would time the handshake out.
    assert step_functions_worst_seconds() <= function_timeout(template, "ConnectFunction") - 1


def test_contention_disconnect_patience_and_stop_execution_fit_inside_its_timeout(template: dict[str, Any]) -> None:
    # $disconnect retries its conflicts for LEAVE_PATIENCE_SECONDS, then stops the timer (its
    # retries at their worst): both inside DisconnectFunction's timeout, with room for its reads.
    worst = dynamo.LEAVE_PATIENCE_SECONDS + step_functions_worst_seconds()
    assert worst <= function_timeout(template, "DisconnectFunction") - 5


def test_contention_a_hall_leaving_at_once_is_all_uncounted_past_a_join_retry_budget(
    contention: Any, threaded: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN 20 listeners in a session, and a retry budget a join would give up on at its first
    # conflict
    driver = Driver()
    session_id = driver.speaker_session()
    for i in range(20):
        driver.join(f"lst-{i}", session_id)
    monkeypatch.setattr(dynamo, "CONFLICT_ATTEMPTS", 1)
    # WHEN the talk ends and all of them leave in the same instant
    run_concurrently(*(lambda i=i: driver.disconnect(f"lst-{i}") for i in range(20)))
    # THEN their transactions on the session item overlapped, and every $disconnect still went
    # through: $disconnect retries for LEAVE_PATIENCE_SECONDS, not a number of attempts
    assert contention.transaction_conflicts > 0
    assert threaded.session(session_id)["listenerCount"] == 0
    assert [threaded.connection(f"lst-{i}") for i in range(20)] == [None] * 20
    assert_invariants(threaded)


def test_throttling_injected_faults_are_retried_by_the_backend(threaded: Any) -> None:
    import random

    # 20% of DynamoDB calls throttled or 5xx: botocore's standard retries absorb them.
    throttling = aws_faults.Throttling(fault_rate=0.2, rng=random.Random(7))
    aws_faults.install_throttling(throttling)
    try:
        driver = Driver()
        session_id = driver.speaker_session()
        replies = [driver.join(f"lst-{i}", session_id) for i in range(10)]
    finally:
        aws_faults.install_throttling(None)
    assert throttling.injected > 0
    assert [r["type"] for r in replies] == ["sessionJoined"] * 10
    assert_invariants(threaded)


def test_contention_a_410_cleanup_in_conflict_is_left_not_retried_and_the_frame_still_goes(
    contention: Any, threaded: Any
) -> None:
    # GIVEN a session whose French listener is gone (410), and a transaction on the session item
    # in flight (another listener's $disconnect, say) while the speaker's frame goes out
    from broadcast.handlers import send_audio
    from tests.helpers import audio_event

    driver = Driver()
    session_id = driver.speaker_session("spk-1", "alice")
    driver.join("lst-es", session_id, "es")
    driver.join("lst-fr", session_id, "fr")
    threaded.management.gone.add("lst-fr")
    contention.transaction_seconds = 0.5
    inside = threading.Thread(target=threaded.ddb.transact_write_items, kwargs=count_update(session_id, "other"))
    inside.start()
    wait_until(contention.in_flight)
    # WHEN the frame goes out
    result = send_audio.handler(audio_event("spk-1", 1), None)
    still_in_flight = contention.in_flight()
    inside.join()
    # THEN the frame was delivered and the cleanup made one attempt, which conflicted and was
    # left (not retried through the transaction: every frame in flight would do the same)
    assert result == {"statusCode": 200}
    assert len(threaded.management.messages_to("lst-es", "audio")) == 1
    assert still_in_flight
    assert contention.transaction_conflicts == 1
    assert threaded.connection("lst-fr") is not None
    # AND the listener's $disconnect (or the next 410, or the timer's sweep) finishes the job
    driver.disconnect("lst-fr")
    assert threaded.connection("lst-fr") is None
    assert threaded.session(session_id)["languageCounts"]["fr"] == 0
