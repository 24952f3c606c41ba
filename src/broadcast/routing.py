"""Turns API Gateway WebSocket events into domain calls, and results or typed errors into replies."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from broadcast import flood, protocol
from broadcast.caller import Caller
from broadcast.errors import BroadcastError, InternalError, InvalidAction, RateLimitExceeded
from broadcast.observability import count_by, logger, metrics


def caller_from(event: dict[str, Any]) -> Caller:
    """The caller of a WebSocket event: connection id, connect time and the authorizer's identity."""
    context = event.get("requestContext") or {}
    authorizer = context.get("authorizer") or {}
    authenticated = str(authorizer.get("authenticated", "false")).lower() == "true"
    return Caller(
        connection_id=str(context.get("connectionId", "")),
        connected_at=int(context.get("connectedAt") or context.get("requestTimeEpoch") or 0),
        user_id=str(authorizer.get("userId") or "") or None if authenticated else None,
        request_id=str(context.get("requestId", "")),
        source_ip=str((context.get("identity") or {}).get("sourceIp", "")),
        disconnect_status=_int_or_none(context.get("disconnectStatusCode")),
    )


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def reply(message: dict[str, Any], status: int = 200) -> dict[str, Any]:
    """A Lambda proxy result; API Gateway sends `body` to the sender where the route has a route response."""
    return {"statusCode": status, "body": json.dumps(message, separators=(",", ":"))}


def error_reply(error: BroadcastError, *, action: str | None, request_id: str) -> dict[str, Any]:
    """The protocol `error` for a typed error."""
    return reply(protocol.error_message(error, action=action, request_id=request_id), error.status)


Operation = Callable[[Caller, dict[str, Any]], dict[str, Any] | None]


def message_route(event: dict[str, Any], operation: Operation) -> dict[str, Any]:
    """Run one message route: parse the frame, call `operation`, map a typed error to its protocol code."""
    caller = caller_from(event)
    action: str | None = None
    # Thread-local keys: in Lambda one request runs per process, but the local stack runs handlers on threads.
    logger.thread_safe_append_keys(connectionId=caller.connection_id)
    try:
        _within_budget(caller.connection_id)
        if event.get("isBase64Encoded"):
            raise InvalidAction("binary frames are not supported; send UTF-8 JSON text")
        body = protocol.parse_body(event.get("body"))
        action = protocol.action_of(body)
        session_id = body.get("sessionId")
        if isinstance(session_id, str) and protocol.SESSION_ID_PATTERN.match(session_id):
            logger.thread_safe_append_keys(sessionId=session_id)  # only a well-formed id goes into the logs
        protocol.reject_unknown_fields(body, action)
        answer = operation(caller, body)
        # No body means nothing goes back to the sender, even on a route with a route response.
        return reply(answer) if answer is not None else {"statusCode": 200}
    except BroadcastError as error:
        logger.info("request refused", extra={"code": error.code, "action": action})
        return error_reply(error, action=action, request_id=caller.request_id)
    except Exception as exc:  # noqa: BLE001 - boundary: a generic INTERNAL_ERROR, details only in the log
        if _lost_to_contention(exc):
            # Every conflict retry lost to other writes on the same item (a burst of joins on one
            # session): nothing was written, and a little later it will go through. Said as
            # RATE_LIMIT_EXCEEDED, which both clients wait out with jitter, so the burst spreads.
            count_by("ConflictsExhausted", "action", action if action in protocol.ACTION_FIELDS else "unknown")
            busy = RateLimitExceeded(1, "the session is busy with other requests; try again")
            return error_reply(busy, action=action, request_id=caller.request_id)
        # The client gets a generic 500 with the request id; the details stay in the log.
        logger.exception("unhandled error", extra={"action": action})
        # Answered, not raised, so Lambda's Errors metric never sees it: count it ourselves. Only a
        # known action becomes a dimension value (client text would make metrics without bound).
        count_by("InternalError", "action", action if action in protocol.ACTION_FIELDS else "unknown")
        return error_reply(InternalError(), action=action, request_id=caller.request_id)
    finally:
        logger.thread_safe_remove_keys(["connectionId", "sessionId"])


def _lost_to_contention(exc: BaseException) -> bool:
    """A write that lost every conflict retry (imported only on this path: heartbeat loads no boto3)."""
    if not hasattr(exc, "response"):
        return False
    from broadcast.dynamo import is_conflict

    return is_conflict(exc)


def _within_budget(connection_id: str) -> None:
    """Refuse a message over the connection's budget; cut a connection that keeps flooding (broadcast/flood.py)."""
    verdict = flood.guard().admit(connection_id)
    if verdict == "ok":
        return
    count_by("MessagesRefused", "outcome", verdict)
    if verdict == "cut":
        logger.warning("flooding connection cut", extra={"connectionId": connection_id})
        try:
            flood.cut(connection_id)
        except Exception as exc:  # noqa: BLE001 - best effort: the next refusal tries again
            logger.warning("cut failed", extra={"errorCode": type(exc).__name__})
    raise RateLimitExceeded(1, "too many messages on this connection")


def route(operation: Operation) -> Callable[[dict[str, Any], Any], dict[str, Any]]:
    """A Lambda handler for a message route: `handler = route(service.join_session)`."""

    @metrics.log_metrics
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        return message_route(event, operation)

    handler.__doc__ = f"Lambda entry point for {operation.__name__}."
    return handler
