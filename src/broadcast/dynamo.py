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


def retry_conflicts(write: Callable[[], T], *, attempts: int | None = None) -> T:
    """Run `write`, again after a jittered pause whenever a concurrent transaction got there first
    (`attempts` in all, CONFLICT_ATTEMPTS unless given; 1 raises the first conflict)."""
    attempts = attempts or CONFLICT_ATTEMPTS
    for attempt in range(attempts):
        try:
            return write()
        except Exception as exc:
            if attempt == attempts - 1 or not is_conflict(exc):
                raise
            from broadcast.observability import count

            count("TransactionConflictsRetried")
            time.sleep(random.uniform(0, min(CONFLICT_MAX_PAUSE_SECONDS, CONFLICT_BASE_SECONDS * 2**attempt)))
    raise AssertionError("unreachable")
