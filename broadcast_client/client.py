"""Speaker and Listener: asyncio clients that keep a broadcast going across API Gateway's 2-hour cut.

Both refresh by themselves when the server says `connectionRefreshRequired` (or, if that never
comes, when their own fallback timer fires), send heartbeats inside the idle timeout, and
reconnect with backoff after an unexpected close. A listener delivers every `seq` once and in
order through a bounded reorder buffer and reports gaps it could not fill.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import inspect
import json
import random
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import websockets
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import InvalidStatus
from websockets.protocol import State

from broadcast_client.reorder import ReorderBuffer

TokenProvider = Callable[[], str | Awaitable[str]]

HANDSHAKE_ATTEMPTS = 8
MAX_HANDSHAKE_BACKOFF = 5.0
RATE_LIMIT_ATTEMPTS = 4
# What API Gateway itself sends when a route's integration failed or Lambda throttled it: no
# `type`, not a protocol message (docs/protocol.md, "API Gateway's own answers").
GATEWAY_ERROR = "Internal server error"
# Retries after it: a throttled join waits for one of the ~2 s joins in flight to end, so the
# backoff grows from 0.5 s to 5 s (full jitter; up to about 17 s over the 6 attempts in all).
GATEWAY_ATTEMPTS = 6
GATEWAY_BACKOFF = 0.5


class SessionError(Exception):
    """The server refused a session operation; `code` is the protocol error code."""

    def __init__(self, message: dict[str, Any]) -> None:
        super().__init__(f"{message.get('code')}: {message.get('message')}")
        self.code = str(message.get("code", ""))
        self.reply = message


REQUEST_TIMEOUT = 15.0  # real seconds a request waits for its reply


class ServiceClock(Protocol):
    """The service's clock, where a client can read it (a local stack on the same machine)."""

    def now(self) -> float:
        """Its epoch seconds."""
        ...

    def rate(self) -> float:
        """Its seconds per real second, now."""
        ...


@dataclass(frozen=True)
class Timing:
    """The service's clock, in seconds of *its* time; `time_scale` > 1 for a time-compressed local stack."""

    refresh_after: float = 6000  # when the server asks for a refresh
    max_connection: float = 7200  # when API Gateway cuts the connection
    idle_timeout: float = 600
    fallback_margin: float = 600  # refresh on our own at 110 minutes if no notice came (cut at 120)
    # A listener's old connection stays open until the new one has caught up (see
    # Listener._caught_up); this bounds that wait, in real seconds, after which a frame still
    # missing is a `gap`. It never runs past the old connection's 2-hour cut.
    handover_timeout: float = 10.0
    # Seconds (the service's) the server's audio route may lag a join or refresh
    # (AUDIO_ROUTE_CACHE_MS, 1 s, plus a margin): frames sent sooner may still go to the old
    # connection only, from any of the server's containers, whatever their order. The old
    # connection stays at least this long.
    route_settle: float = 1.5
    gap_timeout: float = 2.0  # real seconds a missing frame is waited for
    # Real seconds a listener holds its first frame before playing: frames are delivered
    # concurrently, and the second one may overtake the first (the first read of the server's
    # audio route is slower); the lowest frame held is where playing starts.
    start_hold: float = 0.25
    time_scale: float = 1.0
    # The service's clock itself, for a local stack on this machine whose clock may slow down
    # under load (local_stack/emulated_clock.py): `now()` its epoch seconds, `rate()` its seconds
    # per real second, never above `time_scale`. The fallback refresh is then due on that clock.
    clock: ServiceClock | None = field(default=None, compare=False)

    def real(self, service_seconds: float) -> float:
        """Real seconds for a duration on the service's clock, at its fastest (the soonest it can end)."""
        return service_seconds / self.time_scale

    def real_step(self, service_seconds: float) -> float:
        """Real seconds to wait before looking again at the service's clock, for `service_seconds` still to go.

        Never past their end at the fastest pace, at most half a second past it at the present one."""
        fastest = self.real(service_seconds)
        if self.clock is None:
            return fastest
        return max(fastest, min(service_seconds / self.clock.rate(), 0.5))

    def service_now(self) -> float | None:
        """The service's clock, when known (`clock`)."""
        return self.clock.now() if self.clock is not None else None

    @property
    def heartbeat_every(self) -> float:
        """Real seconds of quiet (both ways) after which a connection sends a heartbeat: a third of the idle timeout."""
        return self.real(self.idle_timeout / 3)

    @property
    def fallback_at(self) -> float:
        """Service seconds after connecting when a connection refreshes even without a notice."""
        return min(self.refresh_after + self.fallback_margin, self.max_connection - 60)

    @property
    def fallback_after(self) -> float:
        """Real seconds after connecting when a connection refreshes even without a notice."""
        return self.real(self.fallback_at)


