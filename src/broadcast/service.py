"""The domain operations behind every route; handlers only parse events and call one of these."""

from __future__ import annotations

import dataclasses
import secrets
from functools import cache
from importlib import resources
from typing import Any

from broadcast import (
    audio_routes,
    aws,
    clock,
    connections_table,
    dynamo,
    messenger,
    protocol,
    rate_limits_table,
    resume_tokens,
    sessions_table,
    timer,
)
from broadcast.caller import Caller
from broadcast.config import settings
from broadcast.connections_table import Connection
from broadcast.errors import (
    BroadcastError,
    ConnectionGone,
    Forbidden,
    InternalError,
    InvalidParameters,
    SessionFull,
    SessionNotFound,
    Unauthorized,
)
from broadcast.observability import count, count_by, logger

SESSION_ID_ATTEMPTS = 8
ENDED_SESSION_RETENTION_SECONDS = 3600
# Close codes a client sends on purpose (1005: a close frame without a code, as browsers send).
# Anything else (1006 abnormal, 1001 API Gateway's cut or idle timeout, ...) is a dropped connection.
DELIBERATE_CLOSE_CODES = frozenset({1000, 1005})


def _connection_ttl(connected_at: int) -> int:
    return connected_at // 1000 + settings().connection_ttl_seconds


def _session_ttl() -> int:
    return clock.now_seconds() + settings().session_ttl_seconds


def _ended_ttl() -> int:
    return clock.now_seconds() + ENDED_SESSION_RETENTION_SECONDS


# --- $connect / $disconnect ------------------------------------------------------------------


def connect(caller: Caller) -> None:
    """Register the connection and start its timer. Posts nothing: API Gateway would answer 410.

    Raises RateLimitExceeded (the handshake gets 429) when the source IP connects too often.
    """
    rate_limits_table.hit(
        "connect", caller.source_ip or "unknown", limit=settings().connects_per_ip_per_minute, window_seconds=60
    )
    connections_table.register(
        Connection(
            connection_id=caller.connection_id,
            connected_at=caller.connected_at,
            ttl=_connection_ttl(caller.connected_at),
            user_id=caller.user_id,
        )
    )
    try:
        timer.start_for_connection(caller.connection_id, caller.connected_at)
    except timer.TimerNotStarted:
        # The connection stays: the client's own fallback timer refreshes it before the 2 h cut.
        logger.warning("connection timer not started", extra={"connectionId": caller.connection_id})
        count("TimerStartFailed")


def disconnect(caller: Caller) -> None:
    """Forget the connection, then stop its timer. Idempotent: a repeated delivery finds no record.

    A listener's uncounting retries its conflicts for LEAVE_PATIENCE_SECONDS (a hall leaving at
    once). If forgetting still fails, the timer is left running: its next notice meets a 410
    and forgets the record then, so nothing stays counted for good."""
    _forget(
        caller.connection_id,
        deliberate=caller.disconnect_status in DELIBERATE_CLOSE_CODES,
        patience=dynamo.LEAVE_PATIENCE_SECONDS,
    )
    timer.stop_for_connection(caller.connection_id)


def _forget(connection_id: str, *, deliberate: bool, patience: float | None = None) -> None:
    """A connection is gone ($disconnect, or a 410 when $disconnect never came): uncount it, or let its speaker go."""
    record = connections_table.get(connection_id)
    if record is None:
        return
    if record.role == "listener" and record.session_id and record.target_language:
        sessions_table.remove_listener(
            record.connection_id, record.session_id, record.target_language, patience=patience
        )
        return
    if record.role == "speaker" and record.session_id:
        _speaker_left(record.session_id, record.connection_id, deliberate=deliberate)
    connections_table.delete(record.connection_id)


def _speaker_left(session_id: str, connection_id: str, *, deliberate: bool) -> None:
    """The speaker connection closed: end the session if it was the current one.

    A deliberate close ends it at once; a dropped connection gets SPEAKER_GRACE_SECONDS for the
    speaker to come back with refreshConnection from a new connection.
    """
    if settings().speaker_grace_seconds > 0 and not deliberate:
        if not sessions_table.mark_speaker_gone(session_id, connection_id, at=clock.now_ms()):
            return  # an old connection after a refresh, or the session already ended
        try:
            timer.start_speaker_grace(session_id, connection_id)
            return
        except timer.TimerNotStarted:
            logger.warning("grace timer not started; ending now", extra={"sessionId": session_id})
            count("TimerStartFailed")
    if sessions_table.end_if_current_speaker(
        session_id, connection_id, reason="speakerDisconnected", expires_at=_ended_ttl()
    ):
        _announce_end(session_id, "speakerDisconnected")


