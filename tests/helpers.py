"""Test helpers: events from events/ and a driver over the real handlers (the harness is in local_stack)."""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path
from typing import Any

from local_stack.harness import AwsCallCounter, RecordingManagementApi

EVENTS = Path(__file__).resolve().parent.parent / "events"
STAGE_ENDPOINT = "https://abc123def4.execute-api.us-east-1.amazonaws.com/live"


def load_event(name: str) -> dict[str, Any]:
    """A fresh copy of events/<name>.json."""
    return json.loads((EVENTS / f"{name}.json").read_text())


def message_event(
    name: str,
    *,
    connection_id: str | None = None,
    body: dict[str, Any] | str | None = None,
    user_id: str | None = None,
    anonymous: bool = False,
) -> dict[str, Any]:
    """events/<name>.json with the connection, body or identity replaced."""
    event = copy.deepcopy(load_event(name))
    context = event["requestContext"]
    if connection_id is not None:
        context["connectionId"] = connection_id
    if body is not None:
        event["body"] = body if isinstance(body, str) else json.dumps(body)
    if anonymous:
        context["authorizer"] = {"principalId": "anonymous", "userId": "", "authenticated": "false"}
    elif user_id is not None:
        context["authorizer"] = {"principalId": user_id, "userId": user_id, "authenticated": "true"}
    return event


class ServiceClock:
    """The service's clock in unit tests: real time plus an offset that a test, or the service's
    own waits (a join's reply waits for its audio start), move forward instead of sleeping."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds

    def to_start_of_window(self, window_seconds: int) -> None:
        """Move forward to one second into the next fixed rate-limit window, so that a test's
        requests (and the waits they advance this clock by) all fall in the same window."""
        self.advance(window_seconds - self() % window_seconds + 1)


SERVICE_CLOCK = ServiceClock()  # installed for every test by conftest


def audio_start_seconds() -> float:
    """How long after its join a listener's frames start (AUDIO_ROUTE_CACHE_MS + AUDIO_START_MARGIN_MS)."""
    from broadcast.config import settings

    return (settings().audio_route_cache_ms + settings().audio_start_margin_ms) / 1000 + 0.001


def body_of(result: dict[str, Any]) -> dict[str, Any]:
    """The JSON reply a handler returned (what the route response sends to the client)."""
    return json.loads(result["body"])


class Driver:
    """Drives the real handlers the way API Gateway would, one connection at a time."""

    def __init__(self) -> None:
        from broadcast.handlers import (
            connect,
            create_session,
            disconnect,
            join_session,
            refresh_connection,
            session_status,
        )

        self._connect = connect.handler
        self._disconnect = disconnect.handler
        self._create = create_session.handler
        self._join = join_session.handler
        self._refresh = refresh_connection.handler
        self._status = session_status.handler
        self.resume_tokens: dict[str, str] = {}  # listener connection id -> the resumeToken it was given

    def connect(self, connection_id: str, user_id: str | None = None) -> dict[str, Any]:
        name = "connect_speaker" if user_id else "connect_anonymous"
        event = message_event(name, connection_id=connection_id, user_id=user_id, anonymous=user_id is None)
        return self._connect(event, None)

    def disconnect(self, connection_id: str) -> dict[str, Any]:
        return self._disconnect(message_event("disconnect", connection_id=connection_id), None)

    def create(self, connection_id: str, user_id: str, language: str = "en") -> dict[str, Any]:
        body = {"action": "createSession", "sourceLanguage": language}
        return body_of(
            self._create(message_event("create_session", connection_id=connection_id, body=body, user_id=user_id), None)
        )

    def speaker_session(self, connection_id: str = "speaker-conn-1", user_id: str = "alice") -> str:
        """Connect a speaker and create a session; returns its id."""
        self.connect(connection_id, user_id)
        return self.create(connection_id, user_id)["sessionId"]

    def join(
        self, connection_id: str, session_id: str, language: str = "es", *, connect: bool = True
    ) -> dict[str, Any]:
        if connect:
            self.connect(connection_id)
        body = {"action": "joinSession", "sessionId": session_id, "targetLanguage": language}
        reply = body_of(
            self._join(message_event("join_session", connection_id=connection_id, body=body, anonymous=True), None)
        )
        if "resumeToken" in reply:
            self.resume_tokens[connection_id] = reply["resumeToken"]
        return reply

    def refresh(
        self,
        connection_id: str,
        session_id: str,
        role: str,
        *,
        user_id: str | None = None,
        language: str | None = None,
        connect: bool = True,
        resume_from: str | None = None,
    ) -> dict[str, Any]:
        """`resume_from`: the listener connection whose latest resumeToken the refresh carries."""
        if connect:
            self.connect(connection_id, user_id)
        body: dict[str, Any] = {"action": "refreshConnection", "sessionId": session_id, "role": role}
        if language:
            body["targetLanguage"] = language
        if resume_from is not None:
            body["resumeToken"] = self.resume_tokens[resume_from]
        event = message_event(
            "refresh_speaker", connection_id=connection_id, body=body, user_id=user_id, anonymous=user_id is None
        )
        reply = body_of(self._refresh(event, None))
        if "resumeToken" in reply:
            self.resume_tokens[connection_id] = reply["resumeToken"]
        return reply

    def status(self, connection_id: str) -> dict[str, Any]:
        event = message_event("get_session_status", connection_id=connection_id, anonymous=True)
        return body_of(self._status(event, None))