@dataclass(frozen=True)
class Frame:
    """One audio frame, delivered once and in order."""

    seq: int
    audio: bytes
    session_id: str


@dataclass(frozen=True)
class Event:
    """Anything else worth telling the application: server messages and the client's own reports."""

    type: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class ClientStats:
    """Counters for reports and tests."""

    refreshes: int = 0
    reconnects: int = 0
    longest_handover: float = 0.0
    refresh_notices: int = 0
    fallback_refreshes: int = 0
    latest_notice: float = 0.0  # the most real seconds from a connection's open to its refresh notice
    handshake_retries: int = 0  # handshakes refused with 429, retried with backoff and jitter
    rate_limited: int = 0  # RATE_LIMIT_EXCEEDED answers waited out
    gateway_errors: int = 0  # requests API Gateway answered with "Internal server error", retried
    # What happened on the wire around each listener handover, before the reorder buffer: frames
    # newer than any seen when the refresh began, up to the old connection's last, by where they arrived.
    handover_both: int = 0
    handover_only_old: int = 0
    handover_only_new: int = 0
    handovers_timed_out: int = 0  # the new connection had not caught up within handover_timeout


class _Link:
    """One WebSocket connection: a reader task, heartbeats, and request/response by message type."""

    def __init__(
        self,
        websocket: ClientConnection,
        on_message: Callable[[_Link, dict[str, Any]], None],
        clock: ServiceClock | None = None,
    ) -> None:
        self.ws = websocket
        self.opened_at = time.monotonic()
        # The service's clock when Timing has it (a local stack that may slow down): the
        # connection's age and quiet are then measured on it; else on this machine's.
        self._clock = clock
        self._now: Callable[[], float] = clock.now if clock is not None else time.monotonic
        self.opened_service: float | None = clock.now() if clock is not None else None
        self.closing = False  # set when *we* close it, so the close is not taken as a failure
        self.refresh_started = False
        self._on_message = on_message
        self._waiters: list[tuple[tuple[str, ...], str, asyncio.Future[dict[str, Any]]]] = []
        self.seqs: set[int] = set()  # audio seqs that arrived on this connection
        self.newest_at_refresh = -1  # the newest seq it had brought when its handover began
        self.last_traffic = self._now()  # when a message last went either way
        self.reader = asyncio.create_task(self._read())
        self.tasks: list[asyncio.Task[Any]] = []

    async def _read(self) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            async for raw in self.ws:
                self.last_traffic = self._now()
                try:
                    message = json.loads(raw)
                except ValueError:
                    continue
                if not isinstance(message, dict):
                    continue
                if self._resolve(message):
                    continue
                self._on_message(self, message)
        for _, _, future in self._waiters:
            if not future.done():
                future.set_exception(ConnectionError("connection closed"))

    def _resolve(self, message: dict[str, Any]) -> bool:
        kind = message.get("type")
        if kind is None and message.get("message") == GATEWAY_ERROR:
            # API Gateway names no action: it answers the oldest request still waiting (a link
            # has one at a time but for a rare status poll).
            for entry in self._waiters:
                if not entry[2].done():
                    self._waiters.remove(entry)
                    entry[2].set_result(
                        {
                            "type": "error",
                            "code": "INTERNAL_ERROR",
                            "message": GATEWAY_ERROR,
                            "action": entry[1],
                            "gateway": True,
                        }
                    )
                    return True
            return False
        for entry in self._waiters:
            types, action, future = entry
            if future.done():
                continue
            if kind in types or (kind == "error" and message.get("action") == action):
                self._waiters.remove(entry)
                future.set_result(message)
                return True
        return False

    async def send(self, payload: dict[str, Any]) -> None:
        self.last_traffic = self._now()
        await self.ws.send(json.dumps(payload, separators=(",", ":")))

    async def settle(self, timeout: float = REQUEST_TIMEOUT) -> None:
        """Wait, up to `timeout`, for the replies to the requests still waiting on this link.

        A handover closes the old connection once the new one is current; a request sent on the
        old one just before (an `endSession`, a status poll) is answered on the old one, and closing
        it first lost that reply ("connection closed"). The link closing (its cut) ends the wait."""
        pending = [future for _, _, future in self._waiters if not future.done()]
        if pending:
            await asyncio.wait(pending, timeout=timeout)

    async def request(self, payload: dict[str, Any], *types: str, timeout: float = REQUEST_TIMEOUT) -> dict[str, Any]:
        """Send `payload`; return the first reply of one of `types`; raise SessionError on its `error`."""
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        entry = (types, str(payload["action"]), future)
        self._waiters.append(entry)
        try:
            await self.send(payload)
        except BaseException:
            # never sent: nobody will await this reply (else the close would set an exception
            # on it that nothing retrieves: "Future exception was never retrieved")
            with contextlib.suppress(ValueError):
                self._waiters.remove(entry)
            if future.done() and not future.cancelled():
                future.exception()  # retrieved here, since nothing will await it
            future.cancel()
            raise
        reply = await asyncio.wait_for(future, timeout)
        if reply.get("type") == "error":
            raise SessionError(reply)
        return reply

    def keep_alive(self, timing: Timing) -> None:
        """A heartbeat whenever the connection has been quiet, both ways, for a third of the idle timeout.

        Any message either way resets API Gateway's idle timer (docs/protocol.md), so a listener
        hearing audio sends none: heartbeats are for a muted speaker and its listeners. Quiet is
        measured on the service's clock when Timing has it, else in real seconds.
        """
        due = timing.idle_timeout / 3 if self._clock is not None else timing.heartbeat_every

        async def loop() -> None:
            with contextlib.suppress(websockets.ConnectionClosed):
                while True:
                    quiet = self._now() - self.last_traffic
                    if quiet >= due:
                        await self.send({"action": "heartbeat"})
                        quiet = 0.0
                    await asyncio.sleep(timing.real_step(due - quiet) if self._clock is not None else due - quiet)

        self.tasks.append(asyncio.create_task(loop()))

    def after(self, seconds: float, action: Callable[[], Awaitable[None]]) -> None:
        async def later() -> None:
            await asyncio.sleep(seconds)
            await action()

        self.tasks.append(asyncio.create_task(later()))

    async def close(self) -> None:
        self.closing = True
        for task in self.tasks:
            task.cancel()
        with contextlib.suppress(Exception):
            await self.ws.close()


