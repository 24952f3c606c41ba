"""Property-based tests: every client-facing handler against generated and mutated events.

For each example: no exception escapes the handler, no client input becomes a 5xx, and a
request that is refused leaves the Sessions and Connections tables exactly as they were.
(The RateLimits table is left out on purpose: counting refused requests is its job.)
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from broadcast.handlers import (
    authorizer,
    create_session,
    default,
    end_session,
    heartbeat,
    join_session,
    refresh_connection,
    send_audio,
    session_status,
)
from tests.helpers import Driver, load_event

EXAMPLES = 150
HANDLERS = {
    "createSession": (create_session.handler, "create_session"),
    "joinSession": (join_session.handler, "join_session"),
    "refreshConnection": (refresh_connection.handler, "refresh_listener"),
    "heartbeat": (heartbeat.handler, "heartbeat"),
    "getSessionStatus": (session_status.handler, "get_session_status"),
    "sendAudio": (send_audio.handler, "send_audio"),
    "endSession": (end_session.handler, "end_session"),
    "$default": (default.handler, "default_unknown_action"),
}
IDENTITIES = [
    ("spk-1", "alice"),  # the session's speaker
    ("lst-1", None),  # a listener of the session
    ("fresh-1", None),  # connected, in no session
    ("fresh-2", "mallory"),  # another authenticated user
    ("never-connected", None),  # no record at all
]
PLAUSIBLE = [
    "golden-eagle-427",
    "es",
    "en",
    "xx",
    "speaker",
    "listener",
    "AAAA",
    "A" * 24_577,
    "\ud800",
    "\x00",
    "é" * 3,
    -1,
    0,
    2**63,
    1.5,
    True,
    None,
    [],
    {},
]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=30),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=8,
)
field_values = st.one_of(st.sampled_from(PLAUSIBLE), json_values)
field_names = st.one_of(
    st.sampled_from(["sessionId", "targetLanguage", "sourceLanguage", "role", "seq", "audio", "action"]),
    st.text(max_size=12),
)


@st.composite
def frames(draw: st.DrawFn, action: str, session_id: str) -> tuple[str, bool]:
    """A frame for `action`: a mutated valid body most of the time, otherwise raw text or binary."""
    kind = draw(st.sampled_from(["mutated", "mutated", "mutated", "raw", "nested", "binary"]))
    if kind == "raw":
        return draw(st.text(max_size=200)), False
    if kind == "nested":
        depth = draw(st.integers(min_value=1, max_value=5_000))
        return "[" * depth + "]" * depth, False
    if kind == "binary":
        return draw(st.binary(max_size=64)).hex(), True
    _, event_name = HANDLERS[action]
    body = json.loads(load_event(event_name)["body"])
    if "sessionId" in body or action in ("joinSession", "refreshConnection"):
        body["sessionId"] = session_id
    for name in draw(st.lists(st.sampled_from(sorted(body)), max_size=2, unique=True)):
        if name != "action":
            del body[name]
    for name, value in draw(st.dictionaries(field_names, field_values, max_size=3)).items():
        body[name] = value
    return json.dumps(body), False


def snapshot(backend: Any) -> tuple[list[Any], list[Any]]:
    return tuple(  # type: ignore[return-value]
        sorted(json.dumps(i, sort_keys=True) for i in backend.ddb.scan(TableName=t)["Items"])
        for t in ("test-sessions", "test-connections")
    )


@pytest.fixture
def world(backend: Any) -> tuple[Any, str]:
    driver = Driver()
    session_id = driver.speaker_session("spk-1", "alice")
    driver.join("lst-1", session_id, "es")
    driver.connect("fresh-1")
    driver.connect("fresh-2", "mallory")
    return backend, session_id


@pytest.mark.parametrize("action", sorted(HANDLERS))
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_property_handler_never_crashes_never_5xx_and_refusals_change_nothing(
    world: tuple[Any, str], action: str, data: st.DataObject
) -> None:
    backend, session_id = world
    handler, event_name = HANDLERS[action]
    frame, binary = data.draw(frames(action, session_id))
    connection_id, user_id = data.draw(st.sampled_from(IDENTITIES))
    event = copy.deepcopy(load_event(event_name))
    event["body"] = frame
    event["isBase64Encoded"] = binary
    event["requestContext"]["connectionId"] = connection_id
    event["requestContext"]["authorizer"] = {
        "principalId": user_id or "anonymous",
        "userId": user_id or "",
        "authenticated": "true" if user_id else "false",
    }
    before = snapshot(backend)

    result = handler(event, None)  # THEN no exception escapes

    assert isinstance(result, dict)
    assert result["statusCode"] < 500, result
    if "body" in result:
        reply = json.loads(result["body"])
        assert isinstance(reply.get("timestamp"), int)
        if reply["type"] == "error":
            assert reply["status"] < 500, reply
            assert snapshot(backend) == before
            assert "Traceback" not in reply["message"]


@settings(max_examples=EXAMPLES * 2, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    query=st.one_of(
        st.none(), st.dictionaries(st.sampled_from(["token", "t", "Token", ""]), st.text(max_size=300), max_size=3)
    )
)
def test_property_authorizer_allows_anonymous_or_refuses_never_crashes(keys: Any, query: dict[str, str] | None) -> None:
    event = load_event("authorizer_anonymous")
    event["queryStringParameters"] = query
    if query is not None and "token" in query:
        # Any present token that is not a valid JWT is refused with API Gateway's 401, never anonymous.
        with pytest.raises(Exception, match=r"^Unauthorized$"):
            authorizer.handler(event, None)
        return
    policy = authorizer.handler(event, None)
    assert policy["context"] == {"authenticated": "false", "userId": ""}
