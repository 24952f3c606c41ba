"""refreshConnection: the seed's 10 tests, its 11 acceptance criteria, and the refresh/$disconnect races.

Every test asserts the DynamoDB state after the call, not only the reply.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from broadcast import config, service
from broadcast.handlers import disconnect, notifier, refresh_connection
from tests.helpers import Driver, body_of, count_calls, load_event, message_event


@pytest.fixture
def session_id(driver: Driver) -> str:
    """An active session of speaker 'alice' (connection spk-1) with one Spanish listener (lst-1)."""
    sid = driver.speaker_session("spk-1", "alice")
    driver.join("lst-1", sid, "es")
    return sid


# --- the seed's 10 tests ---------------------------------------------------------------------------


def test_refresh_speaker_valid_identity_swaps_connection(driver: Driver, backend: Any, session_id: str) -> None:
    reply = driver.refresh("spk-2", session_id, "speaker", user_id="alice")
    assert reply["type"] == "connectionRefreshComplete"
    assert (reply["sessionId"], reply["role"]) == (session_id, "speaker")
    session = backend.session(session_id)
    assert session["speakerConnectionId"] == "spk-2"
    assert session["isActive"] is True
    record = backend.connection("spk-2")
    assert (record["sessionId"], record["role"], record["userId"]) == (session_id, "speaker", "alice")


def test_refresh_speaker_other_user_forbidden_and_nothing_changes(
    driver: Driver, backend: Any, session_id: str
) -> None:
    reply = driver.refresh("spk-x", session_id, "speaker", user_id="mallory")
    assert (reply["code"], reply["status"]) == ("FORBIDDEN", 403)
    assert backend.session(session_id)["speakerConnectionId"] == "spk-1"
    assert "sessionId" not in backend.connection("spk-x")


def test_refresh_speaker_anonymous_unauthorized_and_nothing_changes(backend: Any, session_id: str) -> None:
    event = load_event("refresh_speaker_anonymous")
    event["body"] = json.dumps({**json.loads(event["body"]), "sessionId": session_id})
    reply = body_of(refresh_connection.handler(event, None))
    assert (reply["code"], reply["status"]) == ("UNAUTHORIZED", 401)
    assert backend.session(session_id)["speakerConnectionId"] == "spk-1"


def test_refresh_listener_records_new_connection_and_counts_it(driver: Driver, backend: Any, session_id: str) -> None:
    reply = driver.refresh("lst-1b", session_id, "listener", language="es")
    assert reply["type"] == "connectionRefreshComplete"
    assert (reply["sessionId"], reply["role"], reply["targetLanguage"], reply["sourceLanguage"]) == (
        session_id,
        "listener",
        "es",
        "en",
    )
    record = backend.connection("lst-1b")
    assert (record["sessionId"], record["role"], record["targetLanguage"]) == (session_id, "listener", "es")
    assert backend.session(session_id)["listenerCount"] == 2


def test_refresh_listener_missing_target_language_invalid_parameters(
    driver: Driver, backend: Any, session_id: str
) -> None:
    reply = driver.refresh("lst-1b", session_id, "listener")
    assert (reply["code"], reply["status"]) == ("INVALID_PARAMETERS", 400)
    assert backend.session(session_id)["listenerCount"] == 1
    assert "sessionId" not in backend.connection("lst-1b")


@pytest.mark.parametrize("role", ["speaker", "listener"])
def test_refresh_unknown_session_not_found(driver: Driver, backend: Any, role: str) -> None:
    reply = driver.refresh("new-1", "silent-otter-001", role, user_id="alice", language="es")
    assert (reply["code"], reply["status"]) == ("SESSION_NOT_FOUND", 404)
    assert backend.session("silent-otter-001") is None
    assert "sessionId" not in backend.connection("new-1")


@pytest.mark.parametrize("role", ["speaker", "listener"])
@pytest.mark.usefixtures("no_grace")
def test_refresh_inactive_session_not_found(driver: Driver, backend: Any, session_id: str, role: str) -> None:
    driver.disconnect("spk-1")
    assert backend.session(session_id)["isActive"] is False
    reply = driver.refresh("new-1", session_id, role, user_id="alice", language="es")
    assert reply["code"] == "SESSION_NOT_FOUND"
    assert backend.session(session_id)["speakerConnectionId"] == "spk-1"
    assert "sessionId" not in backend.connection("new-1")


def test_refresh_missing_session_id_invalid_parameters(backend: Any) -> None:
    event = message_event("refresh_listener", body={"action": "refreshConnection", "role": "listener"})
    reply = body_of(refresh_connection.handler(event, None))
    assert (reply["code"], reply["action"]) == ("INVALID_PARAMETERS", "refreshConnection")
    assert backend.all_connections() == []


@pytest.mark.parametrize("role", [None, "moderator", "", 1, "Speaker"])
def test_refresh_invalid_role_invalid_parameters(backend: Any, session_id: str, role: Any) -> None:
    event = load_event("refresh_bad_role")
    body = {"action": "refreshConnection", "sessionId": session_id}
    if role is not None:
        body["role"] = role
    event["body"] = json.dumps(body)
    reply = body_of(refresh_connection.handler(event, None))
    assert reply["code"] == "INVALID_PARAMETERS"
    assert backend.session(session_id)["speakerConnectionId"] == "spk-1"


def test_refresh_listener_hands_its_place_over_at_capacity(
    driver: Driver, backend: Any, session_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a session at its listener limit
    monkeypatch.setenv("MAX_LISTENERS_PER_SESSION", "1")
    config.reset()
    assert driver.join("lst-2", session_id)["code"] == "SESSION_FULL"
    # WHEN its listener refreshes with its resumeToken
    reply = driver.refresh("lst-1b", session_id, "listener", language="es", resume_from="lst-1")
    # THEN the new connection takes the old one's place: counted once, the old record kept (it
    # still hears frames until it closes) and marked as handed over
    assert reply["type"] == "connectionRefreshComplete"
    assert backend.session(session_id)["listenerCount"] == 1
    assert backend.session(session_id)["languageCounts"] == {"es": 1}
    assert backend.connection("lst-1")["replacedBy"] == "lst-1b"
    assert driver.join("lst-2", session_id)["code"] == "SESSION_FULL"
    # AND the old connection's $disconnect removes its record and uncounts nothing
    driver.disconnect("lst-1")
    assert backend.session(session_id)["listenerCount"] == 1
    assert backend.connection("lst-1") is None
    # AND the new connection's own leaving frees the place
    driver.disconnect("lst-1b")
    assert backend.session(session_id)["listenerCount"] == 0
    assert driver.join("lst-2", session_id)["type"] == "sessionJoined"


def test_refresh_frees_a_place_for_a_join_during_the_handover(
    driver: Driver, backend: Any, session_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A hall at its capacity while earlier joiners refresh: the old connections no longer look like more people."""
    monkeypatch.setenv("MAX_LISTENERS_PER_SESSION", "3")
    config.reset()
    assert driver.join("lst-2", session_id)["type"] == "sessionJoined"
    # GIVEN two listeners whose refreshes are under way (old connections not yet closed)
    driver.refresh("lst-1b", session_id, "listener", language="es", resume_from="lst-1")
    driver.refresh("lst-2b", session_id, "listener", language="es", resume_from="lst-2")
    # WHEN a third person joins THEN there is room for them, and for no fourth
    assert driver.join("lst-3", session_id)["type"] == "sessionJoined"
    assert driver.join("lst-4", session_id)["code"] == "SESSION_FULL"
    assert backend.session(session_id)["listenerCount"] == 3


