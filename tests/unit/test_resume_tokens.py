"""resumeToken (PROTOCOL.md section 4): issued to listeners, required for a refresh to skip capacity and join limits."""

from __future__ import annotations

from typing import Any

import pytest

from broadcast import clock, config, protocol, resume_tokens
from tests.helpers import SERVICE_CLOCK, Driver


@pytest.fixture
def full_session(driver: Driver, monkeypatch: pytest.MonkeyPatch) -> str:
    """A session of 'alice' at its limit of one listener (lst-1, Spanish)."""
    monkeypatch.setenv("MAX_LISTENERS_PER_SESSION", "1")
    config.reset()
    session_id = driver.speaker_session("spk-1", "alice")
    assert driver.join("lst-1", session_id, "es")["type"] == "sessionJoined"
    return session_id


def test_create_session_reply_names_the_audio_format(driver: Driver, backend: Any) -> None:
    driver.connect("spk-1", "alice")
    assert driver.create("spk-1", "alice")["audioFormat"] == "pcm_s16le/16000/1"


def test_join_reply_carries_audio_format_and_resume_token(driver: Driver, backend: Any) -> None:
    session_id = driver.speaker_session()
    reply = driver.join("lst-1", session_id)
    assert reply["audioFormat"] == protocol.AUDIO_FORMAT
    assert resume_tokens.holder(reply["resumeToken"], session_id) == "lst-1"


def test_refresh_without_resume_token_on_full_session_session_full(
    driver: Driver, backend: Any, full_session: str
) -> None:
    reply = driver.refresh("lst-1b", full_session, "listener", language="es")
    assert (reply["type"], reply["code"]) == ("error", "SESSION_FULL")
    assert backend.session(full_session)["listenerCount"] == 1
    assert "sessionId" not in backend.connection("lst-1b")


def test_refresh_with_resume_token_on_full_session_accepted(driver: Driver, backend: Any, full_session: str) -> None:
    reply = driver.refresh("lst-1b", full_session, "listener", language="es", resume_from="lst-1")
    assert reply["type"] == "connectionRefreshComplete"
    assert reply["audioFormat"] == protocol.AUDIO_FORMAT
    # The new connection gets a token of its own, which the next refresh carries.
    assert resume_tokens.holder(reply["resumeToken"], full_session) == "lst-1b"
    driver.disconnect("lst-1")
    again = driver.refresh("lst-1c", full_session, "listener", language="es", resume_from="lst-1b")
    assert again["type"] == "connectionRefreshComplete"


@pytest.mark.parametrize(
    "forge",
    [
        lambda token: token[:-2] + ("AA" if not token.endswith("AA") else "BB"),  # signature changed
        lambda token: token.replace("v1.", "v2.", 1),
        lambda token: "garbage",
        lambda token: "",
        lambda token: "v1.9999999999.bHN0LTE." + "A" * 27,  # far future, not signed by the stack
    ],
)
def test_refresh_with_forged_resume_token_is_a_join(
    driver: Driver, backend: Any, full_session: str, forge: Any
) -> None:
    driver.resume_tokens["forged"] = forge(driver.resume_tokens["lst-1"])
    reply = driver.refresh("lst-1b", full_session, "listener", language="es", resume_from="forged")
    assert reply["code"] == "SESSION_FULL"


def test_resume_token_of_another_session_is_a_join(driver: Driver, backend: Any, full_session: str) -> None:
    driver.connect("spk-9", "bob")
    other = driver.create("spk-9", "bob")["sessionId"]
    driver.join("lst-9", other, "fr")
    reply = driver.refresh("lst-1b", full_session, "listener", language="es", resume_from="lst-9")
    assert reply["code"] == "SESSION_FULL"


def test_expired_resume_token_is_a_join(
    driver: Driver, backend: Any, full_session: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    later = clock.now_seconds() + config.settings().max_connection_seconds + resume_tokens.RESUME_MARGIN_SECONDS + 1
    monkeypatch.setattr(clock, "_now", lambda: float(later))
    reply = driver.refresh("lst-1b", full_session, "listener", language="es", resume_from="lst-1")
    assert reply["code"] == "SESSION_FULL"


def test_refresh_without_resume_token_counts_against_join_limit(
    driver: Driver, backend: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RATE_LIMIT_JOINS_PER_IP_PER_MINUTE", "1")
    config.reset()
    SERVICE_CLOCK.to_start_of_window(60)  # the join and the refresh in one minute, not across two
    session_id = driver.speaker_session()
    assert driver.join("lst-1", session_id)["type"] == "sessionJoined"
    # The one join of this minute is spent: a refresh that proves nothing is refused ...
    refused = driver.refresh("lst-2", session_id, "listener", language="es")
    assert (refused["code"], refused["status"]) == ("RATE_LIMIT_EXCEEDED", 429)
    assert refused["retryAfterSeconds"] >= 1
    # ... and one with the listener's token is not.
    reply = driver.refresh("lst-1b", session_id, "listener", language="es", resume_from="lst-1")
    assert reply["type"] == "connectionRefreshComplete"


def test_resume_token_not_a_string_invalid_parameters(driver: Driver, backend: Any, full_session: str) -> None:
    driver.resume_tokens["number"] = 12345  # type: ignore[assignment]
    reply = driver.refresh("lst-1b", full_session, "listener", language="es", resume_from="number")
    assert reply["code"] == "INVALID_PARAMETERS"
    assert "sessionId" not in backend.connection("lst-1b")
