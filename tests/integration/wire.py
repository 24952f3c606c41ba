"""A minimal protocol-speaking client built on plain `websockets`, for the integration tests."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import websockets


class Wire:
    """One WebSocket connection: send actions, await typed messages, optional heartbeats."""

    def __init__(self, websocket: Any) -> None:
        self.ws = websocket
        self.inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.seen: list[dict[str, Any]] = []
        self._reader = asyncio.create_task(self._read())
        self._heartbeat: asyncio.Task[None] | None = None

    @classmethod
    async def open(cls, url: str, token: str | None = None, heartbeat: float | None = None) -> Wire:
        target = f"{url}?token={token}" if token is not None else url
        wire = cls(await websockets.connect(target, max_size=None))
        if heartbeat:
            wire._heartbeat = asyncio.create_task(wire._beat(heartbeat))
        return wire

    async def _read(self) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            async for frame in self.ws:
                message = json.loads(frame)
                self.seen.append(message)
                if message.get("type") != "heartbeatAck":
                    await self.inbox.put(message)

    async def _beat(self, every: float) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            while True:
                await asyncio.sleep(every)
                await self.ws.send('{"action":"heartbeat"}')

    async def send(self, payload: dict[str, Any] | str) -> None:
        await self.ws.send(payload if isinstance(payload, str) else json.dumps(payload))

    async def next(self, *types: str, timeout: float = 10) -> dict[str, Any]:
        """The next message (of one of `types`, if given), skipping others; error messages always match."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            left = deadline - asyncio.get_running_loop().time()
            message = await asyncio.wait_for(self.inbox.get(), max(left, 0.001))
            if not types or message.get("type") in types or message.get("type") == "error":
                return message

    async def call(self, payload: dict[str, Any] | str, *types: str, timeout: float = 10) -> dict[str, Any]:
        await self.send(payload)
        return await self.next(*types, timeout=timeout)

    async def closed(self, timeout: float) -> tuple[int | None, float]:
        """Wait for the server to close; (close code, seconds waited)."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        await asyncio.wait_for(self.ws.wait_closed(), timeout)
        return self.ws.close_code, loop.time() - started

    async def close(self) -> None:
        if self._heartbeat:
            self._heartbeat.cancel()
        await self.ws.close()
        self._reader.cancel()