def speaker_grace_expired(session_id: str, connection_id: str) -> bool:
    """End the session if its speaker has not come back within the grace period; True if it ended."""
    ended = sessions_table.end_if_speaker_gone(
        session_id, connection_id, reason="speakerDisconnected", expires_at=_ended_ttl()
    )
    if ended:
        _announce_end(session_id, "speakerDisconnected")
    return ended


def _announce_end(session_id: str, reason: str) -> list[str]:
    """Tell every listener the session ended; returns the listener connection ids."""
    listeners = list(connections_table.listeners_of(session_id))
    broadcast_to(session_id, listeners, protocol.message("sessionEnded", sessionId=session_id, reason=reason))
    count("SessionsEnded")
    return [connection_id for connection_id, _ in listeners]


def broadcast_to(session_id: str, listeners: list[tuple[str, str]], message: dict[str, Any]) -> list[str]:
    """Post `message` to listeners in parallel; a 410 removes that listener (never the sender).

    Returns the connection ids that answered 410. Connections already known gone in this
    container are not posted to (audio_routes.mark_gone)."""
    languages = {c: lang for c, lang in listeners if not audio_routes.is_gone(c)}
    gone, failed = messenger.post_many(languages, message)
    # After every post went out, each on its own and in one attempt, and only by the first
    # invocation in this container to meet that 410: a cleanup that fails (throttled, or in
    # conflict with the $disconnect removing the same record) never fails a frame that was
    # delivered nor holds the invocation in conflict retries; the $disconnect, another
    # container's 410 or the timer's notice finishes it.
    removed = 0
    for connection_id in audio_routes.mark_gone(gone):
        try:
            sessions_table.remove_listener(connection_id, session_id, languages[connection_id], retry=False)
            removed += 1
        except Exception as exc:  # noqa: BLE001 - best effort, logged: the frame was delivered
            logger.warning(
                "stale listener not removed",
                extra={"sessionId": session_id, "errorCode": aws.error_code(exc) or type(exc).__name__},
            )
    if removed:
        count("StaleConnectionsRemoved", removed)
    if failed:
        logger.warning("posts failed", extra={"sessionId": session_id, "failed": len(failed)})
    return gone


# --- session routes --------------------------------------------------------------------------


@cache
def _words() -> tuple[tuple[str, ...], tuple[str, ...]]:
    import json

    data = json.loads(resources.files("broadcast").joinpath("data/words.json").read_text("utf-8"))
    return tuple(data["adjectives"]), tuple(data["nouns"])


def new_session_id() -> str:
    """A human-readable id {adjective}-{noun}-{NNN}, e.g. golden-eagle-427."""
    adjectives, nouns = _words()
    return f"{secrets.choice(adjectives)}-{secrets.choice(nouns)}-{secrets.randbelow(1000):03d}"


def create_session(caller: Caller, body: dict[str, Any]) -> dict[str, Any]:
    """Create a session with the caller as its speaker; the id is reserved by a conditional write."""
    if not caller.authenticated:
        raise Unauthorized("creating a session needs a valid token")
    source_language = protocol.require_language(body, "sourceLanguage")
    audio_format = protocol.require_audio_format(body)
    assert caller.user_id
    rate_limits_table.hit(
        "createSession", caller.user_id, limit=settings().sessions_per_user_per_hour, window_seconds=3600
    )
    for _ in range(SESSION_ID_ATTEMPTS):
        session_id = new_session_id()
        session = sessions_table.Session(
            session_id=session_id,
            speaker_user_id=caller.user_id,
            speaker_connection_id=caller.connection_id,
            source_language=source_language,
            is_active=True,
            listener_count=0,
            language_counts={},
            created_at=clock.now_ms(),
            expires_at=_session_ttl(),
        )
        speaker = _member(caller, session_id, "speaker")
        try:
            sessions_table.create_with_speaker(session, speaker)
        except sessions_table.SessionIdTaken:
            continue
        count("SessionsCreated")
        logger.info("session created", extra={"sessionId": session_id, "connectionId": caller.connection_id})
        return protocol.message(
            "sessionCreated", sessionId=session_id, sourceLanguage=source_language, audioFormat=audio_format
        )
    raise InternalError("could not allocate a session id")


def _member(caller: Caller, session_id: str, role: str, target_language: str | None = None) -> Connection:
    return Connection(
        connection_id=caller.connection_id,
        connected_at=caller.connected_at,
        ttl=_connection_ttl(caller.connected_at),
        user_id=caller.user_id,
        session_id=session_id,
        role=role,
        target_language=target_language,
    )


