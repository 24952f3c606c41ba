"""Load on the local stack, from the original design's scenarios, each ending with a state check.

The figures are for the emulator on this machine (one process, moto behind one lock), so they
bound the local stack, not AWS; what transfers is the shape: errors, and the final state.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import statistics
import time
from dataclasses import dataclass
from typing import Any

import websockets

from local_stack import tokens
from local_stack.hall import listener_records
from local_stack.process import NO_IP_LIMITS, LocalStackProcess


@dataclass
class Result:
    scenario: str
    ok: int
    errors: int
    latencies: list[float]
    final_state: str

    def percentiles(self) -> tuple[float, float, float]:
        if len(self.latencies) < 2:
            value = self.latencies[0] if self.latencies else 0.0
            return value, value, value
        q = statistics.quantiles(self.latencies, n=100, method="inclusive")
        return statistics.median(self.latencies), q[94], q[98]


class Client:
    """A bare protocol client: one connection, replies matched by message type."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.messages: asyncio.Queue[tuple[float, dict[str, Any]]] = asyncio.Queue()
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            async for raw in self.ws:
                await self.messages.put((time.perf_counter(), json.loads(raw)))

    async def call(self, payload: dict[str, Any], timeout: float = 60) -> tuple[float, dict[str, Any]]:
        sent = time.perf_counter()
        await self.ws.send(json.dumps(payload))
        while True:
            arrived, message = await asyncio.wait_for(self.messages.get(), timeout)
            if message.get("type") != "heartbeatAck":
                return arrived - sent, message


async def call_coming_back(client: Client, payload: dict[str, Any], attempts: int = 20) -> tuple[float, dict[str, Any]]:
    """`call`, coming back after RATE_LIMIT_EXCEEDED as the clients do (retryAfterSeconds plus up
    to a quarter more); the latency runs from the first attempt."""
    first = time.perf_counter()
    for _ in range(attempts - 1):
        _, message = await client.call(payload)
        if message.get("code") != "RATE_LIMIT_EXCEEDED":
            return time.perf_counter() - first, message
        await asyncio.sleep(float(message.get("retryAfterSeconds") or 1) * random.uniform(1.0, 1.25))
    _, message = await client.call(payload)
    return time.perf_counter() - first, message


async def connect(url: str, token: str | None = None) -> Client:
    target = f"{url}?token={token}" if token else url
    return Client(await websockets.connect(target, open_timeout=60, ping_interval=None))


async def connect_many(url: str, count: int, limit: int = 50) -> list[Client]:
    gate = asyncio.Semaphore(limit)

    async def one() -> Client:
        async with gate:
            return await connect(url)

    return list(await asyncio.gather(*(one() for _ in range(count))))


def count_check(stack: LocalStackProcess, session_id: str) -> tuple[bool, str]:
    """listenerCount against the live listener records, and records that belong to no live connection."""
    session = next(s for s in stack.table_items("SessionsTable") if s["sessionId"] == session_id)
    listeners = listener_records(stack, session_id)
    ok = session["listenerCount"] == len(listeners) and sum(session["languageCounts"].values()) == len(listeners)
    return ok, f"listenerCount {session['listenerCount']} = {len(listeners)} listener records" + (
        "" if ok else " MISMATCH"
    )