def test_refresh_after_the_old_record_went_counts_the_place_again(
    driver: Driver, backend: Any, session_id: str
) -> None:
    # GIVEN a listener whose connection dropped and whose $disconnect already uncounted it
    driver.disconnect("lst-1")
    assert backend.session(session_id)["listenerCount"] == 0
    # WHEN it comes back with its resumeToken THEN its place is counted again, once
    reply = driver.refresh("lst-1b", session_id, "listener", language="es", resume_from="lst-1")
    assert reply["type"] == "connectionRefreshComplete"
    assert backend.session(session_id)["listenerCount"] == 1


def test_refresh_to_another_language_moves_the_count_when_the_old_connection_goes(
    driver: Driver, backend: Any, session_id: str
) -> None:
    driver.refresh("lst-1b", session_id, "listener", language="fr", resume_from="lst-1")
    # The old record holds "es": not handed over, so both are counted until it goes
    assert "replacedBy" not in backend.connection("lst-1")
    assert backend.session(session_id)["languageCounts"] == {"es": 1, "fr": 1}
    driver.disconnect("lst-1")
    assert backend.session(session_id)["listenerCount"] == 1
    assert backend.session(session_id)["languageCounts"] == {"es": 0, "fr": 1}


def test_refresh_twice_with_one_token_counts_the_second_as_a_place_of_its_own(
    driver: Driver, backend: Any, session_id: str
) -> None:
    driver.refresh("lst-1b", session_id, "listener", language="es", resume_from="lst-1")
    driver.refresh("lst-1c", session_id, "listener", language="es", resume_from="lst-1")
    assert backend.session(session_id)["listenerCount"] == 2
    for connection_id in ("lst-1", "lst-1b", "lst-1c"):
        driver.disconnect(connection_id)
    assert backend.session(session_id)["listenerCount"] == 0


