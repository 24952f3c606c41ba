"""Access patterns of the Connections table (one item per live WebSocket connection)."""

from __future__ import annotations

import itertools
import random
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from broadcast import aws
from broadcast.config import settings
from broadcast.dynamo import from_item, retry_conflicts, to_item, values

SESSION_INDEX = "sessionId-targetLanguage-index"


@dataclass(frozen=True)
class Connection:
    """A connection record; `session_id` and `role` are set once the connection joins or creates a session."""

    connection_id: str
    connected_at: int
    ttl: int
    user_id: str | None = None
    session_id: str | None = None
    role: str | None = None
    target_language: str | None = None
    joined_at: int | None = None  # a listener's: when its join was written (service clock, ms)

    def as_item(self) -> dict[str, Any]:
        """The DynamoDB item for this record."""
        return to_item(
            {
                "connectionId": self.connection_id,
                "connectedAt": self.connected_at,
                "ttl": self.ttl,
                "userId": self.user_id or None,
                "sessionId": self.session_id,
                "role": self.role,
                "targetLanguage": self.target_language,
                "joinedAt": self.joined_at,
            }
        )

    def is_listener_in(self, session_id: str | None, target_language: str | None) -> bool:
        """Whether this record is a listener of `session_id` in `target_language`."""
        return (self.session_id, self.role, self.target_language) == (session_id, "listener", target_language)

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Connection:
        """Build from a deserialized item."""
        return cls(
            connection_id=record["connectionId"],
            connected_at=int(record.get("connectedAt", 0)),
            ttl=int(record.get("ttl", 0)),
            user_id=record.get("userId"),
            session_id=record.get("sessionId"),
            role=record.get("role"),
            target_language=record.get("targetLanguage"),
            joined_at=int(record["joinedAt"]) if "joinedAt" in record else None,
        )


def _ddb() -> Any:
    return aws.client("dynamodb")


def _table() -> str:
    return settings().connections_table


def register(connection: Connection) -> None:
    """Record a new connection ($connect); a retried delivery simply writes the same item again."""
    retry_conflicts(lambda: _ddb().put_item(TableName=_table(), Item=connection.as_item()))


def get(connection_id: str) -> Connection | None:
    """The connection's record, or None when it is gone."""
    found = _ddb().get_item(TableName=_table(), Key={"connectionId": {"S": connection_id}}, ConsistentRead=True)
    record = from_item(found.get("Item"))
    return Connection.from_record(record) if record else None


def joined_at_of(connection_ids: list[str]) -> dict[str, int]:
    """When each of these listeners joined, read strongly consistent (BatchGetItem, 100 keys a call).

    A listener whose record is gone is left out. A record written before `joinedAt` existed
    answers 0: it joined long ago. The batches go out together: after a hall's refresh wave
    every listener is new to a route, and five batches one after another made the route's read
    (which the frames wait for) five round trips long instead of one."""
    batches = [connection_ids[start : start + 100] for start in range(0, len(connection_ids), 100)]
    if len(batches) <= 1:
        return _joined_at_batch(batches[0]) if batches else {}
    found: dict[str, int] = {}
    with ThreadPoolExecutor(max_workers=min(len(batches), MAX_PARALLEL_BATCHES)) as pool:
        for answer in pool.map(_joined_at_batch, batches):
            found.update(answer)
    return found


MAX_PARALLEL_BATCHES = 10  # 1,000 listeners' joinedAt in one round trip


def _joined_at_batch(connection_ids: list[str]) -> dict[str, int]:
    found: dict[str, int] = {}
    request: dict[str, Any] = {
        _table(): {
            "Keys": [{"connectionId": {"S": c}} for c in connection_ids],
            "ProjectionExpression": "connectionId, joinedAt",
            "ConsistentRead": True,
        }
    }
    for attempt in itertools.count():
        answer = _ddb().batch_get_item(RequestItems=request)
        for item in answer.get("Responses", {}).get(_table(), []):
            found[item["connectionId"]["S"]] = int(item.get("joinedAt", {}).get("N", "0"))
        request = answer.get("UnprocessedKeys") or {}
        if not request:
            break
        time.sleep(random.uniform(0, min(1.0, 0.05 * 2**attempt)))  # throttled: back off, as AWS advises
    return found


