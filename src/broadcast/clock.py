"""Wall-clock time in epoch milliseconds, replaceable so the local stack can compress time."""

from __future__ import annotations

import time
from collections.abc import Callable

_now: Callable[[], float] = time.time
_scale = 1.0  # how many of this clock's seconds pass in one real second (the local stack's TIME_SCALE)
_sleep: Callable[[float], None] = time.sleep


def now_ms() -> int:
    """Current time in epoch milliseconds."""
    return int(_now() * 1000)


def now_seconds() -> int:
    """Current time in whole epoch seconds (what DynamoDB TTL attributes hold)."""
    return int(_now())


def physical_ms(milliseconds: int) -> int:
    """A real-world latency (a write landing, an index catching up) in this clock's milliseconds.

    On AWS the same number; where the local stack compresses time, latencies are not compressed,
    so a margin that covers one must grow with the scale."""
    return int(milliseconds * _scale)


def sleep_until(epoch_ms: int) -> None:
    """Wait until this clock reads `epoch_ms` (at once if it already does).

    Again after each wait, since a local stack's clock may slow down meanwhile (it never runs
    faster than `_scale`); not when the wait moved it not at all (a test's clock held still)."""
    while (remaining := epoch_ms - (before := now_ms())) > 0:
        _sleep(remaining / 1000 / _scale)
        if now_ms() == before:
            return


def use(source: Callable[[], float], scale: float = 1.0, sleep: Callable[[float], None] | None = None) -> None:
    """Replace the time source (a function returning epoch seconds as a float) running `scale` times
    real time, and how this clock waits (real seconds; time.sleep unless given: tests advance a fake)."""
    global _now, _scale, _sleep
    _now = source
    _scale = scale
    _sleep = sleep or time.sleep
