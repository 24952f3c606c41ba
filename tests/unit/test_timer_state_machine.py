"""The real statemachines/connection_timer.asl.json, executed by moto's Step Functions engine.

Waits are scaled to about a second through the execution input, the way the local stack and
tests are meant to scale them; the notifier is the real handler, run in-process.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import boto3
import pytest
from moto import mock_aws

from broadcast import aws, connections_table, service, sessions_table, timer
from broadcast.handlers import notifier
from local_stack import template as cfn
from local_stack.lambda_bridge import LambdaBridge
from tests.conftest import TABLE_NAMES
from tests.helpers import Driver, RecordingManagementApi

NOTIFIER_ARN = "arn:aws:lambda:us-east-1:123456789012:function:notifier"
TERMINAL = {"SUCCEEDED", "FAILED", "ABORTED", "TIMED_OUT"}


@pytest.fixture
def engine(template: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Any:
    """moto with state machine execution on, tables from template.yaml, the notifier bridged in-process."""
    monkeypatch.setenv("REFRESH_AFTER_SECONDS", "1")
    monkeypatch.setenv("WARNING_AFTER_SECONDS", "2")
    monkeypatch.setenv("MAX_CONNECTION_SECONDS", "4")
    monkeypatch.setenv("REFRESH_JITTER_SECONDS", "0")
    monkeypatch.setenv("CUT_SWEEP_DELAY_SECONDS", "1")
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        ddb = boto3.client("dynamodb", region_name="us-east-1")
        cfn.create_tables(ddb, template, TABLE_NAMES)
        sfn = boto3.client("stepfunctions", region_name="us-east-1")
        definition = cfn.state_machine_definition(
            template, "ConnectionTimer", {"NotifierFunctionArn": NOTIFIER_ARN, "Partition": "aws"}
        )
        sfn.create_state_machine(name="test-timer", definition=definition, roleArn="arn:aws:iam::123456789012:role/t")
        management = TimedManagementApi()
        aws.inject("apigatewaymanagementapi", management, os.environ["MANAGEMENT_ENDPOINT"])
        bridge = LambdaBridge({NOTIFIER_ARN: notifier.handler}).install()
        try:
            yield sfn, management, bridge
        finally:
            # Executions outlive the test otherwise (the sweep after the cut comes last) and
            # would call the next test's bridge with this test's connection ids.
            for machine in sfn.list_state_machines()["stateMachines"]:
                running = sfn.list_executions(stateMachineArn=machine["stateMachineArn"], statusFilter="RUNNING")
                for execution in running["executions"]:
                    sfn.stop_execution(executionArn=execution["executionArn"])
            bridge.uninstall()


class TimedManagementApi(RecordingManagementApi):
    """Also records when each message arrived."""

    def __init__(self) -> None:
        super().__init__()
        self.arrivals: list[tuple[float, str, str]] = []

    def post_to_connection(self, *, ConnectionId: str, Data: bytes) -> dict[str, Any]:
        result = super().post_to_connection(ConnectionId=ConnectionId, Data=Data)
        self.arrivals.append((time.monotonic(), ConnectionId, json.loads(Data)["type"]))
        return result


def wait_for_end(sfn: Any, arn: str, timeout: float = 15) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        described = sfn.describe_execution(executionArn=arn)
        if described["status"] in TERMINAL:
            return described
        time.sleep(0.05)
    raise AssertionError(f"execution {arn} did not end")


def wait_until_waiting(sfn: Any, arn: str) -> None:
    """Until the execution has entered its first Wait state (moto cannot stop it before that)."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        events = sfn.get_execution_history(executionArn=arn)["events"]
        if any(e["type"] == "WaitStateEntered" for e in events):
            return
        time.sleep(0.02)
    raise AssertionError("execution never entered its wait")


