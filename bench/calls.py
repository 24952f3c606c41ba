"""AWS calls per operation: every route and the timer's notifier against moto, counted by a botocore hook."""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Callable
from typing import Any

ENV = {
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench",
    "AWS_DEFAULT_REGION": "us-east-1",
    "SESSIONS_TABLE": "bench-sessions",
    "CONNECTIONS_TABLE": "bench-connections",
    "MANAGEMENT_ENDPOINT": "https://bench.execute-api.us-east-1.amazonaws.com/live",
    "TIMER_STATE_MACHINE_ARN": "arn:aws:states:us-east-1:123456789012:stateMachine:bench-timer",
    "POWERTOOLS_METRICS_DISABLED": "true",
    "POWERTOOLS_LOG_LEVEL": "ERROR",
    "SPEAKER_GRACE_SECONDS": "30",
    "RATE_LIMITS_TABLE": "bench-limits",
    "RESUME_TOKEN_KEY": "bench-resume-token-key-of-at-least-32-characters",
}
TABLES = {"SessionsTable": "bench-sessions", "ConnectionsTable": "bench-connections", "RateLimitsTable": "bench-limits"}

# From the seed document (connection-refresh-handler-summary.md) and its heartbeat design.
SEED = {
    "refreshConnection (speaker)": "GetItem + UpdateItem + post = 3",
    "refreshConnection (listener)": "GetItem + PutItem + UpdateItem + post = 4",
    "heartbeat": "GetItem + post = 2 (duration check)",
}


def _event(connection_id: str, body: dict[str, Any] | None, user: str | None) -> dict[str, Any]:
    import json

    authorizer = {
        "principalId": user or "anonymous",
        "userId": user or "",
        "authenticated": "true" if user else "false",
    }
    return {
        "requestContext": {
            "connectionId": connection_id,
            "connectedAt": 1_795_888_800_000,
            "requestId": "bench",
            "authorizer": authorizer,
            "routeKey": (body or {}).get("action", "$connect"),
        },
        "body": json.dumps(body) if body is not None else None,
    }


def count(listeners: int = 10) -> list[tuple[str, str, int, str]]:
    """(operation, calls by service.operation, total, seed) for every route, with `listeners` in the session."""
    os.environ.update(ENV)
    from broadcast import aws, config
    from broadcast.handlers import (
        connect,
        create_session,
        disconnect,
        end_session,
        heartbeat,
        join_session,
        notifier,
        refresh_connection,
        send_audio,
        session_status,
    )
    from local_stack.harness import AwsCallCounter, mocked_backend

    config.reset()
    aws.reset()
    rows: list[tuple[str, str, int, str]] = []
    with mocked_backend(TABLES, ENV["TIMER_STATE_MACHINE_ARN"], ENV["MANAGEMENT_ENDPOINT"]) as (_ddb, _sfn, management):

        def measure(name: str, action: Callable[[], Any], per: str = "") -> None:
            posts_before = len(management.posts)
            with AwsCallCounter() as counter:
                action()
            calls = Counter(c.split(".", 1)[1] for c in counter.calls)
            posts = len(management.posts) - posts_before
            if posts:
                calls["PostToConnection"] += posts
            text = " + ".join(f"{n} {op}" for op, n in sorted(calls.items())) or "none"
            rows.append((name + per, text, sum(calls.values()), SEED.get(name, "")))

        measure("$connect", lambda: connect.handler(_event("spk-1", None, "alice"), None))
        created: dict[str, Any] = {}

        def create() -> None:
            result = create_session.handler(
                _event("spk-1", {"action": "createSession", "sourceLanguage": "en"}, "alice"), None
            )
            created.update(json.loads(result["body"]))

        measure("createSession", create)
        sid = created["sessionId"]
        for i in range(listeners):
            connect.handler(_event(f"lst-{i}", None, None), None)
        joined: dict[str, Any] = {}

        def join() -> None:
            body = {"action": "joinSession", "sessionId": sid, "targetLanguage": "es"}
            joined.update(json.loads(join_session.handler(_event("lst-0", body, None), None)["body"]))

        measure("joinSession", join)
        for i in range(1, listeners):
            body = {"action": "joinSession", "sessionId": sid, "targetLanguage": "fr"}
            join_session.handler(_event(f"lst-{i}", body, None), None)
        measure("heartbeat", lambda: heartbeat.handler(_event("lst-0", {"action": "heartbeat"}, None), None))
        measure(
            "getSessionStatus",
            lambda: session_status.handler(_event("lst-0", {"action": "getSessionStatus"}, None), None),
        )
        connect.handler(_event("spk-2", None, "alice"), None)
        measure(
            "refreshConnection (speaker)",
            lambda: refresh_connection.handler(
                _event("spk-2", {"action": "refreshConnection", "sessionId": sid, "role": "speaker"}, "alice"), None
            ),
        )
        connect.handler(_event("lst-0b", None, None), None)
        # with the resumeToken its join gave it: a refresh, not a join (which the join limit would count)
        body = {
            "action": "refreshConnection",
            "sessionId": sid,
            "role": "listener",
            "targetLanguage": "es",
            "resumeToken": joined["resumeToken"],
        }
        measure("refreshConnection (listener)", lambda: refresh_connection.handler(_event("lst-0b", body, None), None))
        measure(
            "sendAudio",
            lambda: send_audio.handler(
                _event("spk-2", {"action": "sendAudio", "seq": 1, "audio": "AAAA"}, "alice"), None
            ),
            f" (first frame of a connection, {listeners + 1} listener connections)",
        )
        measure(
            "sendAudio",
            lambda: send_audio.handler(
                _event("spk-2", {"action": "sendAudio", "seq": 2, "audio": "AAAA"}, "alice"), None
            ),
            " (next frames: the route is cached for a second)",
        )
        measure(
            "notifier: connectionRefreshRequired",
            lambda: notifier.handler({"notification": "connectionRefreshRequired", "connectionId": "lst-1"}, None),
        )
        measure(
            "notifier: connectionWarning",
            lambda: notifier.handler(
                {"notification": "connectionWarning", "connectionId": "lst-1", "connectedAt": 0}, None
            ),
        )
        measure("$disconnect (listener)", lambda: disconnect.handler(_event("lst-0", None, None), None))
        measure(
            "$disconnect (old speaker after refresh)", lambda: disconnect.handler(_event("spk-1", None, "alice"), None)
        )
        measure(
            "endSession",
            lambda: end_session.handler(_event("spk-2", {"action": "endSession"}, "alice"), None),
            f" ({listeners} listeners)",
        )
    return rows


def table(rows: list[tuple[str, str, int, str]]) -> str:
    lines = ["| operation | AWS calls | total | seed design |", "|---|---|---|---|"]
    lines += [f"| {op} | {calls} | {total} | {seed} |" for op, calls, total, seed in rows]
    return "\n".join(lines)
