"""DynamoDB's transaction contention, emulated over moto (which serializes every request and so never conflicts).

On DynamoDB a TransactWriteItems that overlaps another in-flight transaction on any of its items
is cancelled with reason `TransactionConflict`, and a single-item write to an item inside an
in-flight transaction fails with `TransactionConflictException`; botocore retries neither. Here
every transaction holds its items for `transaction_seconds` (DynamoDB's transactions take tens
of milliseconds) before it is applied, outside moto's lock, so concurrent ones really overlap.
(moto's TransactWriteItems copied the whole table per call; moto_speedups makes it O(items).)

On by default in the local stack and in the tests that ask for it (`contention` fixture);
`LOCAL_STACK_AWS_FAULTS=off` switches it off for debugging.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections.abc import Iterator
from typing import Any

from botocore.awsrequest import AWSResponse

SWITCH = "LOCAL_STACK_AWS_FAULTS"
TRANSACTION_SECONDS = 0.02  # how long a transaction is in flight on DynamoDB (emulated seconds)
SINGLE_WRITES = ("PutItem", "UpdateItem", "DeleteItem")


def enabled_by_environment() -> bool:
    """The documented switch: LOCAL_STACK_AWS_FAULTS=off turns the emulated failures off."""
    return os.environ.get(SWITCH, "on").lower() not in ("off", "0", "false", "no")


class RawBody:
    """The minimal raw response botocore reads a stubbed body from (an emulated error, a runtime's answer)."""

    def __init__(self, body: bytes) -> None:
        self._body = body
        self._done = False

    def stream(self, **_kwargs: Any) -> Iterator[bytes]:
        if not self._done:
            self._done = True
            yield self._body


def _error(request: Any, code: str, message: str, *, status: int = 400, **extra: Any) -> AWSResponse:
    """An AWS JSON-protocol error response (DynamoDB's error types carry its namespace)."""
    prefix = "com.amazonaws.dynamodb.v20120810#" if "dynamodb" in request.url else ""
    body = json.dumps({"__type": f"{prefix}{code}", "message": message, **extra}).encode()
    headers = {"Content-Type": "application/x-amz-json-1.0", "x-amzn-ErrorType": code}
    return AWSResponse(request.url, status, headers, RawBody(body))


class DynamoContention:
    """Tracks the items of in-flight transactions; refuses what DynamoDB would refuse."""

    def __init__(self, key_attributes: dict[str, list[str]], transaction_seconds: float = TRANSACTION_SECONDS) -> None:
        self.key_attributes = key_attributes  # table name -> its key attribute names
        self.transaction_seconds = transaction_seconds
        self.enabled = True
        self.transaction_conflicts = 0  # transactions cancelled with TransactionConflict
        self.write_conflicts = 0  # single-item writes refused with TransactionConflictException
        self._in_flight: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()

    def in_flight(self) -> int:
        """How many items in-flight transactions hold now."""
        with self._lock:
            return len(self._in_flight)

    def _key(self, table: str, item: dict[str, Any]) -> tuple[str, str]:
        names = self.key_attributes.get(table) or sorted(item)
        return table, json.dumps({n: item.get(n) for n in names}, sort_keys=True)

    def _transaction_keys(self, body: dict[str, Any]) -> list[tuple[str, str] | None]:
        keys: list[tuple[str, str] | None] = []
        for entry in body.get("TransactItems", []):
            (kind, op), *_ = entry.items()
            item = op.get("Item") if kind == "Put" else op.get("Key")
            keys.append(self._key(op["TableName"], item or {}))
        return keys

    @contextlib.contextmanager
    def _holding(self, keys: list[tuple[str, str]]) -> Iterator[None]:
        try:
            yield
        finally:
            with self._lock:
                for key in keys:
                    self._in_flight[key] -= 1
                    if not self._in_flight[key]:
                        del self._in_flight[key]

    def guard(self, event_name: str, request: Any) -> AWSResponse | contextlib.AbstractContextManager[None]:
        """An error response for a request DynamoDB would refuse now, else a context holding its items."""
        if not self.enabled or not event_name.startswith("before-send.dynamodb."):
            return contextlib.nullcontext()
        operation = event_name.rsplit(".", 1)[-1]
        if operation != "TransactWriteItems" and operation not in SINGLE_WRITES:
            return contextlib.nullcontext()
        body = json.loads(request.body or b"{}")
        if operation in SINGLE_WRITES:
            key = self._key(body["TableName"], body.get("Item") if operation == "PutItem" else body.get("Key", {}))
            with self._lock:
                busy = key in self._in_flight
                self.write_conflicts += busy
            if busy:
                return _error(request, "TransactionConflictException", "Transaction is ongoing for the item")
            return contextlib.nullcontext()
        keys = self._transaction_keys(body)
        with self._lock:
            conflicting = [key is not None and key in self._in_flight for key in keys]
            if any(conflicting):
                self.transaction_conflicts += 1
            else:
                for key in keys:
                    assert key is not None
                    self._in_flight[key] = self._in_flight.get(key, 0) + 1
        if any(conflicting):
            reasons = [
                {"Code": "TransactionConflict", "Message": "Transaction is ongoing for the item"}
                if hit
                else {"Code": "None"}
                for hit in conflicting
            ]
            codes = ", ".join(r["Code"] for r in reasons)
            return _error(
                request,
                "TransactionCanceledException",
                f"Transaction cancelled, please refer cancellation reasons for specific reasons [{codes}]",
                CancellationReasons=reasons,
            )
        # In flight for transaction_seconds, then applied (under moto's lock, where it may queue
        # behind other requests: that wait is the emulator's, not DynamoDB's, so it holds no items).
        with self._holding([key for key in keys if key is not None]):
            time.sleep(self.transaction_seconds)
        return contextlib.nullcontext()


# The contention layer the process's moto requests go through (set by install()).
ACTIVE: DynamoContention | None = None


def install(contention: DynamoContention | None) -> None:
    """Route moto's DynamoDB requests through `contention` (None: no contention)."""
    global ACTIVE
    ACTIVE = contention


def guard(event_name: str, request: Any) -> AWSResponse | contextlib.AbstractContextManager[None]:
    """What aws_backend's request hook asks before a request reaches moto."""
    refused = THROTTLING.refuse(event_name, request) if THROTTLING is not None else None
    if refused is not None:
        return refused
    if ACTIVE is None:
        return contextlib.nullcontext()
    return ACTIVE.guard(event_name, request)


class TokenBucket:
    """A token bucket like Step Functions' API throttling: `capacity` at once, `refill` per second."""

    def __init__(self, capacity: float, refill: float, clock: Any = time.monotonic) -> None:
        self.capacity = capacity
        self.refill = refill
        self.tokens = capacity
        self.clock = clock
        self.stamp = clock()
        self.refused = 0
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            now = self.clock()
            self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.refill)
            self.stamp = now
            if self.tokens >= 1:
                self.tokens -= 1
                return True
            self.refused += 1
            return False