async def run_scenarios(stack: LocalStackProcess, listeners: int, sessions: int, progress: Any) -> list[Result]:
    results: list[Result] = []
    url = stack.url

    # 1. simultaneous session creations
    progress(f"  load: connecting {sessions} speakers")
    speakers = list(await asyncio.gather(*(connect(url, tokens.issue(f"bench-{i}")) for i in range(sessions))))
    progress(f"  load: {sessions} simultaneous createSession")
    replies = await asyncio.gather(*(s.call({"action": "createSession", "sourceLanguage": "en"}) for s in speakers))
    created = [m["sessionId"] for _, m in replies if m.get("type") == "sessionCreated"]
    stored = {s["sessionId"] for s in stack.table_items("SessionsTable")}
    distinct = len(set(created)) == len(created) and set(created) <= stored
    results.append(
        Result(
            f"{sessions} simultaneous session creations",
            len(created),
            sessions - len(created),
            [latency for latency, _ in replies],
            f"{len(set(created))} distinct ids, all stored" if distinct else "DUPLICATE OR MISSING IDS",
        )
    )

    # 2. listeners joining one session
    speaker, session_id = speakers[0], created[0]
    progress(f"  load: connecting {listeners} listeners")
    audience = await connect_many(url, listeners)
    progress(f"  load: {listeners} simultaneous joinSession")
    languages = ("es", "fr", "de", "it", "pt")
    joins = await asyncio.gather(
        *(
            call_coming_back(
                c, {"action": "joinSession", "sessionId": session_id, "targetLanguage": languages[i % len(languages)]}
            )
            for i, c in enumerate(audience)
        )
    )
    joined = sum(1 for _, m in joins if m.get("type") == "sessionJoined")
    _, state = count_check(stack, session_id)
    results.append(
        Result(
            f"{listeners} listeners join one session (coming back when told to)",
            joined,
            listeners - joined,
            [lat for lat, _ in joins],
            state,
        )
    )

    # 3. one broadcast frame to every listener
    progress(f"  load: one sendAudio to {listeners} listeners")
    for client in audience:
        while not client.messages.empty():
            client.messages.get_nowait()
    sent_at = time.perf_counter()
    await speaker.ws.send(json.dumps({"action": "sendAudio", "seq": 1, "audio": "AAAA"}))

    async def arrival(client: Client) -> float | None:
        try:
            while True:
                arrived, message = await asyncio.wait_for(client.messages.get(), 60)
                if message.get("type") == "audio":
                    return arrived - sent_at
        except TimeoutError:
            return None

    arrivals = await asyncio.gather(*(arrival(c) for c in audience))
    got = [a for a in arrivals if a is not None]
    _, state = count_check(stack, session_id)
    results.append(Result(f"1 frame broadcast to {listeners} listeners", len(got), listeners - len(got), got, state))

    # 4. disconnect storm (the venue's Wi-Fi drops), the speaker still talking
    progress(f"  load: {listeners} listeners disconnect at once")
    log_mark = len(stack.lines)
    storm_started = time.perf_counter()
    await asyncio.gather(*(c.ws.close() for c in audience))

    def disconnects_handled() -> list[float]:
        return [
            float(line.rsplit(" ", 1)[-1].rstrip("ms\n")) / 1000
            for line in stack.lines[log_mark:]
            if " $disconnect " in line and line.rstrip().endswith("ms")
        ]

    deadline = time.monotonic() + 60
    while len(disconnects_handled()) < listeners and time.monotonic() < deadline:
        await asyncio.sleep(0.25)
    left_by_disconnects = len(listener_records(stack, session_id))
    # A $disconnect that lost every conflict retry leaves its record; the speaker's next frames
    # meet a 410 from it and forget it then (as in a hall, where the talk goes on).
    seq, deadline = 1, time.monotonic() + 120
    while (remaining := listener_records(stack, session_id)) and time.monotonic() < deadline:
        seq += 1
        await speaker.ws.send(json.dumps({"action": "sendAudio", "seq": seq, "audio": "AAAA"}))
        await asyncio.sleep(0.2)
    converged = time.perf_counter() - storm_started
    ok, state = count_check(stack, session_id)
    results.append(
        Result(
            f"disconnect storm of {listeners} while the speaker talks (handler time; "
            f"{left_by_disconnects} left by $disconnect, all gone in {converged:.1f} s)",
            listeners - left_by_disconnects,
            left_by_disconnects,
            disconnects_handled(),
            state + ("" if ok and not remaining else f", {len(remaining)} orphan records"),
        )
    )
    for s in speakers:
        await s.ws.close()
    return results


def measure(listeners: int = 500, sessions: int = 100, progress: Any = print) -> list[Result]:
    progress("  load: starting the local stack")
    stack = LocalStackProcess(time_scale=1, extra_env={"POWERTOOLS_LOG_LEVEL": "ERROR"}, params=NO_IP_LIMITS)
    try:
        return asyncio.run(run_scenarios(stack, listeners, sessions, progress))
    finally:
        stack.stop()


def table(results: list[Result]) -> str:
    lines = ["| scenario | ok | errors | p50 | p95 | p99 | final state |", "|---|---|---|---|---|---|---|"]
    for r in results:
        p50, p95, p99 = (f"{value * 1000:.0f} ms" for value in r.percentiles())
        lines.append(f"| {r.scenario} | {r.ok} | {r.errors} | {p50} | {p95} | {p99} | {r.final_state} |")
    return "\n".join(lines)
