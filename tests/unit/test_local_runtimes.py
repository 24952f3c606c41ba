"""The local stack's Lambda side: runtimes apart from moto, one moto thread behind a fair lock, moto's walks."""

from __future__ import annotations

import io
import json
import threading
import time
from typing import Any

import boto3

from local_stack.aws_backend import MOTO_LOCK, FairLock, MotoWorker
from local_stack.lambda_bridge import LambdaBridge
from local_stack.runtime import RemoteError
from tests.helpers import wait_until


def test_fair_lock_is_granted_in_the_order_it_was_asked_for() -> None:
    # GIVEN a held lock and ten threads that ask for it one after another
    lock = FairLock()
    order: list[int] = []
    lock.acquire()
    threads = []
    for n in range(10):
        thread = threading.Thread(target=lambda n=n: _take(lock, order, n))
        thread.start()
        threads.append(thread)
        wait_until(lambda n=n: len(lock._waiters) == n + 1)  # each one is queued before the next asks
    # WHEN it is released
    lock.release()
    for thread in threads:
        thread.join(5)
    # THEN each had it in turn (CPython's own locks let a late thread, or the releasing one, go first)
    assert order == list(range(10))
    assert lock._owner is None
    assert not lock._waiters


def test_fair_lock_is_reentrant_and_only_its_owner_releases_it() -> None:
    lock = FairLock()
    with lock, lock:  # moto's handlers may ask again on the same thread
        other: list[BaseException] = []
        thread = threading.Thread(target=lambda: _release_elsewhere(lock, other))
        thread.start()
        thread.join(5)
        assert isinstance(other[0], RuntimeError)
    assert lock._owner is None
    assert lock.acquire()  # free again
    lock.release()


def _take(lock: FairLock, order: list[int], n: int) -> None:
    with lock:
        order.append(n)
        time.sleep(0.001)


def _release_elsewhere(lock: FairLock, errors: list[BaseException]) -> None:
    try:
        lock.release()
    except RuntimeError as exc:
        errors.append(exc)


def test_moto_requests_run_on_one_thread_in_the_order_they_came() -> None:
    # GIVEN a worker kept busy by a first request, and twenty more queued behind it from twenty threads
    worker = MotoWorker()
    first_running, release_first = threading.Event(), threading.Event()
    ran: list[tuple[int, int]] = []  # (request, thread that ran it)
    results: dict[int, Any] = {}

    def request(n: int) -> Any:
        if n == 0:
            first_running.set()
            release_first.wait(5)
        if n == 7:
            raise ValueError("moto refused request 7")
        ran.append((n, threading.get_ident()))
        return f"answer {n}"

    def ask(n: int) -> None:
        try:
            results[n] = worker.run(lambda: request(n))
        except ValueError as exc:
            results[n] = exc

    callers = [threading.Thread(target=ask, args=(0,))]
    callers[0].start()
    assert first_running.wait(5)
    for n in range(1, 21):
        callers.append(threading.Thread(target=ask, args=(n,)))
        callers[-1].start()
        wait_until(lambda n=n: worker._queue.qsize() == n)  # queued before the next one asks
    # WHEN the first one finishes
    release_first.set()
    for caller in callers:
        caller.join(5)
    # THEN every request ran in turn on the worker's one thread (no hand-over of moto's lock
    # between requests), and each caller got its own answer, or its own error
    assert [n for n, _ in ran] == [n for n in range(21) if n != 7]
    assert {thread for _, thread in ran} == {worker._thread.ident}
    assert results[3] == "answer 3"
    assert isinstance(results[7], ValueError)
    assert results[20] == "answer 20"


def test_a_moto_request_made_under_motos_lock_runs_at_once() -> None:
    # A request made by a caller that holds MOTO_LOCK (functions.py's own requests to moto, or one
    # request of moto's inside another) cannot wait for the worker, which needs that lock.
    worker = MotoWorker()
    with MOTO_LOCK:
        assert worker.run(lambda: threading.get_ident()) == threading.get_ident()
    assert worker.run(lambda: worker.run(lambda: "nested")) == "nested"  # a request inside a request


def test_other_users_of_motos_lock_get_it_between_the_workers_batches() -> None:
    # GIVEN a worker with far more requests queued than one batch
    worker = MotoWorker()
    order: list[str] = []
    first_running, gate = threading.Event(), threading.Event()

    def request(n: int) -> None:
        if n == 0:
            first_running.set()
            gate.wait(5)
        order.append(f"request {n}")

    callers = [threading.Thread(target=worker.run, args=(lambda n=n: request(n),)) for n in range(3 * MotoWorker.BATCH)]
    callers[0].start()
    assert first_running.wait(5)
    for caller in callers[1:]:
        caller.start()
    wait_until(lambda: worker._queue.qsize() == len(callers) - 1)
    # WHEN another thread asks for MOTO_LOCK itself while the first batch runs
    other = threading.Thread(target=lambda: _take_and_note(order))
    other.start()
    wait_until(lambda: len(MOTO_LOCK._waiters) == 1)
    gate.set()
    for thread in [*callers, other]:
        thread.join(5)
    # THEN it had the lock after that batch, not after every queued request
    assert order.index("other") == MotoWorker.BATCH
    assert len(order) == len(callers) + 1


def _take_and_note(order: list[str]) -> None:
    with MOTO_LOCK:
        order.append("other")


def test_a_runtime_error_reaches_the_state_machine_with_the_handlers_own_type() -> None:
    # A handler in a runtime process fails; the timer's Task sees what Lambda reports: the
    # handler's error type (which a Retry or Catch may name), not the emulator's RemoteError.
    def failing(event: dict[str, Any], _context: Any) -> Any:
        raise RemoteError("KeyError", "'connectionId'")

    bridge = LambdaBridge({"Notifier": failing}).install()
    try:
        answer = boto3.client("lambda", region_name="us-east-1").invoke(
            FunctionName="Notifier", Payload=json.dumps({"x": 1}).encode()
        )
    finally:
        bridge.uninstall()
    assert answer["FunctionError"] == "Unhandled"
    payload = json.load(io.BytesIO(answer["Payload"].read()))
    assert payload["errorType"] == "KeyError"
    assert payload["errorMessage"] == "'connectionId'"
