"""The listener handover is correct by construction: a fan-out held back past any fixed drain still lands.

A scripted WebSocket server plays API Gateway. It answers the join and the refresh, then does
what a slow fan-out does on AWS: a frame whose fan-out read the listener list before the new
connection was in it reaches only the old connection, and late. A handover that closes the old
connection after a fixed drain (the client before this test) loses that frame.
"""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from broadcast_client import Event, Frame, Listener, Timing

SESSION = "golden-eagle-427"
HELD_BACK = 2.5  # real seconds, longer than the 1 s drain the client used to wait


def audio(seq: int) -> str:
    return json.dumps(
        {
            "type": "audio",
            "timestamp": 0,
            "sessionId": SESSION,
            "seq": seq,
            "audio": base64.b64encode(bytes([seq])).decode(),
        }
    )


class ScriptedGateway:
    """Connection 0 joins and is told to refresh; connection 1 refreshes. `script` runs once both exist."""

    def __init__(self, *, frame_after_held_back: bool) -> None:
        self.frame_after_held_back = frame_after_held_back
        self.connections: list[ServerConnection] = []
        self.refresh_bodies: list[dict[str, Any]] = []
        self.closed_at: dict[int, float] = {}
        self.refreshed = asyncio.Event()

    async def handle(self, ws: ServerConnection) -> None:
        index = len(self.connections)
        self.connections.append(ws)
        loop = asyncio.get_running_loop()
        try:
            async for raw in ws:
                body = json.loads(raw)
                if body["action"] == "joinSession":
                    await ws.send(
                        json.dumps(
                            {
                                "type": "sessionJoined",
                                "timestamp": 0,
                                "sessionId": SESSION,
                                "sourceLanguage": "en",
                                "targetLanguage": "es",
                                "listenerCount": 1,
                                "audioFormat": "pcm_s16le/16000/1",
                                "resumeToken": "token-0",
                            }
                        )
                    )
                    for seq in (0, 1):
                        await ws.send(audio(seq))
                    await asyncio.sleep(0.1)
                    await ws.send(
                        json.dumps(
                            {
                                "type": "connectionRefreshRequired",
                                "timestamp": 0,
                                "sessionId": SESSION,
                                "role": "listener",
                                "targetLanguage": "es",
                                "refreshBy": 0,
                            }
                        )
                    )
                elif body["action"] == "refreshConnection":
                    self.refresh_bodies.append(body)
                    await ws.send(
                        json.dumps(
                            {
                                "type": "connectionRefreshComplete",
                                "timestamp": 0,
                                "sessionId": SESSION,
                                "role": "listener",
                                "targetLanguage": "es",
                                "sourceLanguage": "en",
                                "audioFormat": "pcm_s16le/16000/1",
                                "resumeToken": "token-1",
                            }
                        )
                    )
                    self.refreshed.set()
        finally:
            self.closed_at[index] = loop.time()

    async def play(self) -> None:
        await self.refreshed.wait()
        old, new = self.connections
        # Frame 2's fan-out read the listener list before connection 1 was in it: old only, and late.
        # Frame 3's fan-out (when there is one) came after: both, at once.
        if self.frame_after_held_back:
            await old.send(audio(3))
            await new.send(audio(3))
        await asyncio.sleep(HELD_BACK)
        if old.state.name == "OPEN":
            await old.send(audio(2))
        if self.frame_after_held_back:
            await asyncio.sleep(0.2)
            await new.send(audio(4))


