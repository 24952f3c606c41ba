"""A Python client for broadcast sessions: `Speaker` and `Listener` that survive API Gateway's 2-hour cut.

Importable on its own (it needs only `websockets`)::

    async with Listener(url, "golden-eagle-427", "es") as listener:
        async for item in listener:
            if isinstance(item, Frame):
                play(item.audio)
"""

from broadcast_client.client import (
    ClientStats,
    Event,
    Frame,
    Listener,
    ServiceClock,
    SessionError,
    Speaker,
    Timing,
)
from broadcast_client.reorder import ReorderBuffer, ReorderStats

__all__ = [
    "ClientStats",
    "Event",
    "Frame",
    "Listener",
    "ReorderBuffer",
    "ReorderStats",
    "ServiceClock",
    "SessionError",
    "Speaker",
    "Timing",
]