def delete(connection_id: str) -> None:
    """Delete the record; deleting a missing record is not an error (disconnect is at-least-once)."""
    retry_conflicts(lambda: _ddb().delete_item(TableName=_table(), Key={"connectionId": {"S": connection_id}}))


def put_in_session(connection: Connection, *, allow_repeat: bool) -> dict[str, Any]:
    """TransactWriteItems entry: write the connection's record as a member of a session.

    The condition refuses a connection that already belongs to a session. With `allow_repeat`
    the same membership may be written again (a speaker retrying a refresh); a listener may
    not, since the same transaction counts it.
    """
    if not allow_repeat:
        return {
            "Put": {
                "TableName": _table(),
                "Item": connection.as_item(),
                "ConditionExpression": "attribute_not_exists(sessionId)",
                "ReturnValuesOnConditionCheckFailure": "ALL_OLD",  # a repeat of a landed join shows here
            }
        }
    return {
        "Put": {
            "TableName": _table(),
            "Item": connection.as_item(),
            "ConditionExpression": "attribute_not_exists(sessionId) OR (sessionId = :sid AND #role = :role)",
            "ExpressionAttributeNames": {"#role": "role"},
            "ExpressionAttributeValues": values(sid=connection.session_id, role=connection.role),
        }
    }


def delete_listener(connection_id: str, session_id: str) -> dict[str, Any]:
    """TransactWriteItems entry: delete a listener's record, only if it is still there and still holds its place.

    A record handed over (`replacedBy`) fails the condition; the cancellation carries the record
    (ALL_OLD), so the caller tells it from one already gone and deletes it without uncounting."""
    return {
        "Delete": {
            "TableName": _table(),
            "Key": {"connectionId": {"S": connection_id}},
            "ConditionExpression": "sessionId = :sid AND #role = :listener AND attribute_not_exists(replacedBy)",
            "ExpressionAttributeNames": {"#role": "role"},
            "ExpressionAttributeValues": values(sid=session_id, listener="listener"),
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }
    }


def hand_over(connection_id: str, session_id: str, target_language: str, to_connection_id: str) -> dict[str, Any]:
    """TransactWriteItems entry: mark a listener's record as having handed its place to `to_connection_id`.

    Only a record that still holds its place in that session, for that language: the record
    stays (the audio still reaches the old connection until it closes) but no longer counts."""
    return {
        "Update": {
            "TableName": _table(),
            "Key": {"connectionId": {"S": connection_id}},
            "UpdateExpression": "SET replacedBy = :to",
            "ConditionExpression": (
                "sessionId = :sid AND #role = :listener AND targetLanguage = :lang AND attribute_not_exists(replacedBy)"
            ),
            "ExpressionAttributeNames": {"#role": "role"},
            "ExpressionAttributeValues": values(
                sid=session_id, listener="listener", lang=target_language, to=to_connection_id
            ),
        }
    }


def delete_handed_over(connection_id: str, session_id: str, *, attempts: int | None = None) -> bool:
    """Delete a listener's record whose place was handed over (nothing to uncount); False if it is not such a record."""
    try:
        retry_conflicts(
            lambda: _ddb().delete_item(
                TableName=_table(),
                Key={"connectionId": {"S": connection_id}},
                ConditionExpression="sessionId = :sid AND attribute_exists(replacedBy)",
                ExpressionAttributeValues=values(sid=session_id),
            ),
            attempts=attempts,
        )
        return True
    except Exception as exc:
        if aws.error_code(exc) == "ConditionalCheckFailedException":
            return False
        raise


def listeners_of(session_id: str) -> Iterator[tuple[str, str]]:
    """(connectionId, targetLanguage) of every listener of a session, through the sparse session index."""
    paginator = _ddb().get_paginator("query")
    pages = paginator.paginate(
        TableName=_table(),
        IndexName=SESSION_INDEX,
        KeyConditionExpression="sessionId = :sid",
        ExpressionAttributeValues=values(sid=session_id),
    )
    for page in pages:
        for item in page.get("Items", []):
            yield item["connectionId"]["S"], item["targetLanguage"]["S"]
