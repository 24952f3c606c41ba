"""A per-connection message budget: a socket that floods messages is refused, then cut.

Per-IP budgets (rate_limits_table) stop a flood of handshakes; this stops one connection that
sends too much once it is in. Each warm container keeps a token bucket per connection it has
seen (no table write per message: a speaker's frames would pay for it): `MESSAGE_BURST` at
once, `MESSAGES_PER_SECOND` after. A message over the budget gets RATE_LIMIT_EXCEEDED; a
connection that goes on past `CUT_AFTER_REFUSED` refusals in a row is closed through
@connections (DeleteConnection), which ends its messages for every container at once.

A speaker sends at most 10 frames a second (100 ms frames), and on a new connection after a
reconnect its whole outbox at once (up to about 40 s of frames: the handshake retries); a
listener a heartbeat per quiet 200 s. The defaults (a burst of 600, a minute of 100 ms frames,
then 20 a second) leave room for all of that; a flood is bounded to the burst, then the rate. Several
containers of one function each keep their own buckets, so a flood spread over them gets a
multiple of the budget until the first cuts it; the functions' reserved concurrency bounds that
multiple (docs/security.md).
"""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

TRACKED_CONNECTIONS = 4096  # buckets kept per container, least recently used dropped first


@dataclass
class _Bucket:
    tokens: float
    stamp: float
    refused: int = 0


def _number(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, "") or default)
    except ValueError:
        return default


class FloodGuard:
    """Token buckets per connection id; `admit` says "ok", "refused" or "cut"."""

    def __init__(
        self, burst: float, per_second: float, cut_after: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.burst = burst
        self.per_second = per_second
        self.cut_after = cut_after
        self.clock = clock
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()
        self._lock = threading.Lock()

    def admit(self, connection_id: str) -> str:
        if self.per_second <= 0:
            return "ok"  # switched off
        now = self.clock()
        with self._lock:
            bucket = self._buckets.pop(connection_id, None) or _Bucket(self.burst, now)
            self._buckets[connection_id] = bucket
            while len(self._buckets) > TRACKED_CONNECTIONS:
                self._buckets.popitem(last=False)
            bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.stamp) * self.per_second)
            bucket.stamp = now
            if bucket.tokens >= 1:
                bucket.tokens -= 1
                bucket.refused = 0
                return "ok"
            bucket.refused += 1
            return "cut" if bucket.refused >= self.cut_after else "refused"


_guard: FloodGuard | None = None


def guard() -> FloodGuard:
    """The container's guard, from MESSAGE_BURST, MESSAGES_PER_SECOND and CUT_AFTER_REFUSED."""
    global _guard
    if _guard is None:
        _guard = FloodGuard(
            burst=_number("MESSAGE_BURST", 600),
            per_second=_number("MESSAGES_PER_SECOND", 20),
            cut_after=int(_number("CUT_AFTER_REFUSED", 20)),
        )
    return _guard


def reset() -> None:
    """Forget every bucket and re-read the settings (tests)."""
    global _guard
    _guard = None


def cut(connection_id: str) -> None:
    """Close a flooding connection (DeleteConnection); best effort, logged by the caller on failure."""
    from broadcast import aws
    from broadcast.config import settings

    aws.client("apigatewaymanagementapi", settings().management_endpoint).delete_connection(ConnectionId=connection_id)