def count_calls(management: RecordingManagementApi, action: Any) -> list[str]:
    """The AWS calls `action()` makes, @connections posts to the recording API included."""
    before = len(management.posts)
    with AwsCallCounter() as counter:
        action()
    return counter.calls + ["apigatewaymanagementapi.PostToConnection"] * (len(management.posts) - before)


def audio_event(connection_id: str, seq: int, audio: str = "AAAA", *, user_id: str | None = "alice") -> dict[str, Any]:
    """A sendAudio event from `connection_id`."""
    body = {"action": "sendAudio", "seq": seq, "audio": audio}
    return message_event(
        "send_audio", connection_id=connection_id, body=body, user_id=user_id, anonymous=user_id is None
    )


def assert_invariants(backend: Any) -> None:
    """The state every operation must leave behind, whatever raced or failed.

    For every session, `listenerCount` and `languageCounts` equal its live listener records; every
    active session's speaker connection is a live connection, except during the speaker grace
    period (`speakerGoneAt` set), when it is by design the connection that dropped.
    """
    from broadcast.dynamo import from_item

    sessions = [from_item(i) for i in backend.ddb.scan(TableName="test-sessions")["Items"]]
    connections = backend.all_connections()
    live = {c["connectionId"] for c in connections}
    for session in sessions:
        mine = [c for c in connections if c.get("sessionId") == session["sessionId"] and c.get("role") == "listener"]
        assert session["listenerCount"] == len(mine), (session, len(mine))
        per_language: dict[str, int] = {}
        for c in mine:
            per_language[c["targetLanguage"]] = per_language.get(c["targetLanguage"], 0) + 1
        counted = {k: v for k, v in session.get("languageCounts", {}).items() if v}
        assert counted == per_language, (session, per_language)
        if session["isActive"] and "speakerGoneAt" not in session:
            assert session["speakerConnectionId"] in live, session


def run_concurrently(*actions: Any, workers: int = 16) -> list[Any]:
    """Run every action on its own thread, all released at once; their results in order."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    start = threading.Barrier(len(actions))

    def go(action: Any) -> Any:
        start.wait()
        return action()

    with ThreadPoolExecutor(max_workers=max(workers, len(actions))) as pool:
        return list(pool.map(go, actions))


def wait_until(condition: Any, timeout: float = 5) -> None:
    """Poll `condition` (real time) until it holds; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.001)