def test_timer_sends_refresh_then_warning_at_scaled_times(engine: Any) -> None:
    sfn, management, _bridge = engine
    driver = Driver()
    session_id = driver.speaker_session("spk-1")
    started = time.monotonic()
    driver.join("lst-1", session_id, "de")

    described = wait_for_end(sfn, timer.execution_arn(timer.execution_name("lst-1")))

    assert described["status"] == "SUCCEEDED"
    arrivals = [
        (t - started, kind)
        for t, conn, kind in management.arrivals
        if conn == "lst-1" and kind in ("connectionRefreshRequired", "connectionWarning")
    ]
    assert [kind for _, kind in arrivals] == ["connectionRefreshRequired", "connectionWarning"]
    assert 0.9 <= arrivals[0][0] <= 2.5
    assert 1.9 <= arrivals[1][0] <= 3.5
    (required,) = management.messages_to("lst-1", "connectionRefreshRequired")
    assert (required["sessionId"], required["role"], required["targetLanguage"]) == (session_id, "listener", "de")
    (warning,) = management.messages_to("lst-1", "connectionWarning")
    assert 0 <= warning["remainingSeconds"] <= 4


def test_timer_speaker_refresh_required_names_the_role(engine: Any) -> None:
    sfn, management, _bridge = engine
    driver = Driver()
    session_id = driver.speaker_session("spk-1")
    wait_for_end(sfn, timer.execution_arn(timer.execution_name("spk-1")))
    (required,) = management.messages_to("spk-1", "connectionRefreshRequired")
    assert (required["sessionId"], required["role"]) == (session_id, "speaker")
    assert "targetLanguage" not in required
    assert required["refreshBy"] == Driver_connected_at() + 4000


def Driver_connected_at() -> int:
    from tests.helpers import load_event

    return load_event("connect_speaker")["requestContext"]["connectedAt"]


def test_timer_stopped_during_first_wait_sends_nothing(engine: Any) -> None:
    sfn, management, bridge = engine
    driver = Driver()
    driver.connect("lst-1")
    arn = timer.execution_arn(timer.execution_name("lst-1"))
    wait_until_waiting(sfn, arn)
    driver.disconnect("lst-1")
    described = wait_for_end(sfn, arn)
    time.sleep(2.5)
    assert described["status"] == "ABORTED"
    assert management.posts == []
    assert bridge.invocations == []


def test_timer_connection_gone_ends_execution_as_succeeded(engine: Any) -> None:
    sfn, management, bridge = engine
    driver = Driver()
    driver.connect("lst-1")
    management.gone.add("lst-1")

    described = wait_for_end(sfn, timer.execution_arn(timer.execution_name("lst-1")))

    assert described["status"] == "SUCCEEDED"
    assert [event["notification"] for _, event in bridge.invocations] == ["connectionRefreshRequired"]
    assert management.posts == []


