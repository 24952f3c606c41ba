"""The Python client against the local stack: refreshes on its own, and survives an unplanned cut."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from broadcast_client import Event, Frame, Listener, SessionError, Speaker, Timing
from local_stack import tokens
from local_stack.process import LocalStackProcess

pytestmark = pytest.mark.integration


async def on_air(
    url: str, sub: str, language: str, timing: Timing
) -> tuple[Speaker, Listener, list[int], list[Event], Any]:
    """A speaker with a session and one listener whose frames and events are being collected."""
    speaker = Speaker(url, lambda: tokens.issue(sub), timing=timing)
    await speaker.connect()
    assert speaker.session_id
    listener = Listener(url, speaker.session_id, language, timing=timing)
    await listener.connect()
    frames: list[int] = []
    events: list[Event] = []
    consumer = asyncio.create_task(collect(listener, frames, events))
    return speaker, listener, frames, events, consumer


async def collect(listener: Listener, frames: list[int], events: list[Event]) -> None:
    async for item in listener:
        if isinstance(item, Frame):
            frames.append(item.seq)
        else:
            events.append(item)


def test_client_listener_killed_mid_broadcast_rejoins_and_reports_the_gap(stack: LocalStackProcess) -> None:
    management = stack.management_client()

    async def scenario() -> tuple[list[int], list[Event], Any, int]:
        speaker, listener, frames, events, consumer = await on_air(
            stack.url, "killer-test", "es", Timing(gap_timeout=0.5)
        )
        sent = 0
        for _ in range(10):
            await speaker.send_audio(b"before")
            sent += 1
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)
        # WHEN the listener's connection is cut from the server side (not a planned refresh)
        connection_id = stack.log_lines("joinSession")[-1].split()[2]
        await asyncio.to_thread(management.delete_connection, ConnectionId=connection_id)
        # ...while the broadcast goes on
        # (its rejoin's reply comes once its new connection hears every frame: about two seconds)
        while not listener.stats.reconnects and sent < 400:
            await speaker.send_audio(b"during")
            sent += 1
            await asyncio.sleep(0.05)
        for _ in range(10):
            await speaker.send_audio(b"after")
            sent += 1
            await asyncio.sleep(0.05)
        await asyncio.sleep(1.5)
        await speaker.end()
        await asyncio.wait_for(consumer, 10)
        return frames, events, listener, sent

    frames, events, listener, sent = asyncio.run(scenario())
    # THEN the client rejoined by itself
    assert listener.stats.reconnects == 1
    assert any(e.type == "reconnected" for e in events)
    # AND every frame was delivered at most once, in order, and what was missed is reported
    assert frames == sorted(set(frames))
    missing = sent - len(frames)
    gaps = [e for e in events if e.type == "gap"]
    assert sum(e.data["missing"] for e in gaps) == missing == listener.buffer.stats.lost, (
        frames,
        [e.data for e in gaps],
    )
    assert frames[-1] == sent - 1  # it came back in time for the end of the broadcast
    assert any(e.type == "sessionEnded" for e in events)


def test_client_refreshes_both_roles_on_its_own(fast_stack: LocalStackProcess) -> None:
    async def scenario() -> tuple[Speaker, Listener, list[int], int]:
        timing = Timing(time_scale=600)
        speaker, listener, frames, _events, consumer = await on_air(fast_stack.url, "auto-refresh", "fr", timing)
        sent = 0
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 14  # past the first refresh (10 s) and the first cut (12 s)
        while loop.time() < deadline:
            await speaker.send_audio(bytes([sent % 256]))
            sent += 1
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)
        await speaker.end()
        await asyncio.wait_for(consumer, 10)
        return speaker, listener, frames, sent

    speaker, listener, frames, sent = asyncio.run(scenario())
    assert speaker.stats.refreshes >= 1
    assert listener.stats.refreshes >= 1
    assert speaker.stats.reconnects == listener.stats.reconnects == 0
    assert frames == list(range(sent))


def test_client_refused_join_closes_its_connection(stack: LocalStackProcess) -> None:
    """A listener refused at its join leaves nothing open: no connection to refresh later on its own."""
    joins_before = len(stack.log_lines("joinSession"))

    async def scenario() -> tuple[str, Listener, bool]:
        listener = Listener(stack.url, "absent-session-404", "es", timing=Timing())
        with pytest.raises(SessionError) as refused:
            await listener.connect()
        (join,) = stack.log_lines("joinSession")[joins_before:]
        return refused.value.code, listener, await _disconnect_seen(stack, join.split()[2])

    code, listener, disconnected = asyncio.run(scenario())
    assert code == "SESSION_NOT_FOUND"
    # THEN the server sees its connection close, as for any client that went away
    assert disconnected, "the connection was left open after its refused join"
    assert not listener._links


async def _disconnect_seen(stack: LocalStackProcess, connection_id: str, within: float = 5.0) -> bool:
    for _ in range(int(within / 0.1)):
        if any(connection_id in line for line in stack.log_lines("$disconnect")):
            return True
        await asyncio.sleep(0.1)
    return False