class _Participant:
    """What Speaker and Listener share: connections, heartbeats, refresh, reconnect, the event queue."""

    role = ""

    def __init__(self, url: str, *, timing: Timing | None = None, max_reconnect_delay: float = 5.0) -> None:
        self.url = url
        self.timing = timing or Timing()
        self.session_id: str | None = None
        self.stats = ClientStats()
        self.max_reconnect_delay = max_reconnect_delay
        self._current: _Link | None = None
        self._links: set[_Link] = set()
        self._queue: asyncio.Queue[Frame | Event | None] = asyncio.Queue()
        self._closed = False
        self._background: set[asyncio.Task[Any]] = set()
        self._refresh_lock = asyncio.Lock()

    # -- to be provided by Speaker / Listener ------------------------------------------------------

    async def _token(self) -> str | None:
        return None

    async def _enter(self, link: _Link) -> None:
        """First attach of a connection to the session (create or join)."""
        raise NotImplementedError

    def _refresh_body(self) -> dict[str, Any]:
        raise NotImplementedError

    async def _rejoin(self, link: _Link) -> None:
        """Re-attach after an unexpected close."""
        raise NotImplementedError

    def _on_other(self, link: _Link, message: dict[str, Any]) -> None:
        self._emit(Event(message.get("type", "unknown"), message))

    def _refreshed(self, reply: dict[str, Any]) -> None:
        """A `connectionRefreshComplete` arrived on the new connection."""

    async def _handover(self, old: _Link, new: _Link) -> None:
        """What must happen before the old connection may close; a speaker needs nothing.

        Frames the speaker sent on the old connection are already with API Gateway once our
        close handshake completes (websockets sends them before the close frame), so closing
        at once loses nothing.
        """

    # -- connections ---------------------------------------------------------------------------------

    async def _open(self) -> _Link:
        websocket = await self._handshake()
        if self._closed:
            # close() ran while this handshake was under way (a refresh, say): do not leave a
            # connection open, and counted in the session, behind a closed client.
            await websocket.close()
            raise ConnectionError("client closed")
        link = _Link(websocket, self._dispatch, self.timing.clock)
        self._links.add(link)
        link.keep_alive(self.timing)
        link.after(self.timing.fallback_after, lambda: self._fallback(link))
        watcher = asyncio.create_task(self._watch(link))
        self._background.add(watcher)
        watcher.add_done_callback(self._background.discard)
        return link

    async def _handshake(self) -> ClientConnection:
        """Open a WebSocket; a handshake refused with 429 is retried with exponential backoff and full jitter."""
        delay = 0.2
        for attempt in range(HANDSHAKE_ATTEMPTS):
            token = await self._token()  # fresh for every attempt: a speaker token may expire meanwhile
            target = f"{self.url}?token={token}" if token else self.url
            try:
                return await websockets.connect(target, max_size=None, ping_interval=None)
            except InvalidStatus as exc:
                if exc.response.status_code != 429 or attempt == HANDSHAKE_ATTEMPTS - 1:
                    raise
            self.stats.handshake_retries += 1
            await asyncio.sleep(random.uniform(0, delay))
            delay = min(delay * 2, MAX_HANDSHAKE_BACKOFF)
        raise AssertionError("unreachable")

    async def _request_honouring_limits(self, link: _Link, payload: dict[str, Any], *types: str) -> dict[str, Any]:
        """`link.request`, a few times: after RATE_LIMIT_EXCEEDED it waits `retryAfterSeconds` (with
        jitter); after API Gateway's own `Internal server error` (Lambda throttled the route, or its
        handler failed) it backs off exponentially with full jitter. A throttled request never ran,
        so sending it again is safe; a join whose handler failed after it was recorded is answered
        INVALID_PARAMETERS the second time, not counted twice."""
        limited = failed = 0
        while True:
            try:
                return await link.request(payload, *types)
            except SessionError as exc:
                if exc.reply.get("gateway"):
                    failed += 1
                    if failed == GATEWAY_ATTEMPTS:
                        raise
                    self.stats.gateway_errors += 1
                    await asyncio.sleep(
                        random.uniform(0, min(MAX_HANDSHAKE_BACKOFF, GATEWAY_BACKOFF * 2 ** (failed - 1)))
                    )
                    continue
                limited += 1
                if exc.code != "RATE_LIMIT_EXCEEDED" or limited == RATE_LIMIT_ATTEMPTS:
                    raise
                self.stats.rate_limited += 1
                wait = float(exc.reply.get("retryAfterSeconds") or 1)
                await asyncio.sleep(self.timing.real(wait) * (1 + random.random() / 4))

    async def _watch(self, link: _Link) -> None:
        await link.reader
        self._links.discard(link)
        for task in link.tasks:
            task.cancel()
        # A connection lost during its own handover is replaced by the handover itself.
        if link is self._current and not link.closing and not link.refresh_started and not self._closed:
            await self._reconnect()

    def _dispatch(self, link: _Link, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "connectionRefreshRequired":
            self.stats.refresh_notices += 1
            self.stats.latest_notice = max(self.stats.latest_notice, time.monotonic() - link.opened_at)
            self._spawn(self.refresh(link))
            return
        if kind == "sessionEnded":
            self._emit(Event("sessionEnded", message))
            self._spawn(self.close())
            return
        self._on_other(link, message)

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _emit(self, item: Frame | Event) -> None:
        self._queue.put_nowait(item)

    async def _fallback(self, link: _Link) -> None:
        if link.opened_service is not None:
            # The service's clock slowed down since the connection opened: not due yet on it.
            left = link.opened_service + self.timing.fallback_at - (self.timing.service_now() or 0.0)
            if left > 0:
                link.after(self.timing.real_step(left), lambda: self._fallback(link))
                return
        if link is self._current and not link.refresh_started and not self._closed:
            self.stats.fallback_refreshes += 1
            await self.refresh(link)

    # -- refresh and reconnect -------------------------------------------------------------------------

    async def refresh(self, link: _Link | None = None) -> None:
        """Hand this participant's role over to a fresh connection, then close the old one.

        `link` is the connection the trigger was about (a notice, the fallback timer); a trigger
        that arrives after that connection was already handed over does nothing.
        """
        old = link or self._current
        if old is None or old is not self._current or old.refresh_started or self._closed:
            return
        old.refresh_started = True  # checked and set before any await: one handover per connection
        old.newest_at_refresh = max(old.seqs, default=-1)
        async with self._refresh_lock:
            started = time.monotonic()
            delay = 0.2
            while not self._closed:
                new: _Link | None = None
                try:
                    new = await self._open()
                    reply = await self._request_honouring_limits(new, self._refresh_body(), "connectionRefreshComplete")
                    self._refreshed(reply)
                    break
                except SessionError as exc:
                    if new:
                        await new.close()
                    self._emit(Event("refreshFailed", {"code": exc.code}))
                    if exc.code in ("SESSION_NOT_FOUND", "FORBIDDEN", "UNAUTHORIZED"):
                        await self.close()
                        return
                except (OSError, TimeoutError, websockets.WebSocketException) as exc:
                    if new:
                        await new.close()
                    self._emit(Event("refreshRetry", {"error": type(exc).__name__}))
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.max_reconnect_delay)
            else:
                return
            self._current = new
            handover = time.monotonic() - started
            self.stats.refreshes += 1
            self.stats.longest_handover = max(self.stats.longest_handover, handover)
            self._emit(Event("refreshed", {"role": self.role, "handoverSeconds": handover}))
        await self._handover(old, new)
        await old.settle()
        await old.close()

    async def _reconnect(self) -> None:
        delay = 0.1
        while not self._closed:
            try:
                link = await self._open()
                self._current = link
                await self._rejoin(link)
                self.stats.reconnects += 1
                self._emit(Event("reconnected", {"role": self.role}))
                return
            except SessionError as exc:
                self._emit(Event("reconnectFailed", {"code": exc.code}))
                if exc.code in ("SESSION_NOT_FOUND", "FORBIDDEN", "UNAUTHORIZED"):
                    await self.close()
                    return
            except (OSError, TimeoutError, websockets.WebSocketException) as exc:
                self._emit(Event("reconnectRetry", {"error": type(exc).__name__}))
            await asyncio.sleep(delay * (1 + random.random()))
            delay = min(delay * 2, self.max_reconnect_delay)

    # -- public --------------------------------------------------------------------------------------

    async def connect(self) -> _Participant:
        """Open the first connection and enter the session.

        A refused entry (SESSION_FULL, SESSION_NOT_FOUND, ...) closes this participant before the
        error is raised: its connection would otherwise stay open and, at its fallback time,
        refresh on its own, which without a place is a join, retried for ever.
        """
        link = await self._open()
        self._current = link
        try:
            await self._enter(link)
        except BaseException:
            await self.close()
            raise
        return self

    async def request(self, payload: dict[str, Any], *types: str) -> dict[str, Any]:
        """Send a message on the current connection and wait for its reply."""
        assert self._current is not None, "connect() first"
        return await self._current.request(payload, *types)

    async def status(self) -> dict[str, Any]:
        """The session's status (sessionStatus)."""
        return await self.request({"action": "getSessionStatus"}, "sessionStatus")

    async def close(self) -> None:
        """Close every connection; iteration ends."""
        if self._closed:
            return
        self._closed = True
        for link in list(self._links):
            await link.close()
        self._queue.put_nowait(None)

    async def __aenter__(self) -> _Participant:
        return await self.connect()

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    def __aiter__(self) -> AsyncIterator[Frame | Event]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Frame | Event]:
        while True:
            item = await self._queue.get()
            if item is None:
                return
            yield item


