"""Posting to connections through the API Gateway @connections management API."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from broadcast import aws
from broadcast.config import settings
from broadcast.errors import ConnectionGone

# boto3 clients are thread-safe; the fan-out is I/O bound, so threads overlap the round trips.
MAX_PARALLEL_POSTS = 32


_posting: ThreadPoolExecutor | None = None
_posting_lock = threading.Lock()


def _pool() -> ThreadPoolExecutor:
    """One long-lived pool per container, sized to the client's connection pool: no threads made per
    frame, and no more threads than keep-alive connections to use."""
    global _posting
    if _posting is None:
        with _posting_lock:
            if _posting is None:
                _posting = ThreadPoolExecutor(max_workers=MAX_PARALLEL_POSTS, thread_name_prefix="post")
    return _posting


def _management_api() -> Any:
    return aws.client("apigatewaymanagementapi", endpoint_url=settings().management_endpoint)


def post(connection_id: str, message: dict[str, Any]) -> None:
    """Send `message` to one connection; raises ConnectionGone on 410."""
    _post_raw(connection_id, json.dumps(message, separators=(",", ":")).encode())


def _post_raw(connection_id: str, data: bytes) -> None:
    try:
        _management_api().post_to_connection(ConnectionId=connection_id, Data=data)
    except Exception as exc:
        if aws.error_code(exc) in ("GoneException", "410"):
            raise ConnectionGone(connection_id) from exc
        raise


def post_many(connection_ids: Iterable[str], message: dict[str, Any]) -> tuple[list[str], list[str]]:
    """Send the same message to many connections in parallel; returns (gone, failed) connection ids.

    One connection's failure never stops delivery to the others.
    """
    data = json.dumps(message, separators=(",", ":")).encode()
    ids = list(connection_ids)
    if not ids:
        return [], []

    def send(connection_id: str) -> str:
        try:
            _post_raw(connection_id, data)
        except ConnectionGone:
            return "gone"
        except Exception:  # noqa: BLE001 - reported to the caller per connection, never raised across them
            return "failed"
        return "ok"

    outcomes = [send(ids[0])] if len(ids) == 1 else list(_pool().map(send, ids))
    gone = [c for c, o in zip(ids, outcomes, strict=True) if o == "gone"]
    failed = [c for c, o in zip(ids, outcomes, strict=True) if o == "failed"]
    return gone, failed
