"""Access patterns of the Sessions table; the transactions that span both tables live here too."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, NamedTuple

from broadcast import aws, clock, connections_table
from broadcast.config import settings
from broadcast.connections_table import Connection
from broadcast.dynamo import cancellation_reasons, from_item, retry_conflicts, to_item, values
from broadcast.errors import InvalidParameters, SessionFull, SessionNotFound


class Placed(NamedTuple):
    """A listener's place after add_listener or hand_over_listener: its `joinedAt`, and whether it
    was already there (the same join sent again after the first landed: nothing was written)."""

    joined_at: int
    repeated: bool = False


class SessionIdTaken(Exception):
    """The generated session id already exists; the caller draws another."""


class NotCurrentSpeaker(Exception):
    """The condition on the session's speaker failed; `session` is the item as it was, or None."""

    def __init__(self, session: Session | None) -> None:
        super().__init__("not the session's current speaker")
        self.session = session


@dataclass(frozen=True)
class Session:
    """A broadcast session as stored."""

    session_id: str
    speaker_user_id: str
    speaker_connection_id: str
    source_language: str
    is_active: bool
    listener_count: int
    language_counts: dict[str, int]
    created_at: int
    expires_at: int

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Session:
        """Build from a deserialized item."""
        return cls(
            session_id=record["sessionId"],
            speaker_user_id=record.get("speakerUserId", ""),
            speaker_connection_id=record.get("speakerConnectionId", ""),
            source_language=record.get("sourceLanguage", ""),
            is_active=bool(record.get("isActive", False)),
            listener_count=int(record.get("listenerCount", 0)),
            language_counts={k: int(v) for k, v in (record.get("languageCounts") or {}).items()},
            created_at=int(record.get("createdAt", 0)),
            expires_at=int(record.get("expiresAt", 0)),
        )


def _ddb() -> Any:
    return aws.client("dynamodb")


def _table() -> str:
    return settings().sessions_table


def _key(session_id: str) -> dict[str, Any]:
    return {"sessionId": {"S": session_id}}


def _is_conditional_failure(exc: Exception) -> bool:
    return aws.error_code(exc) == "ConditionalCheckFailedException"


def _is_cancelled(exc: Exception) -> bool:
    return aws.error_code(exc) == "TransactionCanceledException"


def _reason(exc: Exception, index: int) -> tuple[str, Session | None]:
    reasons = cancellation_reasons(exc)
    if index >= len(reasons):
        return "", None
    reason = reasons[index]
    record = from_item(reason.get("Item"))
    return reason.get("Code", ""), Session.from_record(record) if record else None


def get(session_id: str) -> Session | None:
    """The session, or None when no such id exists."""
    found = _ddb().get_item(TableName=_table(), Key=_key(session_id), ConsistentRead=True)
    record = from_item(found.get("Item"))
    return Session.from_record(record) if record else None


def create_with_speaker(session: Session, speaker: Connection) -> None:
    """Write a new session and make `speaker` its speaker connection, atomically.

    Raises SessionIdTaken when the id exists (no read-then-write race), InvalidParameters when
    the connection already belongs to a session.
    """
    item = to_item(
        {
            "sessionId": session.session_id,
            "speakerUserId": session.speaker_user_id,
            "speakerConnectionId": session.speaker_connection_id,
            "sourceLanguage": session.source_language,
            "isActive": True,
            "listenerCount": 0,
            "languageCounts": {},
            "createdAt": session.created_at,
            "expiresAt": session.expires_at,
        }
    )
    try:
        retry_conflicts(
            lambda: _ddb().transact_write_items(
                TransactItems=[
                    {
                        "Put": {
                            "TableName": _table(),
                            "Item": item,
                            "ConditionExpression": "attribute_not_exists(sessionId)",
                        }
                    },
                    connections_table.put_in_session(speaker, allow_repeat=False),
                ]
            )
        )
    except Exception as exc:
        if not _is_cancelled(exc):
            raise
        if _reason(exc, 0)[0] == "ConditionalCheckFailed":
            raise SessionIdTaken(session.session_id) from exc
        if _reason(exc, 1)[0] == "ConditionalCheckFailed":
            raise InvalidParameters("this connection already belongs to a session") from exc
        raise


def _write_listener(listener: Connection, before: list[dict[str, Any]]) -> int:
    """One transaction: the `before` items, then `listener`'s record as a member; returns its `joinedAt`.

    joinedAt is taken at each attempt, just before the write: the audio path counts the
    listener's start from it (service.audible_from), so it must not be earlier than the write
    by more than one attempt. Conflicts are retried; a cancellation is the caller's to read
    (the record's entry is at index len(before))."""
    joined_at: list[int] = []

    def write() -> Any:
        joined_at[:] = [clock.now_ms()]
        member = dataclasses.replace(listener, joined_at=joined_at[0])
        return _ddb().transact_write_items(
            TransactItems=[*before, connections_table.put_in_session(member, allow_repeat=False)]
        )

    retry_conflicts(write)
    return joined_at[0]


