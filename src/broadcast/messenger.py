"""Posting to connections through the API Gateway @connections management API.

Posts go through `connections_api` (SigV4 on kept-alive connections, about a tenth of boto3's
CPU per post); a client injected with `aws.inject` (the tests' recording fake) is used instead.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from broadcast import aws
from broadcast.config import settings
from broadcast.connections_api import ConnectionsApi
from broadcast.errors import ConnectionGone
from broadcast.observability import count

# Posts in flight per invocation: the fan-out waits on round trips, so threads overlap them.
# 64 keeps a 500-listener frame to 8 rounds of round trips (about 160 ms at 20 ms each) for
# about 0.15 ms of CPU per post (docs/performance.md, "Audio fan-out").
MAX_PARALLEL_POSTS = 64


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


_apis: dict[str, ConnectionsApi] = {}


def _connections_api(endpoint: str) -> ConnectionsApi:
    """The container's one ConnectionsApi for `endpoint`, built on first use."""
    found = _apis.get(endpoint)
    if found is None:
        with _posting_lock:
            found = _apis.get(endpoint)
            if found is None:
                import boto3

                credentials = boto3.Session().get_credentials()
                region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
                found = _apis[endpoint] = ConnectionsApi(endpoint, region, credentials)
    return found


class PostFailed(Exception):
    """A post answered neither 200 nor 410 after its retries (throttled, 5xx, 403...)."""


def post(connection_id: str, message: dict[str, Any]) -> None:
    """Send `message` to one connection; raises ConnectionGone on 410, PostFailed on any other failure."""
    retries = _post_raw(connection_id, json.dumps(message, separators=(",", ":")).encode())
    if retries:
        count("PostsRetried", retries)


def _post_raw(connection_id: str, data: bytes) -> int:
    """Post; returns how many retries it took. Raises ConnectionGone (410) or PostFailed."""
    endpoint = settings().management_endpoint
    injected = aws.injected("apigatewaymanagementapi", endpoint)
    if injected is not None:
        try:
            injected.post_to_connection(ConnectionId=connection_id, Data=data)
        except Exception as exc:
            if aws.error_code(exc) in ("GoneException", "410"):
                raise ConnectionGone(connection_id) from exc
            raise
        return 0
    outcome = _connections_api(endpoint).post(connection_id, data)
    if outcome.status == 410:
        raise ConnectionGone(connection_id)
    if outcome.status != 200:
        raise PostFailed(f"{connection_id}: {outcome.status} {outcome.error} after {outcome.retries} retries")
    return outcome.retries


def post_many(connection_ids: Iterable[str], message: dict[str, Any]) -> tuple[list[str], list[str]]:
    """Send the same message to many connections in parallel; returns (gone, failed) connection ids.

    One connection's failure never stops delivery to the others.
    """
    data = json.dumps(message, separators=(",", ":")).encode()
    ids = list(connection_ids)
    if not ids:
        return [], []

    def send(connection_id: str) -> tuple[str, int]:
        try:
            return "ok", _post_raw(connection_id, data)
        except ConnectionGone:
            return "gone", 0
        except Exception:  # noqa: BLE001 - reported to the caller per connection, never raised across them
            return "failed", 0

    def send_slice(start: int) -> list[tuple[str, int]]:
        return [send(connection_id) for connection_id in ids[start::workers]]

    # One task per worker, each posting its own slice in turn: a future per post would cost
    # more CPU than the post's signature.
    workers = min(MAX_PARALLEL_POSTS, len(ids))
    outcomes: list[tuple[str, int]] = [("", 0)] * len(ids)
    for start, results in enumerate(_pool().map(send_slice, range(workers)) if workers > 1 else [send_slice(0)]):
        outcomes[start::workers] = results
    retries = sum(r for _, r in outcomes)
    if retries:
        count("PostsRetried", retries)
    gone = [c for c, (o, _) in zip(ids, outcomes, strict=True) if o == "gone"]
    failed = [c for c, (o, _) in zip(ids, outcomes, strict=True) if o == "failed"]
    return gone, failed