# --- the seed's 11 acceptance criteria -----------------------------------------------------------


def test_criterion_01_speaker_told_to_refresh_at_100_minutes(driver: Driver, backend: Any, session_id: str) -> None:
    (execution,) = [e for e in backend.executions() if e["name"] == "conn-spk-1"]
    payload = json.loads(backend.sfn.describe_execution(executionArn=execution["executionArn"])["input"])
    assert 6000 - 120 <= payload["refreshAfterSeconds"] <= 6000
    result = notifier.handler({"notification": "connectionRefreshRequired", "connectionId": "spk-1"}, None)
    assert result == {"delivered": True}
    (message,) = backend.management.messages_to("spk-1", "connectionRefreshRequired")
    assert (message["sessionId"], message["role"]) == (session_id, "speaker")
    assert message["refreshBy"] == backend.connection("spk-1")["connectedAt"] + 7_200_000


def test_criterion_02_old_speaker_connection_kept_during_handover(
    driver: Driver, backend: Any, session_id: str
) -> None:
    driver.refresh("spk-2", session_id, "speaker", user_id="alice")
    old = backend.connection("spk-1")
    assert (old["sessionId"], old["role"]) == (session_id, "speaker")
    assert backend.connection("spk-2")["role"] == "speaker"


def test_criterion_03_new_speaker_connection_validated_by_session_and_user(
    driver: Driver, backend: Any, session_id: str
) -> None:
    other = driver.speaker_session("spk-b", "bob")
    # alice may not take over bob's session, nor bob alice's
    assert driver.refresh("x-1", other, "speaker", user_id="alice")["code"] == "FORBIDDEN"
    assert driver.refresh("x-2", session_id, "speaker", user_id="bob")["code"] == "FORBIDDEN"
    assert backend.session(other)["speakerConnectionId"] == "spk-b"
    assert backend.session(session_id)["speakerConnectionId"] == "spk-1"


def test_criterion_04_speaker_swap_is_one_conditional_write(driver: Driver, backend: Any, session_id: str) -> None:
    calls = count_calls(
        backend.management, lambda: driver.refresh("spk-2", session_id, "speaker", user_id="alice", connect=False)
    )
    assert calls == ["dynamodb.TransactWriteItems"]
    assert backend.session(session_id)["speakerConnectionId"] == "spk-2"


def test_criterion_05_refresh_complete_goes_to_the_new_connection_only(
    driver: Driver, backend: Any, session_id: str
) -> None:
    event = message_event(
        "refresh_speaker",
        connection_id="spk-2",
        body={"action": "refreshConnection", "sessionId": session_id, "role": "speaker"},
        user_id="alice",
    )
    driver.connect("spk-2", "alice")
    result = refresh_connection.handler(event, None)
    # The reply is the route response of the new connection's own message: nothing is posted elsewhere.
    assert body_of(result)["type"] == "connectionRefreshComplete"
    assert backend.management.posts == []


def test_criterion_06_listener_told_to_refresh_with_its_language(driver: Driver, backend: Any, session_id: str) -> None:
    notifier.handler({"notification": "connectionRefreshRequired", "connectionId": "lst-1"}, None)
    (message,) = backend.management.messages_to("lst-1", "connectionRefreshRequired")
    assert (message["sessionId"], message["role"], message["targetLanguage"]) == (session_id, "listener", "es")