def test_timer_notifier_error_is_retried(engine: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    sfn, management, bridge = engine
    calls = {"n": 0}
    real = notifier.handler

    def flaky(event: dict[str, Any], context: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("transient")
        return real(event, context)

    bridge.functions[NOTIFIER_ARN] = flaky
    Driver().connect("lst-1")
    described = wait_for_end(sfn, timer.execution_arn(timer.execution_name("lst-1")), timeout=20)
    assert described["status"] == "SUCCEEDED"
    assert [kind for _, _, kind in management.arrivals] == ["connectionRefreshRequired", "connectionWarning"]
    assert calls["n"] == 4  # the failed notice, the notice, the warning, the sweep after the cut


def test_timer_notice_throttled_by_lambda_is_retried(engine: Any) -> None:
    # GIVEN the notifier at its reserved concurrency when the first notice falls due
    from local_stack import aws_faults

    sfn, management, _bridge = engine
    concurrency = aws_faults.LambdaConcurrency({NOTIFIER_ARN: 1})
    concurrency.in_flight[NOTIFIER_ARN] = 1  # another invocation holds the only slot
    aws_faults.install_concurrency(concurrency)
    try:
        Driver().connect("lst-1")
        arn = timer.execution_arn(timer.execution_name("lst-1"))
        deadline = time.monotonic() + 10
        while not concurrency.throttled and time.monotonic() < deadline:
            time.sleep(0.02)
        concurrency.leave(NOTIFIER_ARN)  # that invocation returns
        described = wait_for_end(sfn, arn, timeout=20)
    finally:
        aws_faults.install_concurrency(None)
    # THEN Step Functions saw Lambda.TooManyRequestsException, retried, and every notice arrived
    failures = [
        e["taskFailedEventDetails"]["error"]
        for e in sfn.get_execution_history(executionArn=arn)["events"]
        if e["type"] == "TaskFailed"
    ]
    assert failures == ["Lambda.TooManyRequestsException"]
    assert concurrency.throttled == {NOTIFIER_ARN: 1}
    assert described["status"] == "SUCCEEDED"
    assert [kind for _, _, kind in management.arrivals] == ["connectionRefreshRequired", "connectionWarning"]


def test_timer_speaker_grace_ends_session_when_speaker_does_not_return(
    engine: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SPEAKER_GRACE_SECONDS", "1")
    sfn, management, _bridge = engine
    driver = Driver()
    session_id = driver.speaker_session("spk-1")
    driver.join("lst-1", session_id)
    driver.disconnect("spk-1")
    assert management.messages_to("lst-1", "sessionEnded") == []

    wait_for_end(sfn, timer.execution_arn(timer.execution_name("spk-1", prefix="grace")))

    (ended,) = management.messages_to("lst-1", "sessionEnded")
    assert ended["reason"] == "speakerDisconnected"
    assert driver.status("lst-1")["isActive"] is False


def test_timer_asl_uses_the_stack_partition(template: dict[str, Any]) -> None:
    text = (cfn.ROOT / "statemachines" / "connection_timer.asl.json").read_text()
    assert "arn:aws:" not in text
    assert template["Resources"]["ConnectionTimer"]["Properties"]["DefinitionSubstitutions"]["Partition"] == {
        "Ref": "AWS::Partition"
    }
    china = cfn.state_machine_definition(
        template, "ConnectionTimer", {"NotifierFunctionArn": "x", "Partition": "aws-cn"}
    )
    assert "arn:aws-cn:states:::lambda:invoke" in china


def listener_past_its_warning(sfn: Any, management: Any) -> tuple[str, str]:
    """A session with listener lst-1 whose timer has sent its warning; (session id, its timer's ARN)."""
    driver = Driver()
    session_id = driver.speaker_session("spk-1")
    wait_until_waiting(sfn, timer.execution_arn(timer.execution_name("spk-1")))
    timer.stop_for_connection("spk-1")  # the speaker's own cut would end the session first
    driver.join("lst-1", session_id, "de")
    arn = timer.execution_arn(timer.execution_name("lst-1"))
    deadline = time.monotonic() + 10
    while not management.messages_to("lst-1", "connectionWarning") and time.monotonic() < deadline:
        time.sleep(0.05)
    return session_id, arn


def test_timer_removes_a_listener_whose_disconnect_never_came_after_the_cut(engine: Any) -> None:
    # GIVEN a listener that got its notice and its warning, then closed without a $disconnect
    sfn, management, bridge = engine
    session_id, arn = listener_past_its_warning(sfn, management)
    management.gone.add("lst-1")
    # WHEN the timer runs past the 2-hour cut
    described = wait_for_end(sfn, arn)
    # THEN its last step removed the record and uncounted the listener
    assert described["status"] == "SUCCEEDED"
    assert [event["notification"] for _, event in bridge.invocations if event.get("connectionId") == "lst-1"] == [
        "connectionRefreshRequired",
        "connectionWarning",
        "connectionCut",
    ]
    assert json.loads(described["output"])["cut"] == {"removed": True}
    assert connections_table.get("lst-1") is None
    session = sessions_table.get(session_id)
    assert session is not None
    assert session.listener_count == 0


def test_timer_after_the_cut_changes_nothing_when_the_record_is_gone(engine: Any) -> None:
    # GIVEN a listener whose record went (a 410 cleanup, say) after its warning
    sfn, management, _bridge = engine
    session_id, arn = listener_past_its_warning(sfn, management)
    assert service.notify({"notification": "connectionCut", "connectionId": "lst-1", "connectedAt": 0}) == {
        "removed": True
    }
    # WHEN the timer's own sweep comes after that
    described = wait_for_end(sfn, arn)
    # THEN it found nothing to remove, and the listener was uncounted once, not twice
    assert json.loads(described["output"])["cut"] == {"removed": False}
    session = sessions_table.get(session_id)
    assert session is not None
    assert session.listener_count == 0