# Step Functions Standard, us-east-1 (docs: "Quotas related to API action throttling").
STEP_FUNCTIONS_BUCKETS = {"StartExecution": (1300, 300), "StopExecution": (1000, 200)}


class Throttling:
    """Step Functions' token buckets, and injected faults at `fault_rate` (throttling and 5xx) for tests."""

    def __init__(self, fault_rate: float = 0.0, rng: Any = None) -> None:
        import random

        self.buckets = {op: TokenBucket(*limits) for op, limits in STEP_FUNCTIONS_BUCKETS.items()}
        self.fault_rate = fault_rate
        self.random = rng or random.Random()
        self.injected = 0

    def refuse(self, event_name: str, request: Any) -> AWSResponse | None:
        """An error response for this request (throttled or an injected fault), or None to let it through."""
        service, _, operation = event_name.removeprefix("before-send.").partition(".")
        if service not in ("dynamodb", "sfn"):
            return None
        if service == "sfn" and operation in self.buckets and not self.buckets[operation].take():
            return _error(request, "ThrottlingException", "Rate exceeded")
        if self.fault_rate and self.random.random() < self.fault_rate:
            self.injected += 1
            if self.random.random() < 0.5:
                code = "ThrottlingException" if service == "sfn" else "ProvisionedThroughputExceededException"
                return _error(request, code, "Rate exceeded (injected)")
            return _error(request, "InternalServerError", "Internal server error (injected)", status=500)
        return None


THROTTLING: Throttling | None = None


def install_throttling(throttling: Throttling | None) -> None:
    """Route moto's Step Functions and DynamoDB requests through `throttling` (None: none)."""
    global THROTTLING
    THROTTLING = throttling