def test_criterion_07_listener_refreshes_with_same_session_and_language(
    driver: Driver, backend: Any, session_id: str
) -> None:
    driver.refresh("lst-1b", session_id, "listener", language="es")
    old, new = backend.connection("lst-1"), backend.connection("lst-1b")
    assert (old["sessionId"], old["targetLanguage"]) == (new["sessionId"], new["targetLanguage"])


def test_criterion_08_listener_record_and_count_in_one_transaction(
    driver: Driver, backend: Any, session_id: str
) -> None:
    # With the resumeToken of lst-1's place: a refresh, not a join (no join budget is spent).
    calls = count_calls(
        backend.management,
        lambda: driver.refresh("lst-1b", session_id, "listener", language="es", connect=False, resume_from="lst-1"),
    )
    assert calls == ["dynamodb.GetItem", "dynamodb.TransactWriteItems"]
    # The place is handed over in that transaction: the new record written, the old one marked,
    # the count unchanged (a refresh without a token is a join, and counts: criterion 11).
    assert backend.session(session_id)["listenerCount"] == 1
    assert backend.connection("lst-1b")["sessionId"] == session_id
    assert backend.connection("lst-1")["replacedBy"] == "lst-1b"


def test_criterion_09_session_state_persists_across_refreshes(driver: Driver, backend: Any, session_id: str) -> None:
    before = backend.session(session_id)
    driver.refresh("spk-2", session_id, "speaker", user_id="alice")
    driver.disconnect("spk-1")
    driver.refresh("lst-1b", session_id, "listener", language="es")
    driver.disconnect("lst-1")
    after = backend.session(session_id)
    for field in ("speakerUserId", "sourceLanguage", "createdAt", "isActive", "listenerCount", "languageCounts"):
        assert after[field] == before[field], field
    assert after["speakerConnectionId"] == "spk-2"


def test_criterion_10_unlimited_duration_through_periodic_refresh(
    driver: Driver, backend: Any, session_id: str
) -> None:
    speaker, listeners = "spk-1", {"lst-1": "es"}
    driver.join("lst-2", session_id, "fr")
    listeners["lst-2"] = "fr"
    expiries = [backend.session(session_id)["expiresAt"]]
    for cycle in range(6):  # six refresh cycles: 10 hours of broadcast
        new_speaker = f"spk-c{cycle}"
        assert (
            driver.refresh(new_speaker, session_id, "speaker", user_id="alice")["type"] == "connectionRefreshComplete"
        )
        driver.disconnect(speaker)
        speaker = new_speaker
        for old, language in list(listeners.items()):
            new = f"{old}-c{cycle}"
            assert driver.refresh(new, session_id, "listener", language=language)["type"] == "connectionRefreshComplete"
            driver.disconnect(old)
            del listeners[old]
            listeners[new] = language
        expiries.append(backend.session(session_id)["expiresAt"])
    session = backend.session(session_id)
    assert session["isActive"] is True
    assert session["speakerConnectionId"] == speaker
    assert session["listenerCount"] == 2
    assert session["languageCounts"] == {"es": 1, "fr": 1}
    assert expiries == sorted(expiries)  # every speaker refresh pushes the session's TTL forward
    live = {c["connectionId"] for c in backend.all_connections()}
    assert live == {speaker, *listeners}


def test_criterion_11_count_spike_during_handover_then_settles(driver: Driver, backend: Any, session_id: str) -> None:
    driver.refresh("lst-1b", session_id, "listener", language="es")
    assert driver.status("lst-1b")["listenerCount"] == 2
    driver.disconnect("lst-1")
    assert driver.status("lst-1b")["listenerCount"] == 1
    assert backend.session(session_id)["languageCounts"] == {"es": 1}


# --- races between a refresh and the old connection's $disconnect ---------------------------------


def test_race_speaker_refresh_then_old_disconnect_keeps_session(driver: Driver, backend: Any, session_id: str) -> None:
    driver.refresh("spk-2", session_id, "speaker", user_id="alice")
    driver.disconnect("spk-1")
    session = backend.session(session_id)
    assert (session["isActive"], session["speakerConnectionId"]) == (True, "spk-2")
    assert backend.management.messages_to("lst-1", "sessionEnded") == []


