"""Where a speaker connection's frames go, cached per warm container: no DynamoDB read per frame.

A frame needs three answers: is this connection its session's speaker, is the session active,
and who listens. Reading them costs two strongly consistent GetItems and a Query per frame, at
several frames a second for every session. Here they are read once and reused for
AUDIO_ROUTE_CACHE_MS (1,000 by default), the staleness the product accepts:

- a listener who joins (or hands over to a new connection) is not in every container's route
  until that much later. So no container posts to it before AUDIO_ROUTE_CACHE_MS plus
  AUDIO_START_MARGIN_MS after its `joinedAt` (service.audible_from): from then on every route
  in use was read after the join, and from its first frame it misses none. (Posting as soon
  as one route had it let a frame reach it from a fresh route and the next one miss it from
  an older route in another container: a hole right after its first frame.) The clients'
  handover keeps the old connection until the new one delivers, so a handover loses nothing;
- a session ended, or a speaker replaced, is noticed by the next read, at most that much later
  (the clients hear `sessionEnded` from the end itself, not from the audio path);
- a listener answered 410 is never posted to again from this container, from the cached route
  or any later read (`mark_gone`): API Gateway never reuses a connection id, and a record stays
  until its $disconnect lands.

Entries are bounded (the least recently read go first); each container has its own, so two
containers may see a change up to the bound apart. Thread-safe: a dict per entry, replaced whole;
invocations that run at once in one process (the local stack's threads; a Lambda container runs
one at a time) share one read in flight instead of each reading the same route (`get_or_read`).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from broadcast import clock

MAX_ROUTES = 512


@dataclass
class Route:
    """One speaker connection's session and audience, as read at `read_at` (clock.now_ms()).

    The service's clock, not the monotonic one: the local stack compresses time, and this
    staleness must compress with the 2-hour cut and everything else."""

    session_id: str
    speaker_user_id: str
    listeners: dict[str, str]  # connection id -> target language
    read_at: int = field(default_factory=lambda: clock.now_ms())  # when its audience's Query began
    joined_at: dict[str, int] = field(default_factory=dict)  # connection id -> its joinedAt (absent: 0)


_routes: OrderedDict[str, Route] = OrderedDict()
_reading: dict[str, threading.Event] = {}  # speaker connection id -> set when its read in flight ends
_joined: OrderedDict[str, int] = OrderedDict()  # listener connection id -> joinedAt (never changes)
_lock = threading.Lock()
MAX_JOINED = 50_000
# Connections that answered 410 here (gone for good), the most recent last. A listener's old
# connection stays in the table from its client's close until its $disconnect removes it (seconds
# at worst; never, when the $disconnect is lost). Without this every frame in that window posted
# to it again and tried to remove it again: in a hall's refresh waves, hundreds of transactions on
# the session item per frame, all in conflict with each other (the local stack's hall of 500
# stalled on them for a minute).
_gone: OrderedDict[str, None] = OrderedDict()
MAX_GONE = 50_000


def get(connection_id: str, max_age_ms: int) -> Route | None:
    """The cached route of a speaker connection, if read within `max_age_ms`."""
    if max_age_ms <= 0:
        return None
    return _read_since(connection_id, clock.now_ms() - max_age_ms)


def _read_since(connection_id: str, since_ms: int) -> Route | None:
    """The cached route of a speaker connection, if its read began at `since_ms` or later."""
    with _lock:
        route = _routes.get(connection_id)
        if route is None or not since_ms <= route.read_at <= clock.now_ms():  # a clock stepped back: read again
            return None
        _routes.move_to_end(connection_id)
        return route


def get_or_read(connection_id: str, max_age_ms: int, read: Callable[[], Route]) -> Route:
    """The route cached within `max_age_ms`, else `read()`'s (which must `put` it).

    A caller that finds a read of the same route in flight waits for it and takes its route when
    that is young enough, so it was read after this call began, less the bound: what a frame
    needs (service.send_audio). Not "within the bound of now": a read that took longer than the
    bound (a throttled Query retried with backoff, a queue in the local stack) would then serve
    none of the frames that waited for it, and each would read again in turn. (The hall of 500 at
    TIME_SCALE=60 showed it: frames waited up to 28 s for reads of 1 s each, one after another.)
    If that read failed, or began too early for this call, it reads itself."""
    if max_age_ms <= 0:
        return read()
    since = clock.now_ms() - max_age_ms
    while True:
        route = _read_since(connection_id, since)
        if route is not None:
            return route
        with _lock:
            in_flight = _reading.get(connection_id)
            if in_flight is None:
                mine = _reading[connection_id] = threading.Event()
        if in_flight is not None:
            in_flight.wait()
            continue
        try:
            return read()
        finally:
            with _lock:
                _reading.pop(connection_id, None)
            mine.set()


def put(connection_id: str, route: Route) -> None:
    """Remember `route` for `connection_id` (evicting the least recently read beyond MAX_ROUTES)."""
    with _lock:
        _routes[connection_id] = route
        _routes.move_to_end(connection_id)
        while len(_routes) > MAX_ROUTES:
            _routes.popitem(last=False)


def mark_gone(connection_ids: list[str]) -> list[str]:
    """Remember connections that answered 410; returns those not already known here as gone,
    which the caller cleans up (once per container, not once per frame)."""
    with _lock:
        new = [c for c in dict.fromkeys(connection_ids) if c not in _gone]
        for c in new:
            _gone[c] = None
        while len(_gone) > MAX_GONE:
            _gone.popitem(last=False)
    return new


def is_gone(connection_id: str) -> bool:
    """True once `connection_id` answered 410 in this container."""
    return connection_id in _gone


def joined_at(connection_ids: list[str], fetch: Callable[[list[str]], dict[str, int]]) -> dict[str, int]:
    """When each listener joined: remembered per container (a connection joins once), the rest
    from `fetch` (left out there, and so here, when its record is gone)."""
    with _lock:
        known = {c: _joined[c] for c in connection_ids if c in _joined}
    unknown = [c for c in connection_ids if c not in known]
    if unknown:
        fetched = fetch(unknown)
        with _lock:
            for c, at in fetched.items():
                _joined[c] = at
            while len(_joined) > MAX_JOINED:
                _joined.popitem(last=False)
        known.update(fetched)
    return known


def forget(connection_id: str | None = None) -> None:
    """Drop one connection's route (or, with None, every route: tests)."""
    with _lock:
        if connection_id is None:
            _routes.clear()
            _joined.clear()
            _gone.clear()
        else:
            _routes.pop(connection_id, None)