async def listen(gateway: ScriptedGateway, timing: Timing, expect: int) -> tuple[list[int], list[Event], Listener]:
    async with serve(gateway.handle, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        listener = Listener(f"ws://127.0.0.1:{port}/live", SESSION, "es", timing=timing)
        await listener.connect()
        player = asyncio.create_task(gateway.play())
        frames: list[int] = []
        events: list[Event] = []

        async def consume() -> None:
            async for item in listener:
                if isinstance(item, Frame):
                    frames.append(item.seq)
                    if len(frames) == expect:
                        return
                else:
                    events.append(item)

        await asyncio.wait_for(consume(), 15)
        await player
        await listener.close()
        return frames, events, listener


def test_listener_handover_held_back_fanout_old_connection_stays_until_caught_up() -> None:
    # GIVEN a refresh during which frame 2 reaches only the old connection, 2.5 s late, after frame 3
    gateway = ScriptedGateway(frame_after_held_back=True)
    frames, events, listener = asyncio.run(listen(gateway, Timing(gap_timeout=5.0), expect=5))
    # THEN every frame is delivered once, in order, and nothing is reported lost
    assert frames == [0, 1, 2, 3, 4]
    assert [e for e in events if e.type == "gap"] == []
    assert listener.stats.refreshes == 1
    # AND the wire shows why: frame 2 only on the old connection, frame 3 on both
    assert listener.stats.handover_only_old == 1
    assert listener.stats.handover_both >= 1
    assert listener.stats.handovers_timed_out == 0
    # AND the refresh carried the resumeToken from sessionJoined
    assert gateway.refresh_bodies[0]["resumeToken"] == "token-0"


def test_listener_handover_held_back_last_frame_waited_for_within_bound() -> None:
    # GIVEN the held-back frame is the last one: nothing newer ever reaches the new connection
    gateway = ScriptedGateway(frame_after_held_back=False)
    timing = Timing(gap_timeout=5.0, handover_timeout=4.0)
    frames, events, listener = asyncio.run(listen(gateway, timing, expect=3))
    # THEN the old connection stayed open for it (up to the bound) and it was delivered
    assert frames == [0, 1, 2]
    assert [e for e in events if e.type == "gap"] == []
    assert listener.stats.handovers_timed_out == 1


def test_listener_handover_close_to_the_cut_waits_until_the_cut() -> None:
    # GIVEN the refresh completes about 3 s before the old connection's 2-hour cut (compressed
    # time brings the notice that close), and frame 2 reaches the old connection 2.5 s later
    class CutSoon(Timing):
        @property
        def fallback_after(self) -> float:  # the notice triggers the refresh, not the fallback timer
            return 60.0

    gateway = ScriptedGateway(frame_after_held_back=True)
    timing = CutSoon(gap_timeout=5.0, max_connection=HELD_BACK + 0.7)
    frames, events, listener = asyncio.run(listen(gateway, timing, expect=5))
    # THEN the old connection stayed open for it: a margin before the cut (the client kept 1 s)
    # would have closed it first, and frame 2 would be a gap
    assert frames == [0, 1, 2, 3, 4]
    assert [e for e in events if e.type == "gap"] == []
    assert listener.stats.handover_only_old == 1
    assert listener.stats.handovers_timed_out == 0


class AnswersOnTheOldConnection:
    """Connection 0 joins and hears frame 0; a status poll on it is answered only after connection 1
    has refreshed and delivered frame 1, so the handover is over by the time the reply comes."""

    def __init__(self) -> None:
        self.connections: list[ServerConnection] = []
        self.refreshed = asyncio.Event()
        self.reply_sent: bool | None = None

    async def handle(self, ws: ServerConnection) -> None:
        self.connections.append(ws)
        async for raw in ws:
            body = json.loads(raw)
            if body["action"] == "joinSession":
                joined = {"type": "sessionJoined", "timestamp": 0, "sessionId": SESSION, "sourceLanguage": "en"}
                joined |= {"targetLanguage": "es", "listenerCount": 1, "audioFormat": "pcm_s16le/16000/1"}
                await ws.send(json.dumps({**joined, "resumeToken": "token-0"}))
                await ws.send(audio(0))
            elif body["action"] == "getSessionStatus":
                notice = {"type": "connectionRefreshRequired", "timestamp": 0, "sessionId": SESSION}
                await ws.send(json.dumps({**notice, "role": "listener", "targetLanguage": "es", "refreshBy": 0}))
                await self.refreshed.wait()
                await asyncio.sleep(0.3)  # the reply comes after the handover
                status = {"type": "sessionStatus", "timestamp": 0, "sessionId": SESSION, "isActive": True}
                try:
                    await ws.send(json.dumps({**status, "listenerCount": 1}))
                    self.reply_sent = True
                except ConnectionClosed:
                    self.reply_sent = False
            elif body["action"] == "refreshConnection":
                complete = {"type": "connectionRefreshComplete", "timestamp": 0, "sessionId": SESSION}
                complete |= {"role": "listener", "targetLanguage": "es", "sourceLanguage": "en"}
                await ws.send(json.dumps({**complete, "audioFormat": "pcm_s16le/16000/1", "resumeToken": "token-1"}))
                await ws.send(audio(1))  # the new connection delivers: the listener's handover is done
                self.refreshed.set()


def test_a_request_sent_just_before_a_handover_gets_its_reply_on_the_old_connection() -> None:
    # GIVEN a status poll on the current connection, answered there only after a refresh has
    # handed the listener over to a new connection (an endSession in a hall's last refresh wave
    # met the same: the old connection closed at once and the reply was lost)
    gateway = AnswersOnTheOldConnection()

    async def scenario() -> tuple[dict[str, Any], Listener]:
        async with serve(gateway.handle, "127.0.0.1", 0) as server:
            port = server.sockets[0].getsockname()[1]
            # routes settle at once: the new connection's first frame ends the listener's handover
            timing = Timing(gap_timeout=5.0, route_settle=0.0)
            listener = Listener(f"ws://127.0.0.1:{port}/live", SESSION, "es", timing=timing)
            await listener.connect()
            try:
                return await asyncio.wait_for(listener.status(), 10), listener
            finally:
                await listener.close()

    reply, listener = asyncio.run(scenario())
    # THEN the old connection stayed open until the reply came, and the poll got it
    assert reply["type"] == "sessionStatus"
    assert gateway.reply_sent is True
    assert listener.stats.refreshes == 1