def test_race_speaker_old_disconnect_then_refresh_keeps_session(backend: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPEAKER_GRACE_SECONDS", "30")
    driver = Driver()
    session_id = driver.speaker_session("spk-1", "alice")
    driver.join("lst-1", session_id)
    # The old connection's $disconnect is handled first...
    driver.disconnect("spk-1")
    assert backend.session(session_id)["isActive"] is True
    # ...then the refresh on the new connection
    assert driver.refresh("spk-2", session_id, "speaker", user_id="alice")["type"] == "connectionRefreshComplete"
    # ...and the grace period's end finds the speaker back: nothing ends
    ended = notifier.handler(
        {"notification": "speakerGraceExpired", "sessionId": session_id, "connectionId": "spk-1"}, None
    )
    assert ended == {"delivered": True, "ended": False}
    session = backend.session(session_id)
    assert (session["isActive"], session["speakerConnectionId"]) == (True, "spk-2")
    assert "speakerGoneAt" not in session
    assert backend.management.messages_to("lst-1", "sessionEnded") == []


def test_speaker_deliberate_close_ends_at_once_even_with_grace(backend: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPEAKER_GRACE_SECONDS", "30")
    driver = Driver()
    session_id = driver.speaker_session("spk-1", "alice")
    driver.join("lst-1", session_id)
    event = message_event("disconnect", connection_id="spk-1")
    event["requestContext"]["disconnectStatusCode"] = 1000  # the speaker closed on purpose
    disconnect.handler(event, None)
    assert backend.session(session_id)["isActive"] is False
    assert [e for e in backend.executions() if e["name"].startswith("grace-")] == []
    (ended,) = backend.management.messages_to("lst-1", "sessionEnded")
    assert ended["reason"] == "speakerDisconnected"


def test_race_speaker_gone_without_refresh_ends_after_grace(backend: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPEAKER_GRACE_SECONDS", "30")
    driver = Driver()
    session_id = driver.speaker_session("spk-1", "alice")
    driver.join("lst-1", session_id)
    driver.disconnect("spk-1")
    grace = [e for e in backend.executions() if e["name"].startswith("grace-")]
    assert len(grace) == 1
    notifier.handler({"notification": "speakerGraceExpired", "sessionId": session_id, "connectionId": "spk-1"}, None)
    assert backend.session(session_id)["isActive"] is False
    (ended,) = backend.management.messages_to("lst-1", "sessionEnded")
    assert ended["reason"] == "speakerDisconnected"


@pytest.mark.usefixtures("no_grace")
def test_race_without_grace_old_disconnect_first_ends_session(driver: Driver, backend: Any, session_id: str) -> None:
    # SPEAKER_GRACE_SECONDS=0 (no_grace): the documented strict behaviour
    driver.disconnect("spk-1")
    assert driver.refresh("spk-2", session_id, "speaker", user_id="alice")["code"] == "SESSION_NOT_FOUND"
    assert backend.session(session_id)["isActive"] is False


def test_race_listener_refresh_then_old_disconnect_count_right(driver: Driver, backend: Any, session_id: str) -> None:
    driver.refresh("lst-1b", session_id, "listener", language="es")
    driver.disconnect("lst-1")
    driver.disconnect("lst-1")  # and delivered twice
    assert backend.session(session_id)["listenerCount"] == 1
    assert {c["connectionId"] for c in backend.all_connections()} == {"spk-1", "lst-1b"}


def test_race_listener_old_disconnect_then_refresh_count_right(driver: Driver, backend: Any, session_id: str) -> None:
    driver.disconnect("lst-1")
    driver.refresh("lst-1b", session_id, "listener", language="es")
    assert backend.session(session_id)["listenerCount"] == 1
    assert backend.session(session_id)["languageCounts"] == {"es": 1}


def test_race_listener_handover_then_old_disconnect_twice_count_right(
    driver: Driver, backend: Any, session_id: str
) -> None:
    driver.refresh("lst-1b", session_id, "listener", language="es", resume_from="lst-1")
    driver.disconnect("lst-1")
    driver.disconnect("lst-1")  # and delivered twice
    assert backend.session(session_id)["listenerCount"] == 1
    assert backend.session(session_id)["languageCounts"] == {"es": 1}
    assert {c["connectionId"] for c in backend.all_connections()} == {"spk-1", "lst-1b"}


def test_race_listener_old_disconnect_then_handover_count_right(driver: Driver, backend: Any, session_id: str) -> None:
    driver.disconnect("lst-1")
    driver.refresh("lst-1b", session_id, "listener", language="es", resume_from="lst-1")
    assert backend.session(session_id)["listenerCount"] == 1
    assert backend.session(session_id)["languageCounts"] == {"es": 1}


def test_refresh_speaker_retried_on_same_connection_is_idempotent(
    driver: Driver, backend: Any, session_id: str
) -> None:
    driver.refresh("spk-2", session_id, "speaker", user_id="alice")
    again = driver.refresh("spk-2", session_id, "speaker", user_id="alice", connect=False)
    assert again["type"] == "connectionRefreshComplete"
    assert backend.session(session_id)["speakerConnectionId"] == "spk-2"


def test_refresh_listener_connection_cannot_become_speaker(driver: Driver, backend: Any, session_id: str) -> None:
    reply = driver.refresh("lst-1", session_id, "speaker", user_id="alice", connect=False)
    assert reply["code"] == "INVALID_PARAMETERS"
    assert backend.session(session_id)["speakerConnectionId"] == "spk-1"


def test_refresh_events_from_events_dir_parse(backend: Any) -> None:
    for name in ("refresh_speaker", "refresh_listener"):
        reply = body_of(refresh_connection.handler(load_event(name), None))
        assert reply["code"] == "SESSION_NOT_FOUND", name


def test_notifier_connection_without_record_not_delivered(backend: Any) -> None:
    assert notifier.handler(load_event("notifier_refresh_required"), None) == {"delivered": False}
    assert backend.management.posts == []


def test_notifier_warning_counts_down_to_the_cut(backend: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from broadcast import clock

    event = load_event("notifier_warning")
    monkeypatch.setattr(clock, "_now", lambda: (event["connectedAt"] + 6_300_000) / 1000)
    assert notifier.handler(event, None) == {"delivered": True}
    (warning,) = backend.management.messages_to(event["connectionId"], "connectionWarning")
    assert warning["remainingSeconds"] == 900


def test_notifier_gone_connection_not_delivered(driver: Driver, backend: Any) -> None:
    driver.connect("lst-1")
    backend.management.gone.add("lst-1")
    event = {"notification": "connectionRefreshRequired", "connectionId": "lst-1"}
    assert notifier.handler(event, None) == {"delivered": False}


def test_notifier_unknown_notification_raises_for_the_state_machine(backend: Any) -> None:
    with pytest.raises(service.InvalidParameters):
        notifier.handler({"notification": "bogus", "connectionId": "x"}, None)


def test_notifier_410_for_a_listener_whose_disconnect_never_came_uncounts_it(
    driver: Driver, backend: Any, session_id: str
) -> None:
    # GIVEN listener lst-1's connection is gone, and its $disconnect was lost (API Gateway: best effort)
    backend.management.gone.add("lst-1")
    # WHEN its timer's notice meets the 410
    event = {"notification": "connectionRefreshRequired", "connectionId": "lst-1"}
    assert notifier.handler(event, None) == {"delivered": False}
    # THEN it is uncounted and forgotten
    assert backend.session(session_id)["listenerCount"] == 0
    assert backend.connection("lst-1") is None


@pytest.mark.usefixtures("no_grace")
def test_notifier_410_for_the_current_speaker_ends_the_session(driver: Driver, backend: Any, session_id: str) -> None:
    # GIVEN the speaker's connection is gone and its $disconnect never arrived (no_grace: grace 0)
    backend.management.gone.add("spk-1")
    event = {"notification": "connectionWarning", "connectionId": "spk-1", "connectedAt": 0}
    assert notifier.handler(event, None) == {"delivered": False}
    # THEN the speaker-left path ran: the session ended and its listener was told
    assert backend.session(session_id)["isActive"] is False
    (ended,) = backend.management.messages_to("lst-1", "sessionEnded")
    assert ended["reason"] == "speakerDisconnected"


def test_notifier_410_for_an_old_speaker_connection_after_a_refresh_ends_nothing(
    driver: Driver, backend: Any, session_id: str
) -> None:
    driver.refresh("spk-2", session_id, "speaker", user_id="alice")
    backend.management.gone.add("spk-1")
    event = {"notification": "connectionWarning", "connectionId": "spk-1", "connectedAt": 0}
    assert notifier.handler(event, None) == {"delivered": False}
    assert backend.session(session_id)["isActive"] is True
    assert backend.session(session_id)["speakerConnectionId"] == "spk-2"