def _active_session(session_id: str) -> sessions_table.Session:
    session = sessions_table.get(session_id)
    if session is None or not session.is_active:
        raise SessionNotFound(f"session {session_id} not found or not active")
    return session


def join_session(caller: Caller, body: dict[str, Any]) -> dict[str, Any]:
    """Join as a listener: one read for the reply's fields, one transaction that records and counts."""
    session_id = protocol.require_session_id(body)
    target_language = protocol.require_language(body, "targetLanguage")
    session = _admit_listener(caller, session_id, target_language)
    count("ListenersJoined")
    return protocol.message(
        "sessionJoined",
        sessionId=session_id,
        sourceLanguage=session.source_language,
        targetLanguage=target_language,
        listenerCount=session.listener_count,
        audioFormat=protocol.AUDIO_FORMAT,
        resumeToken=resume_tokens.issue(session_id, caller.connection_id),
    )


def _admit_listener(caller: Caller, session_id: str, target_language: str) -> sessions_table.Session:
    """A new place in the session: the join rate limit, then the capacity check inside the write.
    The session as read before, its count taking this listener in."""
    rate_limits_table.hit(
        "joinSession", caller.source_ip or "unknown", limit=settings().joins_per_ip_per_minute, window_seconds=60
    )
    session = _active_session(session_id)
    limit = settings().max_listeners
    if session.listener_count >= limit and not _may_hold_place(caller.connection_id, session_id, target_language):
        raise SessionFull(f"session {session_id} has reached {limit} listeners")
    if _place_listener(caller, session_id, target_language, max_listeners=limit):
        return session  # its read already counted it
    return dataclasses.replace(session, listener_count=session.listener_count + 1)


def _may_hold_place(connection_id: str, session_id: str, target_language: str) -> bool:
    """Whether this connection is already this session's listener in this language (a join sent
    again after the first landed): the write decides then (sessions_table._already_placed)."""
    record = connections_table.get(connection_id)
    return record is not None and record.is_listener_in(session_id, target_language)


def _place_listener(
    caller: Caller, session_id: str, target_language: str, *, max_listeners: int | None, holder: str | None = None
) -> bool:
    """Record and count the listener, then return once it hears every frame from here on; True
    when it was placed already (the same request sent again after the first landed).

    `holder`: the connection whose place a valid resumeToken proves (a refresh). Its place is
    handed over, counting nothing twice; when there is none to hand over (its record already
    went: its `$disconnect` landed first, or this is a rejoin after a drop), the token still
    proves the place, so it is counted again without the capacity check (`max_listeners` None).

    Frames reach it from `audible_from(joinedAt)` (send_audio); the reply (sessionJoined or
    connectionRefreshComplete) waits until then, so a client that starts listening at the reply,
    or closes its old connection at it, as the protocol says, misses nothing. The wait is the
    route cache's bound plus AUDIO_START_MARGIN_MS, about two seconds."""
    member = _member(caller, session_id, "listener", target_language)
    placed = None
    if holder is not None and holder != caller.connection_id:
        placed = sessions_table.hand_over_listener(member, holder)
    if placed is None:
        placed = sessions_table.add_listener(member, max_listeners=max_listeners)
    clock.sleep_until(audible_from(placed.joined_at))
    return placed.repeated


def audible_from(joined_at: int) -> int:
    """When frames start for a listener that joined at `joined_at` (service clock, ms).

    By then every audio route in use was read after its join had landed and the session index
    had caught up (AUDIO_START_MARGIN_MS, real milliseconds), since a route is used for at most
    AUDIO_ROUTE_CACHE_MS: so every container posts to it from then on, and none before. Posting
    as soon as one route had it let a frame reach it from a fresh route and the next one miss it
    from an older route in another container: a hole right after its first frame."""
    return joined_at + start_delay_ms()


def start_delay_ms() -> int:
    """AUDIO_ROUTE_CACHE_MS plus AUDIO_START_MARGIN_MS (real milliseconds), on the service clock."""
    return settings().audio_route_cache_ms + clock.physical_ms(settings().audio_start_margin_ms)


def refresh_connection(caller: Caller, body: dict[str, Any]) -> dict[str, Any]:
    """Hand a session role over to this (new) connection; the old one keeps working until it closes."""
    session_id = protocol.require_session_id(body)
    role = protocol.require_role(body)
    try:
        if role == "speaker":
            reply = _refresh_speaker(caller, session_id)
        else:
            reply = _refresh_listener(caller, session_id, body)
    except BroadcastError as exc:
        count_by("RefreshFailed", "code", exc.code)
        raise
    except Exception:
        count_by("RefreshFailed", "code", "INTERNAL_ERROR")
        raise
    count_by("RefreshCompleted", "role", role)
    return reply


