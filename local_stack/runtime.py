"""Lambda's execution environments: each function's handler in a process of its own.

On AWS a function runs in execution environments of its own, with CPU of its own, apart from the
services it calls. The functions process (local_stack/functions.py) used to run every handler on
its threads, beside moto and the timer's engine, under one GIL: one process could use one core
of the machine, and a hall's refresh burst (hundreds of `$connect`, `$disconnect` and notices at
once) took the CPU the audio fan-out needed, so frames waited behind unrelated work and were
late. Now the functions process keeps what AWS's services do there (moto, the Step Functions
engine, the Lambda service's concurrency count) and starts one of these per function:

- it answers invocations on a Unix socket (`{"event": ...}` in, the handler's result or error
  out), each connection on a thread of its own, so one process runs a function's concurrent
  invocations as Lambda's environments would;
- its handler's DynamoDB and Step Functions requests go back to the functions process over its
  socket (`aws_request`), where moto answers them, as they would travel to AWS over HTTPS. The
  @connections posts go straight to the front door, as before;
- its environment is the function's own, as the template declares it (not the union of every
  function's, as in one process).

`LOCAL_STACK_RUNTIMES=off` runs the handlers in the functions process again (one process to
debug, for a breakpoint say).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import socketserver
import subprocess
import sys
import threading
import time
from typing import Any

SWITCH = "LOCAL_STACK_RUNTIMES"
SERVICES = ("dynamodb", "sfn")  # what a handler calls that moto answers (event names use these ids)


def enabled_by_environment() -> bool:
    """The documented switch: LOCAL_STACK_RUNTIMES=off runs every handler in the functions process."""
    return os.environ.get(SWITCH, "on").lower() not in ("off", "0", "false", "no")


class RemoteError(Exception):
    """A handler's unhandled error, as its runtime reported it (Lambda's errorType and errorMessage)."""

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(message)
        self.error_type = error_type


# -- the functions process's side ------------------------------------------------------------------


class Runtime:
    """One function's runtime process, and the kept-alive connections its invocations travel on."""

    def __init__(self, function: str, path: str, process: subprocess.Popen[bytes]) -> None:
        self.function = function
        self.path = path
        self.process = process
        self._idle: list[socket.socket] = []
        self._lock = threading.Lock()

    def _connection(self) -> socket.socket:
        with self._lock:
            if self._idle:
                return self._idle.pop()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(self.path)
        return sock

    def invoke(self, event: dict[str, Any]) -> dict[str, Any]:
        """Run the handler on `event`: {"result": ...} or {"errorType", "errorMessage"}, with "millis"."""
        from local_stack.functions import read_frame, send_frame

        sock = self._connection()
        try:
            send_frame(sock, {"event": event})
            reply = read_frame(sock)
        except BaseException:
            sock.close()
            raise
        if reply is None:
            sock.close()
            raise RuntimeError(f"the {self.function} runtime closed the connection (exit code {self.process.poll()})")
        with self._lock:
            self._idle.append(sock)
        return reply

    def handler(self, event: dict[str, Any], _context: Any) -> Any:
        """A handler's signature, for the Step Functions bridge: the result, or RemoteError raised."""
        reply = self.invoke(event)
        if "errorType" in reply:
            raise RemoteError(reply["errorType"], reply.get("errorMessage", ""))
        return reply.get("result")

    def ready(self) -> bool:
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.connect(self.path)
            return True
        except OSError:
            return False

    def stop(self) -> None:
        with self._lock:
            for sock in self._idle:
                sock.close()
            self._idle.clear()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
        with contextlib.suppress(OSError):
            os.unlink(self.path)


def start_runtimes(
    functions: dict[str, str],
    environments: dict[str, dict[str, str]],
    *,
    aws_socket: str,
    directory: str,
    started_at: float,
    time_scale: float,
    clock_path: str | None = None,
    timeout: float = 60,
) -> dict[str, Runtime]:
    """Start one runtime per function (logical id -> handler spec), all at once; wait until each answers."""
    runtimes: dict[str, Runtime] = {}
    for function, spec in functions.items():
        path = os.path.join(directory, f"{function}.sock")
        command = [
            sys.executable, "-m", "local_stack.runtime",
            "--socket", path, "--aws-socket", aws_socket, "--function", function, "--handler", spec,
            "--time-scale", repr(time_scale), "--started-at", repr(started_at),
        ]  # fmt: skip
        if clock_path is not None:
            command += ["--clock", clock_path]
        # Its output (the handler's logs) goes where the functions process's goes.
        process = subprocess.Popen(command, env=environments[function])  # noqa: S603 - our own module
        runtimes[function] = Runtime(function, path, process)
    deadline = time.monotonic() + timeout
    waiting = dict(runtimes)
    while waiting:
        for function, runtime in list(waiting.items()):
            if runtime.process.poll() is not None:
                for started in runtimes.values():
                    started.stop()
                raise RuntimeError(f"the {function} runtime exited with {runtime.process.returncode}")
            if runtime.ready():
                del waiting[function]
        if waiting and time.monotonic() > deadline:
            for started in runtimes.values():
                started.stop()
            raise RuntimeError(f"runtimes not answering: {', '.join(sorted(waiting))}")
        time.sleep(0.05)
    return runtimes


