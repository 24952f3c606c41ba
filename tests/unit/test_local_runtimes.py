"""The local stack's Lambda side: runtimes apart from moto, a fair lock in front of moto, moto's walks."""

from __future__ import annotations

import io
import json
import threading
import time
from typing import Any

import boto3

from local_stack.aws_backend import FairLock
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