def _refresh_speaker(caller: Caller, session_id: str) -> dict[str, Any]:
    if not caller.authenticated:
        raise Unauthorized("a speaker refresh needs a valid token")
    assert caller.user_id
    try:
        sessions_table.swap_speaker_connection(
            _member(caller, session_id, "speaker"), user_id=caller.user_id, expires_at=_session_ttl()
        )
    except sessions_table.NotCurrentSpeaker as exc:
        if exc.session is None or not exc.session.is_active:
            raise SessionNotFound(f"session {session_id} not found or not active") from exc
        raise Forbidden("only the session's speaker may refresh as speaker") from exc
    logger.info("speaker refreshed", extra={"sessionId": session_id, "connectionId": caller.connection_id})
    return protocol.message("connectionRefreshComplete", sessionId=session_id, role="speaker")


def _refresh_listener(caller: Caller, session_id: str, body: dict[str, Any]) -> dict[str, Any]:
    target_language = protocol.require_language(body, "targetLanguage")
    token = protocol.optional_resume_token(body)
    holder = resume_tokens.holder(token, session_id)
    if holder is None:
        # No proof of a place already held: a join like any other (capacity and join limits apply).
        session = _admit_listener(caller, session_id, target_language)
    else:
        session = _active_session(session_id)
        _place_listener(caller, session_id, target_language, max_listeners=None, holder=holder)
    return protocol.message(
        "connectionRefreshComplete",
        sessionId=session_id,
        role="listener",
        targetLanguage=target_language,
        sourceLanguage=session.source_language,
        audioFormat=protocol.AUDIO_FORMAT,
        resumeToken=resume_tokens.issue(session_id, caller.connection_id),
    )


def session_status(caller: Caller) -> dict[str, Any]:
    """The status of the caller's own session (speaker or listener)."""
    record = connections_table.get(caller.connection_id)
    if record is None or not record.session_id:
        raise Forbidden("this connection has not joined or created a session")
    session = sessions_table.get(record.session_id)
    if session is None:
        raise SessionNotFound(f"session {record.session_id} no longer exists")
    return protocol.message(
        "sessionStatus",
        sessionId=session.session_id,
        isActive=session.is_active,
        listenerCount=session.listener_count,
        languages={code: n for code, n in sorted(session.language_counts.items()) if n > 0},
    )


def send_audio(caller: Caller, body: dict[str, Any]) -> None:
    """Relay one frame from the session's speaker to every listener, in parallel; no reply on success.

    Who the speaker and the listeners are comes from audio_routes: read once, then reused for
    AUDIO_ROUTE_CACHE_MS, so a steady stream of frames reads nothing from DynamoDB.
    """
    seq, audio = protocol.require_audio_frame(body)
    # Every route in use now was read after `started - AUDIO_ROUTE_CACHE_MS` (a route read for
    # this frame, after `started`): a listener is posted to from `audible_from` on, never before.
    started = clock.now_ms()
    route = audio_routes.get_or_read(caller.connection_id, settings().audio_route_cache_ms, lambda: _read_route(caller))
    # Either connection of the speaker may send during a handover; both carry the speaker's sub.
    if not caller.user_id or caller.user_id != route.speaker_user_id:
        raise Forbidden("only the session's speaker may send audio")
    joined_by = started - start_delay_ms()  # audible_from(joinedAt) <= started, taken once per frame
    broadcast_to(
        route.session_id,
        [(c, lang) for c, lang in route.listeners.items() if route.joined_at.get(c, 0) <= joined_by],
        protocol.message("audio", sessionId=route.session_id, seq=seq, audio=audio),
    )


def _read_route(caller: Caller) -> audio_routes.Route:
    """Read (and cache) the caller's session and audience; refuses anyone but its active speaker."""
    audio_routes.forget(caller.connection_id)
    record = connections_table.get(caller.connection_id)
    if record is None or record.role != "speaker" or not record.session_id:
        raise Forbidden("only the session's speaker may send audio")
    session = sessions_table.get(record.session_id)
    if session is None or not session.is_active:
        raise SessionNotFound(f"session {record.session_id} is not active")
    # The audience is what the index held when its Query began, so that is the route's age (the
    # listeners' start rests on it: audible_from). Not earlier: a read longer than the cache's
    # bound would never be reused, and every frame would read again.
    read_at = clock.now_ms()
    listeners = dict(connections_table.listeners_of(session.session_id))
    joined = audio_routes.joined_at(list(listeners), connections_table.joined_at_of)
    route = audio_routes.Route(
        session.session_id,
        session.speaker_user_id or "",
        {c: lang for c, lang in listeners.items() if c in joined},  # a record gone since the query: left
        read_at,
        joined,
    )
    audio_routes.put(caller.connection_id, route)
    return route


