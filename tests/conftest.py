"""Fixtures: moto-backed tables and state machine built from template.yaml, and a recording @connections API."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

from local_stack import template as _cfn  # noqa: E402 - reads template.yaml; imports no handler code

_TEMPLATE = _cfn.load()
_PARAMETERS = _TEMPLATE["Parameters"]
_GLOBAL_VARIABLES = _TEMPLATE["Globals"]["Function"]["Environment"]["Variables"]


def _deployed(parameter: str) -> str:
    """The template's default for `parameter`: what `sam deploy` ships, so what the tests run on."""
    return str(_PARAMETERS[parameter]["Default"])


os.environ.update(
    {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SECURITY_TOKEN": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "SESSIONS_TABLE": "test-sessions",
        "CONNECTIONS_TABLE": "test-connections",
        "MANAGEMENT_ENDPOINT": "https://abc123def4.execute-api.us-east-1.amazonaws.com/live",
        "TIMER_STATE_MACHINE_ARN": "arn:aws:states:us-east-1:123456789012:stateMachine:test-timer",
        "POWERTOOLS_METRICS_NAMESPACE": "BroadcastTests",
        "POWERTOOLS_DEV": "false",
        "RATE_LIMITS_TABLE": "test-rate-limits",
        "RESUME_TOKEN_KEY": "test-resume-token-key-of-at-least-32-characters",
        # The production defaults; a test that needs one off says so itself.
        "SPEAKER_GRACE_SECONDS": _deployed("SpeakerGraceSeconds"),
        "RATE_LIMIT_SESSIONS_PER_USER_PER_HOUR": _deployed("RateLimitSessionsPerUserPerHour"),
        "RATE_LIMIT_JOINS_PER_IP_PER_MINUTE": _deployed("RateLimitJoinsPerIpPerMinute"),
        "RATE_LIMIT_CONNECTS_PER_IP_PER_MINUTE": _deployed("RateLimitConnectsPerIpPerMinute"),
        **{
            name: str(_GLOBAL_VARIABLES[name])
            for name in (
                "MESSAGE_BURST",
                "MESSAGES_PER_SECOND",
                "CUT_AFTER_REFUSED",
                "AUDIO_ROUTE_CACHE_MS",
                "AUDIO_START_MARGIN_MS",
            )
        },
    }
)

from broadcast import audio_routes, aws, clock, config, flood  # noqa: E402
from local_stack import template as cfn  # noqa: E402
from local_stack.harness import RecordingManagementApi, mocked_backend  # noqa: E402

TABLE_NAMES = {
    "SessionsTable": "test-sessions",
    "ConnectionsTable": "test-connections",
    "RateLimitsTable": "test-rate-limits",
}


@pytest.fixture(autouse=True)
def _fresh_process_state(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Every test starts with freshly read settings and no cached clients."""
    from tests.helpers import SERVICE_CLOCK

    config.reset()
    aws.reset()
    audio_routes.forget()
    flood.reset()
    SERVICE_CLOCK.offset = 0.0
    clock.use(SERVICE_CLOCK, sleep=SERVICE_CLOCK.advance)
    yield
    config.reset()
    aws.reset()
    audio_routes.forget()
    flood.reset()
    clock.use(time.time)


@pytest.fixture
def no_grace(monkeypatch: pytest.MonkeyPatch) -> None:
    """SPEAKER_GRACE_SECONDS=0 instead of the deployed 30: for tests about what follows once the
    speaker is gone for good (the grace period itself has its own tests)."""
    monkeypatch.setenv("SPEAKER_GRACE_SECONDS", "0")
    config.reset()


@pytest.fixture
def template() -> dict[str, Any]:
    return cfn.load()


@pytest.fixture
def backend() -> Any:
    """moto DynamoDB tables and the timer state machine from template.yaml, plus a recording @connections API."""
    with mocked_backend(TABLE_NAMES, os.environ["TIMER_STATE_MACHINE_ARN"], os.environ["MANAGEMENT_ENDPOINT"]) as (
        ddb,
        sfn,
        management,
    ):
        yield Backend(ddb, sfn, management)


class Backend:
    """Handles on the mocked AWS: raw clients for assertions and the recording management API."""

    def __init__(self, ddb: Any, sfn: Any, management: RecordingManagementApi) -> None:
        self.ddb = ddb
        self.sfn = sfn
        self.management = management

    def session(self, session_id: str) -> dict[str, Any] | None:
        from broadcast.dynamo import from_item

        found = self.ddb.get_item(TableName="test-sessions", Key={"sessionId": {"S": session_id}})
        return from_item(found.get("Item"))

    def connection(self, connection_id: str) -> dict[str, Any] | None:
        from broadcast.dynamo import from_item

        found = self.ddb.get_item(TableName="test-connections", Key={"connectionId": {"S": connection_id}})
        return from_item(found.get("Item"))

    def all_connections(self) -> list[dict[str, Any]]:
        from broadcast.dynamo import from_item

        items = self.ddb.scan(TableName="test-connections")["Items"]
        return [from_item(i) for i in items]

    def executions(self) -> list[dict[str, Any]]:
        arn = os.environ["TIMER_STATE_MACHINE_ARN"]
        return self.sfn.list_executions(stateMachineArn=arn)["executions"]


@pytest.fixture
def keys(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A key pair made for the test, and the authorizer verifying against its JWKS (no network)."""
    from broadcast.auth import TokenSettings, TokenVerifier
    from broadcast.handlers import authorizer
    from tests.jwt_keys import CLIENT_ID, ISSUER, KeySet

    keyset = KeySet(tmp_path)
    settings = TokenSettings(issuer=ISSUER, jwks_url="https://jwks.invalid/.well-known/jwks.json", client_id=CLIENT_ID)
    monkeypatch.setattr(authorizer, "_verifier", TokenVerifier(settings, jwks_client=keyset.jwks_client()))
    return keyset


@pytest.fixture
def driver(backend: Any) -> Any:
    """The real handlers, driven the way API Gateway would, over the moto backend."""
    from tests.helpers import Driver

    return Driver()


@pytest.fixture
def threaded(backend: Any) -> Any:
    """moto made safe for threads the way the local stack does it (one lock around every request)."""
    from local_stack.aws_backend import _serialize_moto

    _serialize_moto()
    return backend
