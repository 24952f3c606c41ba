"""Conversions between Python values and DynamoDB's attribute-value format (low-level client)."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any, TypeVar

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

T = TypeVar("T")
_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


def to_item(values: dict[str, Any]) -> dict[str, Any]:
    """Serialize a plain dict, leaving out None values."""
    return {k: _serializer.serialize(v) for k, v in values.items() if v is not None}


def from_item(item: dict[str, Any] | None) -> dict[str, Any] | None:
    """Deserialize an item; numbers come back as int (this schema stores no fractions)."""
    if not item:
        return None
    return {k: _plain(_deserializer.deserialize(v)) for k, v in item.items()}


def values(**named: Any) -> dict[str, Any]:
    """ExpressionAttributeValues from keyword arguments: values(uid='a') -> {':uid': {'S': 'a'}}."""
    return {f":{k}": _serializer.serialize(v) for k, v in named.items()}


def _plain(value: Any) -> Any:
    from decimal import Decimal

    if isinstance(value, Decimal):
        return int(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def cancellation_reasons(exc: BaseException) -> list[dict[str, Any]]:
    """The per-item reasons of a TransactionCanceledException, each with its Code and maybe its old Item."""
    response = getattr(exc, "response", None) or {}
    return list(response.get("CancellationReasons", []))


# Overlapping transactions on one item are cancelled with TransactionConflict, and a plain write
# to an item inside a transaction gets TransactionConflictException; botocore retries neither.
# A hall's joins, leaves and refreshes all write the session item, so they are retried here with
# full jitter: 14 attempts wait at most 20 + 40 + ... + 320 ms, then 500 ms each (4.6 s in all,
# half that on average), inside every handler's 10 s timeout; 20 listeners joining in the same
# instant all get in (tests/unit/test_contention.py), on a loaded two-core machine too (10
# attempts, 3.1 s, left one of 20 out there once).
CONFLICT_ATTEMPTS = 14
CONFLICT_BASE_SECONDS = 0.02
CONFLICT_MAX_PAUSE_SECONDS = 0.5
# A $disconnect has nobody waiting on it, and a hall whose talk ends sends its 500 at once: one
# after another on the session item they take longer than 14 attempts (about 10 s in the local
# stack, 500 transactions of tens of milliseconds each on AWS). So it retries for this long
# instead, inside DisconnectFunction's 30 s timeout with StopExecution's retries after it
# (tests/unit/test_contention.py keeps the sum).
LEAVE_PATIENCE_SECONDS = 15.0


def is_conflict(exc: BaseException) -> bool:
    """A write that lost to a concurrent transaction and may simply be tried again."""
    response = getattr(exc, "response", None)
    code = str((response or {}).get("Error", {}).get("Code", "")) if isinstance(response, dict) else ""
    if code == "TransactionConflictException":
        return True
    if code != "TransactionCanceledException":
        return False
    codes = {reason.get("Code") for reason in cancellation_reasons(exc)}
    return "TransactionConflict" in codes and "ConditionalCheckFailed" not in codes


def retry_conflicts(write: Callable[[], T], *, attempts: int | None = None, patience: float | None = None) -> T:
    """Run `write`, again after a jittered pause whenever a concurrent transaction got there first
    (`attempts` in all, CONFLICT_ATTEMPTS unless given; 1 raises the first conflict). With
    `patience`, attempts go on instead for as long as the next pause ends within that many seconds."""
    attempts = attempts or CONFLICT_ATTEMPTS
    give_up = time.monotonic() + patience if patience is not None else None
    attempt = 0
    while True:
        try:
            return write()
        except Exception as exc:
            if not is_conflict(exc):
                raise
            pause = random.uniform(0, min(CONFLICT_MAX_PAUSE_SECONDS, CONFLICT_BASE_SECONDS * 2 ** min(attempt, 10)))
            attempt += 1
            if time.monotonic() + pause > give_up if give_up is not None else attempt >= attempts:
                raise
            from broadcast.observability import count

            count("TransactionConflictsRetried")
            time.sleep(pause)