class Speaker(_Participant):
    """The session's speaker: creates (or takes over) a session and streams audio frames into it."""

    role = "speaker"

    def __init__(
        self,
        url: str,
        token_provider: TokenProvider,
        *,
        source_language: str = "en",
        session_id: str | None = None,
        first_seq: int = 0,
        timing: Timing | None = None,
    ) -> None:
        super().__init__(url, timing=timing)
        self._token_provider = token_provider
        self.source_language = source_language
        self.session_id = session_id
        self.next_seq = first_seq
        self._outbox: deque[dict[str, Any]] = deque()  # frames waiting for an open connection

    async def _token(self) -> str | None:
        # A fresh token for every connection: Cognito tokens last an hour, refreshes come at 100 minutes.
        token = self._token_provider()
        return await token if inspect.isawaitable(token) else token

    async def _enter(self, link: _Link) -> None:
        if self.session_id is None:
            created = await self._request_honouring_limits(
                link, {"action": "createSession", "sourceLanguage": self.source_language}, "sessionCreated"
            )
            self.session_id = created["sessionId"]
            self._emit(Event("sessionCreated", created))
        else:
            await self._rejoin(link)  # taking over an existing session is a speaker refresh

    def _refresh_body(self) -> dict[str, Any]:
        return {"action": "refreshConnection", "sessionId": self.session_id, "role": "speaker"}

    async def send_audio(self, audio: bytes) -> int:
        """Send one frame; returns the `seq` it was given. Never lost to a handover or a reconnect.

        With no open connection (the old one was cut before its handover finished, or a reconnect
        is under way) the frame waits in an outbox, sent in order as soon as a connection is back.
        """
        assert self._current is not None, "connect() first"
        seq = self.next_seq
        self.next_seq += 1
        self._outbox.append({"action": "sendAudio", "seq": seq, "audio": base64.b64encode(audio).decode()})
        await self._flush()
        return seq

    async def _flush(self) -> None:
        while self._outbox and not self._closed:
            link = self._current
            if link is None or link.ws.state is not State.OPEN:
                return  # the handover or reconnect flushes when it is done
            try:
                await link.send(self._outbox[0])
            except websockets.ConnectionClosed:
                return
            self._outbox.popleft()

    async def _rejoin(self, link: _Link) -> None:
        await self._request_honouring_limits(link, self._refresh_body(), "connectionRefreshComplete")
        await self._flush()

    async def _handover(self, old: _Link, new: _Link) -> None:
        """What waited for the new connection goes out on it; the old one may then close at once."""
        await self._flush()

    async def end(self) -> dict[str, Any]:
        """End the session for everyone."""
        reply = await self.request({"action": "endSession"}, "sessionEnded")
        await self.close()
        return reply


