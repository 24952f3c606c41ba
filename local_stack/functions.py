"""The AWS side of the local stack, in a process of its own: moto, the tables, the timer, and the runtimes.

The emulator's front door (local_stack/server.py: WebSocket connections, @connections, the
pages) runs an asyncio event loop that does a little work for every frame, handshake and post.
In one process with the handlers and moto it waited for the GIL behind them at every socket
call, and a hall of 500 listeners starved it (py-spy: half of the process's time in the loop,
most of it waiting). Lambda runs functions apart from API Gateway; so does this: the front door
starts this process and calls it over a Unix socket, each request a length-prefixed JSON
object ({"op": "invoke", "spec": ..., "event": ...} and so on: `Functions` lists the
operations), on connections the front door keeps alive (a thread each here). Handlers post to
@connections over HTTP, to the front door, as on AWS.

Each function's handler runs in a runtime process of its own, started from here
(local_stack/runtime.py); the front door invokes the route functions there directly, the
timer's tasks from here, and the handlers' DynamoDB and Step Functions requests come back here
(`aws_request`). With LOCAL_STACK_RUNTIMES=off the handlers run here, on a thread pool per
function (`invoke`).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import socket
import socketserver
import struct
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from local_stack import aws_faults, emulated_clock, runtime
from local_stack.aws_backend import MOTO_LOCK, MOTO_WORKER, AwsBackend, resolve_handler

FUNCTION_THREADS = 100  # concurrent invocations per function (Lambda's own limit is the account's: 1,000)
ENV_VARIABLE = "LOCAL_STACK_FUNCTIONS_ENV"  # the handlers' extra environment, as JSON, from the front door
_HEADER = struct.Struct("!I")


def send_frame(sock: socket.socket, payload: dict[str, Any]) -> None:
    data = json.dumps(payload, separators=(",", ":")).encode()
    sock.sendall(_HEADER.pack(len(data)) + data)


def read_frame(sock: socket.socket) -> dict[str, Any] | None:
    head = _read_exactly(sock, _HEADER.size)
    if head is None:
        return None
    body = _read_exactly(sock, _HEADER.unpack(head)[0])
    return None if body is None else json.loads(body)


def _read_exactly(sock: socket.socket, size: int) -> bytes | None:
    chunks, left = [], size
    while left:
        chunk = sock.recv(min(left, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _requests_to_moto_unsigned() -> Any:
    """The handlers' AWS requests go unsigned: they reach moto, which checks no signature.

    SigV4 proves who sent a request to AWS; moto only reads the access key from it, and without
    one uses the account the backend runs in (the same). Signing was 4 to 5% of this process's
    CPU in a hall (py-spy). IAM is not enforced here either (README, where it differs from AWS).
    """
    import boto3
    from botocore import UNSIGNED

    def unsigned(**_: Any) -> Any:
        return UNSIGNED

    if boto3.DEFAULT_SESSION is None:
        boto3.setup_default_session()
    assert boto3.DEFAULT_SESSION is not None
    boto3.DEFAULT_SESSION.events.register("choose-signer", unsigned)
    return unsigned  # to unregister (tests)


class Functions:
    """What the front door asks of the functions process."""

    def __init__(
        self,
        backend: AwsBackend,
        started_at: float,
        time_scale: float,
        extra: dict[str, str],
        socket_path: str | None = None,
        clock: emulated_clock.SharedClock | None = None,
    ) -> None:
        self.backend = backend
        self.started_at = started_at
        self.time_scale = time_scale
        # The stack's clock, shared with the front door and the runtimes (None: a fixed scale, as in tests).
        self.clock = clock
        self.governor: emulated_clock.Governor | None = None
        backend.clock = clock
        self.extra = extra
        self._pools: dict[str, ThreadPoolExecutor] = {}
        self._pools_lock = threading.Lock()
        self._handlers: dict[str, Any] = {}
        self._moto_app: Any = None
        self._function_of = {spec: logical_id for logical_id, spec in backend.functions.items()}
        # Each function's runtime process (local_stack/runtime.py), when given the socket they call back on.
        self.socket_path = socket_path
        self.runtimes: dict[str, runtime.Runtime] = {}

    def now(self) -> float:
        """The front door's emulated clock: the same start and scale."""
        if self.clock is not None:
            return self.clock.now()
        return self.started_at + (time.time() - self.started_at) * self.time_scale

    def start(self) -> None:
        import warnings

        warnings.filterwarnings("ignore", message="No application metrics to publish")
        self.backend.start()
        inherited = dict(os.environ)
        os.environ.update(self.backend.environment(self.extra))
        from broadcast import aws, clock, config

        _requests_to_moto_unsigned()  # clients built from here on (aws.reset() below)
        clock.use(self.now, scale=self.time_scale)
        config.reset()
        aws.reset()
        if self.socket_path is not None and runtime.enabled_by_environment():
            self._start_runtimes(inherited)
            return
        for spec in self.backend.functions.values():
            self._handler(spec)

    def _start_runtimes(self, inherited: dict[str, str]) -> None:
        """One process per function, with the function's own environment; the timer's tasks call them too."""
        path = os.pathsep.join([self.backend.code_dir, inherited.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        # The emulator's own additions (log level, metrics off) go to every function; a variable
        # the template declares goes only to the functions that declare it, as on AWS.
        # (One set in the shell that started the stack reaches only those functions too.)
        declared = self.backend.variable_names()
        local = {k: v for k, v in self.extra.items() if k.isupper() and k not in declared}
        base = {k: v for k, v in inherited.items() if k not in declared}
        environments = {
            function: {
                **base,
                "PYTHONPATH": path,
                **local,
                **self.backend.function_environment(function, self.extra),
            }
            for function in self.backend.functions
        }
        assert self.socket_path is not None
        self.runtimes = runtime.start_runtimes(
            self.backend.functions,
            environments,
            aws_socket=self.socket_path,
            directory=os.path.dirname(self.socket_path),
            started_at=self.started_at,
            time_scale=self.time_scale,
            clock_path=self.clock.path if self.clock is not None else None,
        )
        self.backend.route_invocations({function: r.handler for function, r in self.runtimes.items()})

    def stop(self) -> None:
        if self.governor is not None:
            self.governor.stop()
        for started in self.runtimes.values():
            started.stop()
        for pool in self._pools.values():
            pool.shutdown(wait=False, cancel_futures=True)
        self.backend.stop()

    def _handler(self, spec: str) -> Any:
        if spec not in self._handlers:
            self._handlers[spec] = resolve_handler(spec)
        return self._handlers[spec]

    def _pool(self, spec: str) -> ThreadPoolExecutor:
        """Each function runs on threads of its own, as Lambda scales each function separately."""
        with self._pools_lock:
            if spec not in self._pools:
                name = spec.rsplit(".", 2)[-2] if spec.count(".") >= 2 else spec
                self._pools[spec] = ThreadPoolExecutor(max_workers=FUNCTION_THREADS, thread_name_prefix=name)
            return self._pools[spec]

    # -- operations ------------------------------------------------------------------------------

    def op_ping(self) -> dict[str, Any]:
        # the front door invokes the route functions in their runtimes directly (handler spec -> socket)
        runtimes = {self.backend.functions[f]: r.path for f, r in self.runtimes.items()}
        return {"pid": os.getpid(), "runtimes": runtimes}

    def op_invoke(self, spec: str, event: dict[str, Any]) -> dict[str, Any]:
        function = self._function_of.get(spec, spec)

        def call() -> dict[str, Any]:
            started = time.perf_counter()
            try:
                result = self._handler(spec)(event, None)
                return {"result": result, "millis": (time.perf_counter() - started) * 1000}
            except Exception as exc:  # noqa: BLE001 - reported to the front door like Lambda's Unhandled error
                return {
                    "errorType": type(exc).__name__,
                    "errorMessage": str(exc),
                    "millis": (time.perf_counter() - started) * 1000,
                }

        # In flight from here until it returns, its wait for a thread included (aws_faults.LambdaConcurrency).
        with aws_faults.invocation(function) as admitted:
            if not admitted:
                return {
                    "errorType": "TooManyRequestsException",
                    "errorMessage": aws_faults.THROTTLED_MESSAGE,
                    "millis": 0.0,
                }
            if function in self.runtimes:
                return self.runtimes[function].invoke(event)
            return self._pool(spec).submit(call).result()

    def op_table(self, logical_id: str) -> dict[str, Any]:
        """Local only: every item of a template table."""
        import boto3

        from broadcast.dynamo import from_item

        name = self.backend.table_names.get(logical_id)
        if name is None:
            return {
                "status": 404,
                "payload": {"message": f"no table {logical_id}", "tables": sorted(self.backend.table_names)},
            }
        paginator = boto3.client("dynamodb", region_name="us-east-1").get_paginator("scan")
        items = [from_item(item) for page in paginator.paginate(TableName=name) for item in page["Items"]]
        return {"status": 200, "payload": {"table": logical_id, "count": len(items), "items": items}}

    def op_seed(self, now_ms: int) -> dict[str, Any]:
        import boto3

        from local_stack import seed

        seed.seed(boto3.client("dynamodb", region_name="us-east-1"), self.backend.table_names, now_ms)
        return {"connections": sorted(seed.CONNECTIONS), "session": seed.SESSION_ID}

    def op_faults(self) -> dict[str, Any]:
        contention, throttling, concurrency = aws_faults.ACTIVE, aws_faults.THROTTLING, aws_faults.CONCURRENCY
        return {
            "transactionConflicts": contention.transaction_conflicts if contention else 0,
            "writeConflicts": contention.write_conflicts if contention else 0,
            "stepFunctionsThrottled": sum(b.refused for b in throttling.buckets.values()) if throttling else 0,
            "injectedFaults": throttling.injected if throttling else 0,
            # per function: invocations refused beyond its reserved concurrency, and the most in flight at once
            "lambdaThrottled": dict(sorted(concurrency.throttled.items())) if concurrency else {},
            "lambdaPeakConcurrency": dict(sorted(concurrency.peak.items())) if concurrency else {},
            # the template's reserved concurrency, times TIME_SCALE (aws_faults.LambdaConcurrency)
            "lambdaConcurrencyLimits": dict(concurrency.limits) if concurrency else {},
        }

    def op_aws(self, method: str, target: str, headers: dict[str, str], body: str) -> dict[str, Any]:
        """A DynamoDB or Step Functions call from another process, answered by moto's server app."""
        from urllib.parse import urlsplit

        from werkzeug.test import EnvironBuilder, run_wsgi_app

        if self._moto_app is None:
            from moto.server import DomainDispatcherApplication, create_backend_app

            self._moto_app = DomainDispatcherApplication(create_backend_app)
        parts = urlsplit(target)
        environ = EnvironBuilder(
            path=parts.path, query_string=parts.query, method=method, headers=headers, data=base64.b64decode(body)
        ).get_environ()
        with MOTO_LOCK:  # the same lock the handlers' requests take
            app_iter, status, response_headers = run_wsgi_app(self._moto_app, environ, buffered=True)
            data = b"".join(app_iter)
        return {"status": status, "headers": dict(response_headers.items()), "body": base64.b64encode(data).decode()}

    def op_aws_request(
        self, event_name: str, method: str, url: str, headers: dict[str, str], body: str
    ) -> dict[str, Any]:
        """A runtime's DynamoDB or Step Functions request (local_stack/runtime.py), answered by moto.

        Through the same botocore `before-send` handler as a request made in this process: the
        emulated faults, MOTO_LOCK and moto's own stubber."""
        from botocore.awsrequest import AWSPreparedRequest
        from botocore.compat import HTTPHeaders
        from moto.core.models import botocore_stubber

        prepared = HTTPHeaders()
        for key, value in headers.items():
            prepared[key] = value
        request = AWSPreparedRequest(method=method, url=url, headers=prepared, body=body.encode(), stream_output=False)
        response = botocore_stubber(event_name, request)
        if response is None:
            return {"failure": f"moto does not answer {event_name}"}
        headers = dict(response.headers.items())
        return {"status": response.status_code, "headers": headers, "body": response.content.decode()}

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        operation = getattr(self, f"op_{request.pop('op', '')}", None)
        if operation is None:
            return {"failure": "unknown operation"}
        try:
            return operation(**request)
        except Exception as exc:  # noqa: BLE001 - the front door reports it; this process goes on
            return {"failure": f"{type(exc).__name__}: {exc}"}


def serve(functions: Functions, path: str) -> socketserver.ThreadingUnixStreamServer:
    """Answer requests on a Unix socket, each connection on a thread of its own."""

    class Handler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            # The front door closes a connection whose caller gave up (a handshake cancelled, say).
            with contextlib.suppress(ConnectionError):
                while (request := read_frame(self.request)) is not None:
                    send_frame(self.request, functions.handle(request))

    class Server(socketserver.ThreadingUnixStreamServer):
        daemon_threads = True
        request_queue_size = 1024  # a burst of invocations connects at once (the default is 5)

    return Server(path, Handler)


def _exit_with_parent(parent: int) -> None:
    """Never outlive the front door (killed, say, without the chance to stop this process)."""
    while os.getppid() == parent:
        time.sleep(1)
    os._exit(0)


def main() -> None:
    parser = argparse.ArgumentParser(description="the local stack's functions process (started by the front door)")
    parser.add_argument("--socket", required=True)
    parser.add_argument("--template", type=Path, required=True)
    parser.add_argument("--time-scale", type=float, required=True)
    parser.add_argument("--started-at", type=float, required=True)
    parser.add_argument("--clock", help="the stack's shared clock file (emulated_clock)")
    parser.add_argument("--param", action="append", default=[])
    args = parser.parse_args()
    parameters = dict(item.split("=", 1) for item in args.param)
    backend = AwsBackend(args.template, time_scale=args.time_scale, parameters=parameters)
    extra = json.loads(os.environ.get(ENV_VARIABLE, "{}"))
    clock = emulated_clock.SharedClock(args.clock) if args.clock else None
    functions = Functions(backend, args.started_at, args.time_scale, extra, socket_path=args.socket, clock=clock)
    functions.start()
    if clock is not None and emulated_clock.dilation_by_environment():
        # Moto's queue is where the emulator falls behind first; the front door's event loop, which
        # carries every frame to every listener, reports its own lateness through the clock's file.
        functions.governor = emulated_clock.Governor(
            clock,
            args.time_scale,
            lambda: max(MOTO_WORKER.backlog(), clock.backlog("front door")),
            busy=emulated_clock.machine_busy(),
        ).start()
    server = serve(functions, args.socket)
    import signal

    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown, daemon=True).start())
    # Ctrl-C in `make local` reaches the whole process group: the front door stops this process.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True).start()
    try:
        server.serve_forever(poll_interval=0.5)
    finally:
        functions.stop()


if __name__ == "__main__":
    main()
