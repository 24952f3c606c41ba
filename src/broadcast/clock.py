"""Wall-clock time in epoch milliseconds, replaceable so the local stack can compress time."""

from __future__ import annotations

import time
from collections.abc import Callable

_now: Callable[[], float] = time.time


def now_ms() -> int:
    """Current time in epoch milliseconds."""
    return int(_now() * 1000)


def now_seconds() -> int:
    """Current time in whole epoch seconds (what DynamoDB TTL attributes hold)."""
    return int(_now())


def use(source: Callable[[], float]) -> None:
    """Replace the time source (a function returning epoch seconds as a float)."""
    global _now
    _now = source
