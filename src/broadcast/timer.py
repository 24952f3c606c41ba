"""The per-connection Step Functions timer: start at $connect, stop at $disconnect."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from broadcast import aws
from broadcast.config import settings
from broadcast.observability import logger

CONNECTION = "connection"
SPEAKER_GRACE = "speakerGrace"


def execution_name(connection_id: str, prefix: str = "conn") -> str:
    """A deterministic execution name: a retried start is idempotent and a stop needs no stored ARN.

    Connection ids are base64; '/' and '+' are not allowed in execution names, so they are
    mapped the url-safe way (an injective mapping, so two ids never share a name).
    """
    safe = connection_id.replace("/", "_").replace("+", "-").rstrip("=")
    return f"{prefix}-{safe}"[:80]


def execution_arn(name: str) -> str:
    """The ARN an execution of the timer state machine gets for `name`."""
    machine = settings().timer_state_machine_arn
    prefix, _, machine_name = machine.rpartition(":")
    return f"{prefix.replace(':stateMachine', ':execution')}:{machine_name}:{name}"


def refresh_jitter(connection_id: str) -> int:
    """Seconds to bring the refresh forward, stable per connection so the execution input is too."""
    spread = settings().refresh_jitter_seconds
    if spread <= 0:
        return 0
    digest = hashlib.sha256(connection_id.encode()).digest()
    return int.from_bytes(digest[:4], "big") % (spread + 1)


def connection_input(connection_id: str, connected_at: int) -> dict[str, Any]:
    """The execution input of a connection's timer (all waits in whole seconds, as ASL requires)."""
    cfg = settings()
    refresh_after = cfg.refresh_after_seconds - refresh_jitter(connection_id)
    return {
        "kind": CONNECTION,
        "connectionId": connection_id,
        "connectedAt": connected_at,
        "refreshAfterSeconds": refresh_after,
        "warnAfterSeconds": cfg.warning_after_seconds - refresh_after,
        # From the warning to just past API Gateway's cut: the record is then removed if it is
        # still there ($disconnect is best effort; a stopped timer never gets this far).
        "cutAfterSeconds": cfg.max_connection_seconds - cfg.warning_after_seconds + cfg.cut_sweep_delay_seconds,
    }


class TimerNotStarted(Exception):
    """StartExecution failed after the client's own retries (throttling or an outage)."""


def start_for_connection(connection_id: str, connected_at: int) -> None:
    """Start the connection's timer; raises TimerNotStarted when it could not be started."""
    _start(execution_name(connection_id), connection_input(connection_id, connected_at))


def start_speaker_grace(session_id: str, connection_id: str) -> None:
    """Start the wait after which a session whose speaker did not come back ends."""
    payload = {
        "kind": SPEAKER_GRACE,
        "sessionId": session_id,
        "connectionId": connection_id,
        "waitSeconds": settings().speaker_grace_seconds,
    }
    _start(execution_name(connection_id, prefix="grace"), payload)


def _start(name: str, payload: dict[str, Any]) -> None:
    try:
        aws.client("stepfunctions").start_execution(
            stateMachineArn=settings().timer_state_machine_arn,
            name=name,
            input=json.dumps(payload, separators=(",", ":"), sort_keys=True),
        )
    except Exception as exc:
        if aws.error_code(exc) == "ExecutionAlreadyExists":
            return  # started by an earlier delivery of the same event
        raise TimerNotStarted(name) from exc


def stop_for_connection(connection_id: str) -> None:
    """Stop the connection's timer, best effort: a failure (already ended, throttled) is logged, not raised."""
    try:
        aws.client("stepfunctions").stop_execution(
            executionArn=execution_arn(execution_name(connection_id)), cause="connection closed"
        )
    except Exception as exc:  # noqa: BLE001 - best effort by design: the timer ends itself on a 410 anyway
        logger.warning(
            "timer not stopped",
            extra={"connectionId": connection_id, "errorCode": aws.error_code(exc) or type(exc).__name__},
        )
