"""The Python client sends a heartbeat only after a quiet spell both ways, as the browser client does.

API Gateway's idle timeout counts messages either way, so a listener hearing audio needs none;
a muted speaker's listeners still send them (docs/protocol.md).
"""

from __future__ import annotations

import asyncio
import json

from websockets.asyncio.server import ServerConnection, serve

from broadcast_client import Listener, Timing
from tests.unit.test_client_handover import SESSION, audio


def test_listener_sends_heartbeats_only_when_nothing_arrived_for_a_third_of_the_idle_timeout() -> None:
    heartbeats: list[str] = []  # "audio" while frames were flowing, "quiet" after they stopped
    phase = ["audio"]

    async def gateway(websocket: ServerConnection) -> None:
        async def frames() -> None:
            for seq in range(10):
                await websocket.send(audio(seq))
                await asyncio.sleep(0.04)
            phase[0] = "quiet"

        streaming = None
        async for raw in websocket:
            body = json.loads(raw)
            if body["action"] == "joinSession":
                joined = {
                    "type": "sessionJoined",
                    "sessionId": SESSION,
                    "sourceLanguage": "en",
                    "targetLanguage": "es",
                    "listenerCount": 1,
                    "audioFormat": "pcm_s16le/16000/1",
                    "resumeToken": "t",
                }
                await websocket.send(json.dumps(joined))
                streaming = asyncio.create_task(frames())
            elif body["action"] == "heartbeat":
                heartbeats.append(phase[0])
        if streaming:
            streaming.cancel()

    async def scenario() -> None:
        async with serve(gateway, "127.0.0.1", 0) as server:
            port = server.sockets[0].getsockname()[1]
            listener = Listener(f"ws://127.0.0.1:{port}", SESSION, "es", timing=Timing(idle_timeout=0.3))
            await listener.connect()
            await asyncio.sleep(0.4 + 0.35)
            await listener.close()

    asyncio.run(scenario())
    assert "audio" not in heartbeats
    assert heartbeats.count("quiet") >= 2