def _already_placed(exc: Exception, index: int, listener: Connection) -> Placed | None:
    """The `joinedAt` of `listener`'s own record when the write at `index` was refused because that
    record already holds this very place: the same join (or refresh) sent again after the first
    had landed. A handler that fails after its write is answered "Internal server error" by API
    Gateway, and the clients send the request again; it is answered as the first one would have
    been, and counted once. None for anything else (another session, role or language)."""
    reasons = cancellation_reasons(exc)
    if index >= len(reasons) or reasons[index].get("Code") != "ConditionalCheckFailed":
        return None
    old = from_item(reasons[index].get("Item"))
    if not old or "replacedBy" in old:
        return None
    record = Connection.from_record(old)
    if not record.is_listener_in(listener.session_id, listener.target_language) or not record.joined_at:
        return None
    return Placed(record.joined_at, repeated=True)


def add_listener(listener: Connection, *, max_listeners: int | None) -> Placed:
    """Record `listener` in its session and count it, in one transaction.

    With `max_listeners` the count must stay below it (SESSION_FULL); None for a place a
    resumeToken proves that could not be handed over (service._place_listener).
    """
    assert listener.session_id
    assert listener.target_language
    condition = "isActive = :true"
    names = {"#counts": "languageCounts", "#lang": listener.target_language}
    condition_values = values(true=True, one=1, zero=0)
    if max_listeners is not None:
        condition += " AND listenerCount < :max"
        condition_values.update(values(max=max_listeners))
    count = {
        "Update": {
            "TableName": _table(),
            "Key": _key(listener.session_id),
            "UpdateExpression": "ADD listenerCount :one SET #counts.#lang = if_not_exists(#counts.#lang, :zero) + :one",
            "ConditionExpression": condition,
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": condition_values,
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }
    }
    try:
        return Placed(_write_listener(listener, [count]))
    except Exception as exc:
        if not _is_cancelled(exc):
            raise
        if (placed := _already_placed(exc, 1, listener)) is not None:
            return placed
        code, old = _reason(exc, 0)
        if code == "ConditionalCheckFailed":
            if old is None or not old.is_active:
                raise SessionNotFound() from exc
            raise SessionFull() from exc
        if _reason(exc, 1)[0] == "ConditionalCheckFailed":
            raise InvalidParameters("this connection already belongs to a session") from exc
        raise


def hand_over_listener(listener: Connection, from_connection_id: str) -> Placed | None:
    """Give the place `from_connection_id` holds to `listener` (a refresh), counting nothing twice.

    One transaction: the session must be active, the old record is marked `replacedBy` (it
    stays, and keeps hearing frames, until its connection closes, but no longer counts) and the
    new record is written. So a hall at its capacity stays joinable while its listeners refresh:
    counting the old connection until its `$disconnect` made every refresh wave look like a
    full session to the joins in it. None when there is no such place to hand over (the old
    record is gone, was handed over already, or holds another language): the caller counts the
    listener as a place of its own.
    """
    assert listener.session_id
    assert listener.target_language
    active = {
        "ConditionCheck": {
            "TableName": _table(),
            "Key": _key(listener.session_id),
            "ConditionExpression": "isActive = :true",
            "ExpressionAttributeValues": values(true=True),
        }
    }
    hand_over = connections_table.hand_over(
        from_connection_id, listener.session_id, listener.target_language, listener.connection_id
    )
    try:
        return Placed(_write_listener(listener, [active, hand_over]))
    except Exception as exc:
        if not _is_cancelled(exc):
            raise
        if (placed := _already_placed(exc, 2, listener)) is not None:
            return placed
        if _reason(exc, 0)[0] == "ConditionalCheckFailed":
            raise SessionNotFound() from exc
        if _reason(exc, 2)[0] == "ConditionalCheckFailed":
            raise InvalidParameters("this connection already belongs to a session") from exc
        if _reason(exc, 1)[0] == "ConditionalCheckFailed":
            return None
        raise


def remove_listener(
    connection_id: str, session_id: str, target_language: str, *, retry: bool = True, patience: float | None = None
) -> bool:
    """Delete a listener's record and uncount it in one transaction; False when it was already gone.

    `retry=False` makes one attempt only: a conflict is raised to the caller (a 410 cleanup on the
    audio path, which leaves it to the next 410, the `$disconnect` or the timer's sweep).
    `patience` retries conflicts for that many seconds instead of a number of attempts."""
    try:
        retry_conflicts(
            lambda: _ddb().transact_write_items(
                TransactItems=[
                    connections_table.delete_listener(connection_id, session_id),
                    {
                        "Update": {
                            "TableName": _table(),
                            "Key": _key(session_id),
                            "UpdateExpression": "ADD listenerCount :minus SET #counts.#lang = #counts.#lang - :one",
                            "ConditionExpression": "listenerCount > :zero AND #counts.#lang > :zero",
                            "ExpressionAttributeNames": {"#counts": "languageCounts", "#lang": target_language},
                            "ExpressionAttributeValues": values(minus=-1, one=1, zero=0),
                        }
                    },
                ]
            ),
            attempts=None if retry else 1,
            patience=patience if retry else None,
        )
        return True
    except Exception as exc:
        if not _is_cancelled(exc):
            raise
        if _reason(exc, 0)[0] == "ConditionalCheckFailed":
            old = from_item(cancellation_reasons(exc)[0].get("Item"))
            if old and "replacedBy" in old:
                # Its place went to a newer connection (hand_over_listener), which counts it now.
                return connections_table.delete_handed_over(connection_id, session_id, attempts=None if retry else 1)
            return False  # already removed: a repeated $disconnect or a 410 cleanup got there first
        if _reason(exc, 1)[0] == "ConditionalCheckFailed":
            # The session is gone (TTL) or its count is already zero: never go below zero,
            # but the listener's own record must still go.
            connections_table.delete(connection_id)
            return True
        raise