class Listener(_Participant):
    """A listener: joins a session and yields its audio frames once each, in order."""

    role = "listener"

    def __init__(
        self,
        url: str,
        session_id: str,
        target_language: str,
        *,
        timing: Timing | None = None,
        reorder_capacity: int = 512,
    ) -> None:
        super().__init__(url, timing=timing)
        self.session_id = session_id
        self.target_language = target_language
        self.buffer: ReorderBuffer[bytes] = ReorderBuffer(reorder_capacity, hold_start=True)
        self._start: asyncio.TimerHandle | None = None
        self.joined: dict[str, Any] = {}
        self.resume_token: str | None = None  # the latest one the server gave; proves our place
        self._gap_check: asyncio.Task[None] | None = None
        self._progress = asyncio.Event()  # set whenever a frame arrives
        self._waiting_since = 0.0  # when the oldest frame now held behind a gap arrived

    def _join_body(self) -> dict[str, Any]:
        return {"action": "joinSession", "sessionId": self.session_id, "targetLanguage": self.target_language}

    async def _enter(self, link: _Link) -> None:
        self.joined = await self._request_honouring_limits(link, self._join_body(), "sessionJoined")
        self.resume_token = self.joined.get("resumeToken")
        self._gap_check = asyncio.create_task(self._watch_gaps())

    def _refresh_body(self) -> dict[str, Any]:
        body = {
            "action": "refreshConnection",
            "sessionId": self.session_id,
            "role": "listener",
            "targetLanguage": self.target_language,
        }
        if self.resume_token:
            body["resumeToken"] = self.resume_token
        return body

    def _refreshed(self, reply: dict[str, Any]) -> None:
        self.resume_token = reply.get("resumeToken") or self.resume_token

    async def _rejoin(self, link: _Link) -> None:
        # The old connection is gone: take our place back with the resumeToken (no capacity or
        # join limit for a place we hold), or join as new when we have none.
        if self.resume_token:
            reply = await self._request_honouring_limits(link, self._refresh_body(), "connectionRefreshComplete")
            self._refreshed(reply)
        else:
            await self._request_honouring_limits(link, self._join_body(), "sessionJoined")

    async def _handover(self, old: _Link, new: _Link) -> None:
        """Keep the old connection until the new one has caught up, within `handover_timeout`.

        Caught up: once the server's audio routes have settled (`Timing.route_settle` after the
        refresh completed), the new connection has brought a frame newer than any the old one
        had brought by then, and every frame before it has been delivered. A frame whose fan-out
        used a listener list without the new connection reaches only the old connection; it is
        older than that frame, so the buffer holds a hole until it lands on the old connection.
        However long that fan-out takes, the old connection is still open.
        """
        # Up to the old connection's cut, not a margin before it: a cut during the handover is
        # harmless (the old link is no longer current), while closing early loses what is still
        # on its way to it. Compressed time made that margin all of it: at TIME_SCALE=600 the
        # notice comes 2 s before the cut and the refresh takes AUDIO_START_MARGIN_MS (a real
        # second), so a 1 s margin left no wait at all and a frame in flight was lost.
        clock = self.timing.clock
        if clock is not None and old.opened_service is not None:
            # At the present pace: should the clock speed up again, the cut comes during the handover (harmless).
            cut_in = (old.opened_service + self.timing.max_connection - clock.now()) / clock.rate()
        else:
            cut_in = old.opened_at + self.timing.real(self.timing.max_connection) - time.monotonic()
        deadline = time.monotonic() + max(0.0, min(self.timing.handover_timeout, cut_in))
        # Until every route the server may still use includes the new connection, a frame can
        # reach the new connection and the next one the old only: the rule starts after that.
        settle = min(self.timing.real(self.timing.route_settle), deadline - time.monotonic())
        if settle > 0 and not old.closing and not self._closed:
            await asyncio.sleep(settle)
        newest_at_switch = max(old.seqs, default=old.newest_at_refresh)
        while not self._caught_up(new, newest_at_switch):
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self._closed:
                self.stats.handovers_timed_out += 1
                break
            self._progress.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._progress.wait(), remaining)
        self._count_wire(old, new, old.newest_at_refresh)

    def _caught_up(self, new: _Link, newest_at_switch: int) -> bool:
        fresh = [seq for seq in new.seqs if seq > newest_at_switch]
        if not fresh:
            return False
        next_seq = self.buffer.next_seq
        return next_seq is not None and next_seq > min(fresh)

    def _count_wire(self, old: _Link, new: _Link, newest_at_switch: int) -> None:
        """Where the overlap's frames arrived (from the refresh to the old connection's last): both, old, new."""
        if not old.seqs:
            return
        for seq in range(newest_at_switch + 1, max(old.seqs) + 1):
            on_old, on_new = seq in old.seqs, seq in new.seqs
            if on_old and on_new:
                self.stats.handover_both += 1
            elif on_old:
                self.stats.handover_only_old += 1
            elif on_new:
                self.stats.handover_only_new += 1

    def _on_other(self, link: _Link, message: dict[str, Any]) -> None:
        if message.get("type") != "audio":
            super()._on_other(link, message)
            return
        seq = message.get("seq")
        if not isinstance(seq, int):
            return
        try:
            audio = base64.b64decode(message.get("audio", ""))
        except ValueError:
            return
        link.seqs.add(seq)
        if not self.buffer.waiting:
            self._waiting_since = time.monotonic()
        gaps_before = len(self.buffer.stats.gaps)
        self._deliver(self.buffer.push(seq, audio), gaps_before)
        if self.buffer.holding and self._start is None:
            self._start = asyncio.get_running_loop().call_later(self.timing.start_hold, self._begin)
        self._progress.set()

    def _begin(self) -> None:
        """The first frame's hold is over: play from the lowest frame held."""
        gaps_before = len(self.buffer.stats.gaps)
        self._deliver(self.buffer.begin(), gaps_before)
        self._waiting_since = time.monotonic()
        self._progress.set()

    def _deliver(self, ready: list[tuple[int, bytes]], gaps_before: int) -> None:
        for first, last in self.buffer.stats.gaps[gaps_before:]:
            self._emit(Event("gap", {"from": first, "to": last, "missing": last - first + 1}))
        for ready_seq, data in ready:
            self._emit(Frame(ready_seq, data, self.session_id or ""))

    async def _watch_gaps(self) -> None:
        """Give up on a missing frame after `gap_timeout`, and say so (a `gap` event)."""
        while not self._closed:
            await asyncio.sleep(self.timing.gap_timeout / 4)
            if self.buffer.waiting and time.monotonic() - self._waiting_since >= self.timing.gap_timeout:
                gaps_before = len(self.buffer.stats.gaps)
                self._deliver(self.buffer.skip_gap(), gaps_before)
                self._waiting_since = time.monotonic()

    async def close(self) -> None:
        if self._gap_check:
            self._gap_check.cancel()
        if self._start:
            self._start.cancel()
        if self.buffer.holding:
            self._begin()  # what was held is played, not dropped
        await super().close()
