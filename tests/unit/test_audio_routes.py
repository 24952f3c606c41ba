"""sendAudio's route cache (audio_routes): no DynamoDB read per frame, a bounded staleness, 410s dropped at once."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from broadcast import audio_routes, sessions_table
from broadcast import clock as broadcast_clock
from broadcast.handlers import end_session, send_audio
from tests.helpers import (
    AwsCallCounter,
    Driver,
    audio_event,
    audio_start_seconds,
    body_of,
    message_event,
    wait_until,
)


class Clock:
    def __init__(self) -> None:
        self.now = time.time()  # epoch seconds, as the service's clock gives them
        self.waits: list[float] = []  # what the service waited (a join's reply waits for its start)
        self.held = False  # True: a wait returns at once and time stays put (frames go on meanwhile)

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        if not self.held:
            self.now += seconds


@pytest.fixture
def clock() -> Iterator[Clock]:
    fake = Clock()
    real = broadcast_clock._now
    broadcast_clock.use(fake, sleep=fake.sleep)
    yield fake
    broadcast_clock.use(real)


@pytest.fixture
def session_id(driver: Driver, clock: Clock) -> str:
    sid = driver.speaker_session("spk-1", "alice")
    driver.join("lst-1", sid, "es")  # returns once its frames start
    return sid


def reads(counter: AwsCallCounter) -> list[str]:
    return [c for c in counter.calls if c.startswith("dynamodb.")]


def test_frames_after_the_first_read_nothing(backend: Any, session_id: str, clock: Clock) -> None:
    with AwsCallCounter() as first:
        send_audio.handler(audio_event("spk-1", 1), None)
    with AwsCallCounter() as steady:
        for seq in range(2, 12):
            clock.now += 0.09
            send_audio.handler(audio_event("spk-1", seq), None)
    # the first read: the speaker's record, the session, the index, and when its listener joined
    assert sorted(reads(first)) == ["dynamodb.BatchGetItem", "dynamodb.GetItem", "dynamodb.GetItem", "dynamodb.Query"]
    assert reads(steady) == []
    assert [m["seq"] for m in backend.management.messages_to("lst-1", "audio")] == list(range(1, 12))


def test_a_new_listener_hears_every_frame_from_its_start_delay_on(
    backend: Any, driver: Driver, session_id: str, clock: Clock
) -> None:
    # GIVEN a cached route, then a listener joining: its reply waits for its start...
    send_audio.handler(audio_event("spk-1", 1), None)
    clock.held = True
    joined_at = clock.now
    reply = driver.join("lst-2", session_id, "fr")
    assert reply["type"] == "sessionJoined"
    (wait,) = clock.waits[-1:]
    assert wait == pytest.approx(audio_start_seconds(), abs=0.01)
    # WHEN frames go on meanwhile: from the cache, from a fresh read that has it, then past its start
    for seq, after in ((2, 0.5), (3, 0.6), (4, audio_start_seconds() - 1.1), (5, 0.1), (6, 1.0)):
        clock.now += after
        send_audio.handler(audio_event("spk-1", seq), None)
    # THEN the new listener has every frame from the first one past its start, which is when its
    # reply went: nothing before, nothing missed after
    assert clock.now - 1.1 >= joined_at + wait > clock.now - 1.2
    assert [m["seq"] for m in backend.management.messages_to("lst-2", "audio")] == [4, 5, 6]
    assert [m["seq"] for m in backend.management.messages_to("lst-1", "audio")] == [1, 2, 3, 4, 5, 6]


def test_two_containers_of_different_ages_leave_no_hole_after_a_new_listeners_first_frame(
    backend: Any, driver: Driver, session_id: str, clock: Clock
) -> None:
    # GIVEN one warm container's route read before a listener joined (a second container, in
    # effect: each container has its own cache) ...
    send_audio.handler(audio_event("spk-1", 1), None)
    older = audio_routes.get("spk-1", 1000)
    assert older is not None
    clock.held = True  # the frames go on while the join's reply waits
    driver.join("lst-2", session_id, "fr")
    # WHEN frames alternate between a container that reads afresh (and so has the new listener)
    # and the one still on its older route, each within the cache's bound
    for seq in range(2, 30):
        clock.now += 0.1
        if seq % 2 and clock.now * 1000 - older.read_at <= 1000:
            audio_routes.put("spk-1", older)  # the older container, its cache not yet expired
        else:
            audio_routes.forget("spk-1")  # a container reading afresh (the older one too, once expired)
        send_audio.handler(audio_event("spk-1", seq), None)
    heard = [m["seq"] for m in backend.management.messages_to("lst-2", "audio")]
    # THEN from its first frame on, the new listener has every frame: no container posted to it
    # until every container's route had it
    assert heard, "the listener heard nothing"
    assert heard == list(range(heard[0], 30)), heard


def test_a_gone_listener_is_not_posted_to_again_from_the_cache(backend: Any, session_id: str, clock: Clock) -> None:
    send_audio.handler(audio_event("spk-1", 1), None)
    backend.management.gone.add("lst-1")
    posts = len(backend.management.posts)
    send_audio.handler(audio_event("spk-1", 2), None)  # meets the 410: removed, uncounted
    send_audio.handler(audio_event("spk-1", 3), None)  # from the cache, which still names lst-1
    assert audio_routes.get("spk-1", 1000) is not None
    assert len(backend.management.posts) == posts  # the fake records delivered posts only
    assert backend.management.refused == ["lst-1"]  # frame 3 was not posted to it


def test_a_gone_listener_whose_record_stays_meets_one_post_and_one_cleanup(
    backend: Any, driver: Driver, session_id: str, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN lst-1's connection closed while its record stays: its $disconnect has not landed, and
    # the cleanup this container tries meets a conflict (the $disconnect removing the same record)
    driver.join("lst-2", session_id, "fr")
    backend.management.gone.add("lst-1")
    attempts: list[str] = []

    def conflicted(connection_id: str, *_args: Any, **_kwargs: Any) -> bool:
        attempts.append(connection_id)
        error = {"Error": {"Code": "TransactionCanceledException", "Message": "[TransactionConflict]"}}
        raise ClientError(error, "TransactWriteItems")

    monkeypatch.setattr(sessions_table, "remove_listener", conflicted)
    # WHEN frames go on, each reading the route afresh (the index still names lst-1)
    for seq in range(1, 8):
        clock.now += 1.1
        send_audio.handler(audio_event("spk-1", seq), None)
    # THEN lst-1 met one post and one cleanup, not one of each per frame (a hall's refresh wave
    # made that hundreds of conflicting transactions per frame), and lst-2 heard every frame
    assert backend.management.refused == ["lst-1"]
    assert attempts == ["lst-1"]
    assert [m["seq"] for m in backend.management.messages_to("lst-2", "audio")] == list(range(1, 8))
    assert backend.connection("lst-1") is not None  # left to its $disconnect, or its timer's 410


def test_an_ended_session_is_refused_once_the_route_is_stale(
    backend: Any, driver: Driver, session_id: str, clock: Clock
) -> None:
    send_audio.handler(audio_event("spk-1", 1), None)
    end_session.handler(message_event("end_session", connection_id="spk-1", user_id="alice"), None)
    clock.now += 1.1
    result = send_audio.handler(audio_event("spk-1", 2), None)
    assert body_of(result)["code"] == "SESSION_NOT_FOUND"


def test_someone_else_cannot_use_a_cached_route(backend: Any, session_id: str, clock: Clock) -> None:
    send_audio.handler(audio_event("spk-1", 1), None)
    # the same connection id with another user's token (a forged request context)
    result = send_audio.handler(audio_event("spk-1", 2, user_id="mallory"), None)
    assert body_of(result)["code"] == "FORBIDDEN"
    assert [m["seq"] for m in backend.management.messages_to("lst-1", "audio")] == [1]


def test_refusals_are_not_cached(backend: Any, session_id: str, clock: Clock) -> None:
    assert body_of(send_audio.handler(audio_event("lst-1", 1, user_id=None), None))["code"] == "FORBIDDEN"
    assert audio_routes.get("lst-1", 1000) is None


def test_the_cache_is_bounded(clock: Clock) -> None:
    for i in range(audio_routes.MAX_ROUTES + 10):
        audio_routes.put(f"spk-{i}", audio_routes.Route(f"s-{i}", "u", {}))
    assert audio_routes.get("spk-0", 1000) is None
    assert audio_routes.get(f"spk-{audio_routes.MAX_ROUTES + 9}", 1000) is not None


def test_invocations_at_once_share_one_read_in_flight(clock: Clock) -> None:
    # The local stack runs a function's invocations on threads of one process: frames that find
    # the route stale together must not each read it (a herd of 500-listener Queries that fell
    # further behind with every frame); they wait for the read in flight and take its route.
    import threading
    from concurrent.futures import ThreadPoolExecutor

    audio_routes.forget()
    reads: list[int] = []
    release = threading.Event()

    def read() -> audio_routes.Route:
        reads.append(1)
        release.wait(5)
        route = audio_routes.Route("s-1", "u", {"lst-1": "es"})
        audio_routes.put("spk-1", route)
        return route

    with ThreadPoolExecutor(4) as pool:
        answers = [pool.submit(audio_routes.get_or_read, "spk-1", 1000, read) for _ in range(4)]
        wait_until(lambda: bool(reads))
        time.sleep(0.1)  # the other three are waiting now
        release.set()
        routes = [answer.result(5) for answer in answers]
    assert len(reads) == 1
    assert all(route is routes[0] for route in routes)


def test_a_failed_read_in_flight_leaves_each_waiter_to_read_itself(clock: Clock) -> None:
    import threading
    from concurrent.futures import ThreadPoolExecutor

    audio_routes.forget()
    calls: list[str] = []
    first_in = threading.Event()
    release = threading.Event()

    def failing() -> audio_routes.Route:
        calls.append("failing")
        first_in.set()
        release.wait(5)
        raise RuntimeError("throttled")

    def working() -> audio_routes.Route:
        calls.append("working")
        route = audio_routes.Route("s-1", "u", {})
        audio_routes.put("spk-1", route)
        return route

    with ThreadPoolExecutor(2) as pool:
        failed = pool.submit(audio_routes.get_or_read, "spk-1", 1000, failing)
        assert first_in.wait(5)
        waiter = pool.submit(audio_routes.get_or_read, "spk-1", 1000, working)
        time.sleep(0.1)
        release.set()
        with pytest.raises(RuntimeError):
            failed.result(5)
        assert waiter.result(5).session_id == "s-1"
    assert calls == ["failing", "working"]


def test_a_read_longer_than_the_bound_serves_every_frame_that_waited_for_it(clock: Clock) -> None:
    # A read that takes longer than AUDIO_ROUTE_CACHE_MS (a Query throttled and retried, or queued
    # in the local stack) is still young enough for the frames that arrived while it ran: it began
    # after each of them, less the bound. Judged against "now" instead, each waiter read again in
    # turn, and frames waited 28 s behind reads of 1 s (the hall of 500 at TIME_SCALE=60).
    import threading
    from concurrent.futures import ThreadPoolExecutor

    audio_routes.forget()
    reads: list[int] = []
    release = threading.Event()

    def slow_read() -> audio_routes.Route:
        reads.append(1)
        route = audio_routes.Route("s-1", "u", {"lst-1": "es"})  # its Query begins now
        release.wait(5)
        clock.now += 3.0  # and takes 3 s, three times the bound
        audio_routes.put("spk-1", route)
        return route

    with ThreadPoolExecutor(4) as pool:
        first = pool.submit(audio_routes.get_or_read, "spk-1", 1000, slow_read)
        wait_until(lambda: bool(reads))
        waiters = [pool.submit(audio_routes.get_or_read, "spk-1", 1000, slow_read) for _ in range(3)]
        time.sleep(0.1)  # the three are waiting for the read in flight
        release.set()
        routes = [first.result(5)] + [waiter.result(5) for waiter in waiters]
    assert len(reads) == 1  # one read served all four frames
    assert all(route is routes[0] for route in routes)
    # AND a frame that comes after it finds it stale and reads again (the bound still holds for it)
    release.set()
    audio_routes.get_or_read("spk-1", 1000, slow_read)
    assert len(reads) == 2


def test_joined_at_of_a_whole_hall_reads_its_batches_together(backend: Any) -> None:
    # After a refresh wave every listener is new to a route: 250 records take three BatchGetItems,
    # sent at once (one round trip for the frames that wait on the read), and answer as one would.
    import threading

    from broadcast import connections_table

    ids = [f"lst-{n:03d}" for n in range(250)]
    for n, connection_id in enumerate(ids):
        if n % 50 == 7:
            continue  # gone: left out of the answer
        item = {"connectionId": {"S": connection_id}, "joinedAt": {"N": str(1000 + n)}}
        if n == 3:
            del item["joinedAt"]  # written before joinedAt existed: 0
        backend.ddb.put_item(TableName="test-connections", Item=item)
    threads: set[int] = set()
    at_once: list[int] = []
    in_flight = [0]
    lock = threading.Lock()
    client = connections_table._ddb()
    original = client.batch_get_item

    def watched(**kwargs: Any) -> Any:
        with lock:
            threads.add(threading.get_ident())
            in_flight[0] += 1
            at_once.append(in_flight[0])
        time.sleep(0.05)
        try:
            return original(**kwargs)
        finally:
            with lock:
                in_flight[0] -= 1

    client.batch_get_item = watched
    try:
        found = connections_table.joined_at_of(ids)
    finally:
        del client.batch_get_item
    assert len(threads) == 3  # 100 + 100 + 50 keys
    assert max(at_once) == 3  # together, not one after another
    assert found == {c: (0 if n == 3 else 1000 + n) for n, c in enumerate(ids) if n % 50 != 7}