def end_session(caller: Caller, body: dict[str, Any]) -> dict[str, Any]:
    """The speaker ends the session: everyone in it hears `sessionEnded`, listeners' timers stop."""
    record = connections_table.get(caller.connection_id)
    if record is None or not record.session_id:
        raise Forbidden("this connection has not joined or created a session")
    if not caller.user_id:
        raise Forbidden("only the session's speaker may end it")
    try:
        sessions_table.end_by_speaker(
            record.session_id, caller.user_id, reason="endedBySpeaker", expires_at=_ended_ttl()
        )
    except sessions_table.NotCurrentSpeaker as exc:
        if exc.session is None or not exc.session.is_active:
            raise SessionNotFound(f"session {record.session_id} not found or not active") from exc
        raise Forbidden("only the session's speaker may end it") from exc
    listener_ids = _announce_end(record.session_id, "endedBySpeaker")
    _stop_timers(listener_ids)
    return protocol.message("sessionEnded", sessionId=record.session_id, reason="endedBySpeaker")


def _stop_timers(connection_ids: list[str]) -> None:
    """Stop the listeners' timers in parallel, best effort (a timer left running ends on its own)."""
    from concurrent.futures import ThreadPoolExecutor

    if not connection_ids:
        return
    with ThreadPoolExecutor(max_workers=min(16, len(connection_ids))) as pool:
        list(pool.map(timer.stop_for_connection, connection_ids))


# --- timer notifications ---------------------------------------------------------------------


def notify(event: dict[str, Any]) -> dict[str, Any]:
    """Deliver a timer notification; {'delivered': False} when the connection is gone (the timer then ends)."""
    kind = event.get("notification")
    connection_id = event.get("connectionId")
    if not isinstance(connection_id, str) or not connection_id:
        raise InvalidParameters("connectionId is required")
    if kind == "speakerGraceExpired":
        session_id = event.get("sessionId")
        if not isinstance(session_id, str):
            raise InvalidParameters("sessionId is required")
        return {"delivered": True, "ended": speaker_grace_expired(session_id, connection_id)}
    if kind == "connectionCut":
        return {"removed": _forget_after_cut(connection_id)}
    if kind == "connectionRefreshRequired":
        message = _refresh_required_message(connection_id)
        if message is None:
            return {"delivered": False}
    elif kind == "connectionWarning":
        connected_at = int(event.get("connectedAt") or 0)
        cut_at = connected_at + settings().max_connection_seconds * 1000
        message = protocol.message("connectionWarning", remainingSeconds=max(0, (cut_at - clock.now_ms()) // 1000))
    else:
        raise InvalidParameters(f"unknown notification {kind!r}")
    try:
        messenger.post(connection_id, message)
    except ConnectionGone:
        # API Gateway delivers $disconnect best effort: a 410 here may be all we ever hear. A
        # speaker connection that is still the session's current one starts the speaker-left
        # path (grace, then sessionEnded), so no session stays active without its speaker.
        _forget(connection_id, deliberate=False)
        count("StaleConnectionsRemoved")
        return {"delivered": False}
    return {"delivered": True}


def _forget_after_cut(connection_id: str) -> bool:
    """Past the 2-hour cut the connection cannot exist: forget a record that outlived it; True if one did.

    Reached only when $disconnect never came and no post met a 410 since the warning.
    """
    if connections_table.get(connection_id) is None:
        return False
    _forget(connection_id, deliberate=False)
    count("StaleConnectionsRemoved")
    logger.info("record removed after the cut", extra={"connectionId": connection_id})
    return True


def _refresh_required_message(connection_id: str) -> dict[str, Any] | None:
    record = connections_table.get(connection_id)
    if record is None:
        return None
    fields: dict[str, Any] = {"refreshBy": record.connected_at + settings().max_connection_seconds * 1000}
    if record.session_id and record.role:
        fields.update(sessionId=record.session_id, role=record.role)
        if record.role == "listener":
            fields["targetLanguage"] = record.target_language
    return protocol.message("connectionRefreshRequired", **fields)