def fault_rate_from_environment() -> float:
    """LOCAL_STACK_FAULT_RATE: the fraction of AWS calls answered with throttling or a 5xx (default 0)."""
    try:
        return max(0.0, min(1.0, float(os.environ.get("LOCAL_STACK_FAULT_RATE", "0") or 0)))
    except ValueError:
        return 0.0


class LambdaConcurrency:
    """Lambda's reserved concurrency: a function's invocation beyond its `ReservedConcurrentExecutions`
    in flight is refused with `TooManyRequestsException` (429) before its handler runs.

    What the caller then sees is AWS's: API Gateway answers a throttled integration as a failed one
    (a message route's client gets `Internal server error`, a `$connect` handshake 500), a
    throttled `$disconnect` is lost, and Step Functions' Lambda task fails with
    `Lambda.TooManyRequestsException` for its Retry to catch. An invocation is in flight here from
    the moment it is accepted until its handler returns, its wait for a thread included.

    At `TIME_SCALE=N` the limit is N times the template's. Concurrency is arrivals per second
    times duration: compressed time brings the timers' notices, the clients' heartbeats and
    refreshes N times as often, but a handler takes as long as it does on AWS (longer: here it
    shares a CPU). So N times AWS's concurrency is in flight here for the same traffic, and the
    template's own limit would throttle heartbeats that Lambda runs a few at a time. At
    `TIME_SCALE=1` (`make local`'s default) the limit is the template's.
    """

    def __init__(self, limits: dict[str, int], time_scale: float = 1.0) -> None:
        # function logical id -> its reserved concurrency times the time scale (absent: unlimited)
        self.limits = {function: int(limit * max(1.0, time_scale)) for function, limit in sorted(limits.items())}
        self.in_flight: dict[str, int] = {}
        self.peak: dict[str, int] = {}  # the most in flight at once, per function
        self.throttled: dict[str, int] = {}  # invocations refused, per function
        self._lock = threading.Lock()

    def enter(self, function: str) -> bool:
        """Count one invocation of `function` in flight; False (and nothing counted) when it is throttled."""
        with self._lock:
            now = self.in_flight.get(function, 0)
            limit = self.limits.get(function)
            if limit is not None and now >= limit:
                self.throttled[function] = self.throttled.get(function, 0) + 1
                return False
            self.in_flight[function] = now + 1
            self.peak[function] = max(self.peak.get(function, 0), now + 1)
            return True

    def leave(self, function: str) -> None:
        with self._lock:
            self.in_flight[function] -= 1


CONCURRENCY: LambdaConcurrency | None = None
CONCURRENCY_SWITCH = "LOCAL_STACK_LAMBDA_CONCURRENCY"


def concurrency_by_environment() -> bool:
    """LOCAL_STACK_LAMBDA_CONCURRENCY=on holds each function to its reserved concurrency (default off).

    Off by default, unlike the other failure modes, because what it counts is the emulator's
    concurrency, not Lambda's: every invocation here shares two cores and queues for them, so a
    burst (500 handshakes at once, say) stays in flight many times longer than on Lambda and would
    be refused where AWS serves it. The hall (`make test`, `make bench`) turns it on to show the
    template's reservations hold a hall's traffic."""
    return os.environ.get(CONCURRENCY_SWITCH, "off").lower() in ("on", "1", "true", "yes")


THROTTLED_MESSAGE = "Rate Exceeded."  # Lambda's own message for TooManyRequestsException


def install_concurrency(concurrency: LambdaConcurrency | None) -> None:
    """Hold every invocation the functions process starts to its reserved concurrency (None: unlimited).

    Those are the timer's tasks (and, with LOCAL_STACK_RUNTIMES=off, the routes' too); the front
    door counts the routes' invocations of their runtimes with its own LambdaConcurrency, and
    /_local/faults adds the two."""
    global CONCURRENCY
    CONCURRENCY = concurrency


@contextlib.contextmanager
def invocation(function: str) -> Iterator[bool]:
    """Around one invocation of `function`: yields False when Lambda would throttle it (run nothing then)."""
    concurrency = CONCURRENCY
    if concurrency is None:
        yield True
        return
    if not concurrency.enter(function):
        yield False
        return
    try:
        yield True
    finally:
        concurrency.leave(function)