# -- the runtime process ---------------------------------------------------------------------------


class AwsOverSocket:
    """Sends the handler's DynamoDB and Step Functions requests to the functions process (moto).

    A botocore `before-send` hook, as moto's own: it returns the response, so botocore never opens
    an HTTP connection, and everything before it (serializing, retries, parsing) runs as on AWS.
    One kept-alive connection per thread."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._local = threading.local()

    def _socket(self) -> socket.socket:
        sock = getattr(self._local, "sock", None)
        if sock is None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.connect(self.path)
            self._local.sock = sock
        return sock

    def __call__(self, event_name: str, request: Any, **_kwargs: Any) -> Any:
        from botocore.awsrequest import AWSResponse

        from local_stack.aws_faults import RawBody
        from local_stack.functions import read_frame, send_frame

        if event_name.split(".")[1] not in SERVICES:
            return None  # @connections and anything else: over HTTP, as the request says
        body = request.body or b""
        if hasattr(body, "read"):
            body = body.read()
        frame = {
            "op": "aws_request",
            "event_name": event_name,
            "method": request.method,
            "url": request.url,
            "headers": {k: v.decode() if isinstance(v, bytes) else v for k, v in request.headers.items()},
            "body": body.decode() if isinstance(body, bytes) else body,
        }
        sock = self._socket()
        try:
            send_frame(sock, frame)
            reply = read_frame(sock)
        except BaseException:
            self._local.sock = None
            sock.close()
            raise
        if reply is None or "failure" in reply:
            self._local.sock = None
            sock.close()
            raise RuntimeError(f"the functions process did not answer {event_name}: {reply}")
        return AWSResponse(request.url, reply["status"], reply["headers"], RawBody(reply["body"].encode()))


def _serve(path: str, handler: Any) -> socketserver.ThreadingUnixStreamServer:
    from local_stack.functions import read_frame, send_frame

    class Handler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            with contextlib.suppress(ConnectionError):
                while (request := read_frame(self.request)) is not None:
                    started = time.perf_counter()
                    try:
                        reply = {"result": handler(request["event"], None)}
                    except Exception as exc:  # noqa: BLE001 - reported like Lambda's Unhandled error
                        reply = {"errorType": type(exc).__name__, "errorMessage": str(exc)}
                    reply["millis"] = (time.perf_counter() - started) * 1000
                    send_frame(self.request, reply)

    class Server(socketserver.ThreadingUnixStreamServer):
        daemon_threads = True
        request_queue_size = 1024  # a burst of invocations connects at once

    with contextlib.suppress(OSError):
        os.unlink(path)
    return Server(path, Handler)


def main() -> None:
    parser = argparse.ArgumentParser(description="one function's runtime (started by the functions process)")
    parser.add_argument("--socket", required=True)
    parser.add_argument("--aws-socket", required=True)
    parser.add_argument("--function", required=True)
    parser.add_argument("--handler", required=True)
    parser.add_argument("--time-scale", type=float, required=True)
    parser.add_argument("--started-at", type=float, required=True)
    parser.add_argument("--clock", help="the stack's shared clock file (emulated_clock)")
    args = parser.parse_args()

    import signal
    import warnings

    import boto3

    from broadcast import aws, clock, config
    from local_stack.aws_backend import resolve_handler
    from local_stack.functions import _exit_with_parent, _requests_to_moto_unsigned

    warnings.filterwarnings("ignore", message="No application metrics to publish")
    _requests_to_moto_unsigned()
    assert boto3.DEFAULT_SESSION is not None
    boto3.DEFAULT_SESSION.events.register("before-send", AwsOverSocket(args.aws_socket))
    started_at, scale = args.started_at, args.time_scale
    if args.clock:
        from local_stack.emulated_clock import SharedClock

        clock.use(SharedClock(args.clock).now, scale=scale)
    else:
        clock.use(lambda: started_at + (time.time() - started_at) * scale, scale=scale)
    config.reset()
    aws.reset()
    handler = resolve_handler(args.handler)
    server = _serve(args.socket, handler)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown, daemon=True).start())
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the functions process stops this one
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True).start()
    with server:
        server.serve_forever(poll_interval=0.5)


if __name__ == "__main__":
    main()