def swap_speaker_connection(speaker: Connection, *, user_id: str, expires_at: int) -> None:
    """Make `speaker` the session's speaker connection if `user_id` owns the active session.

    One transaction: the session's conditional update and the new connection's record. Raises
    NotCurrentSpeaker carrying the old item, so that the caller tells 403 from 404 without a read.
    """
    assert speaker.session_id
    try:
        retry_conflicts(
            lambda: _ddb().transact_write_items(
                TransactItems=[
                    {
                        "Update": {
                            "TableName": _table(),
                            "Key": _key(speaker.session_id),
                            "UpdateExpression": (
                                "SET speakerConnectionId = :conn, expiresAt = :exp REMOVE speakerGoneAt"
                            ),
                            "ConditionExpression": "isActive = :true AND speakerUserId = :uid",
                            "ExpressionAttributeValues": values(
                                conn=speaker.connection_id, exp=expires_at, true=True, uid=user_id
                            ),
                            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                        }
                    },
                    connections_table.put_in_session(speaker, allow_repeat=True),
                ]
            )
        )
    except Exception as exc:
        if not _is_cancelled(exc):
            raise
        code, old = _reason(exc, 0)
        if code == "ConditionalCheckFailed":
            raise NotCurrentSpeaker(old) from exc
        if _reason(exc, 1)[0] == "ConditionalCheckFailed":
            raise InvalidParameters("this connection already belongs to a session") from exc
        raise


def end_if_current_speaker(session_id: str, connection_id: str, *, reason: str, expires_at: int) -> bool:
    """Mark the session inactive if `connection_id` is still its speaker connection; True if it ended now."""
    return _end(
        session_id,
        condition="isActive = :true AND speakerConnectionId = :conn",
        condition_values=values(conn=connection_id),
        reason=reason,
        expires_at=expires_at,
    )


def end_if_speaker_gone(session_id: str, connection_id: str, *, reason: str, expires_at: int) -> bool:
    """End the session if its speaker connection is still the one that left during the grace period."""
    return _end(
        session_id,
        condition="isActive = :true AND speakerConnectionId = :conn AND attribute_exists(speakerGoneAt)",
        condition_values=values(conn=connection_id),
        reason=reason,
        expires_at=expires_at,
    )


def end_by_speaker(session_id: str, user_id: str, *, reason: str, expires_at: int) -> None:
    """End an active session owned by `user_id`; raises NotCurrentSpeaker with the old item otherwise."""
    _end(
        session_id,
        condition="isActive = :true AND speakerUserId = :uid",
        condition_values=values(uid=user_id),
        reason=reason,
        expires_at=expires_at,
        raise_old=True,
    )


def _end(
    session_id: str,
    *,
    condition: str,
    condition_values: dict[str, Any],
    reason: str,
    expires_at: int,
    raise_old: bool = False,
) -> bool:
    try:
        retry_conflicts(
            lambda: _ddb().update_item(
                TableName=_table(),
                Key=_key(session_id),
                UpdateExpression="SET isActive = :false, endReason = :reason, expiresAt = :exp",
                ConditionExpression=condition,
                ExpressionAttributeValues={
                    **condition_values,
                    **values(true=True, false=False, reason=reason, exp=expires_at),
                },
                ReturnValuesOnConditionCheckFailure="ALL_OLD" if raise_old else "NONE",
            )
        )
        return True
    except Exception as exc:
        if not _is_conditional_failure(exc):
            raise
        if raise_old:
            record = from_item(getattr(exc, "response", {}).get("Item"))
            raise NotCurrentSpeaker(Session.from_record(record) if record else None) from exc
        return False


def mark_speaker_gone(session_id: str, connection_id: str, *, at: int) -> bool:
    """Note that the current speaker connection left, starting the grace period; False if it was not current."""
    try:
        retry_conflicts(
            lambda: _ddb().update_item(
                TableName=_table(),
                Key=_key(session_id),
                UpdateExpression="SET speakerGoneAt = :at",
                ConditionExpression="isActive = :true AND speakerConnectionId = :conn",
                ExpressionAttributeValues=values(at=at, true=True, conn=connection_id),
            )
        )
        return True
    except Exception as exc:
        if not _is_conditional_failure(exc):
            raise
        return False
