"""An API Gateway WebSocket emulator that serves template.yaml's routes with the real handlers.

One TCP port, like API Gateway: a front door reads each request head and either pipes a
WebSocket upgrade to an internal `websockets` server (on a Unix socket), or answers plain
HTTP itself: the @connections management API, the local issuer's JWKS, and the AWS APIs of
the functions process (DynamoDB and Step Functions, moto's server app), so a handler in
another process (`make invoke`, `sam local invoke`) can use this stack's tables.
(`websockets` refuses requests with a body, so POST /@connections cannot be served by it.)

The handlers, moto and the timer run in a second process (local_stack/functions.py), started
here and called over a Unix socket, as API Gateway calls Lambda: this process's event loop
never waits for the GIL behind them.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import random
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from websockets.asyncio.server import ServerConnection, unix_serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from local_stack import aws_faults, emulated_clock, functions, tokens, web
from local_stack import template as cfn
from local_stack.aws_backend import AwsBackend

MAX_MESSAGE_BYTES = 128 * 1024  # API Gateway's WebSocket message limit (close 1009 above it)
MAX_CONNECTION_SECONDS = 2 * 3600
IDLE_TIMEOUT_SECONDS = 10 * 60
HEAD_LIMIT = 16 * 1024
LOCAL_TABLES = "/_local/tables/"  # local-only inspection: GET /_local/tables/SessionsTable
LOCAL_SEED = "/_local/seed"  # local-only: POST writes the state events/ refers to (local_stack/seed.py)
LOCAL_FAULTS = "/_local/faults"  # local-only: what the emulated AWS failure modes did so far
LOCAL_CLOCK = "/_local/clock"  # local-only: the stack's clock (emulated_clock: its file, now, rate)
# Where a container reaches the host: Docker Desktop names it; on Linux, sam local invoke
# --add-host host.docker.internal:host-gateway does (README: Trying one function).
DOCKER_HOST = "host.docker.internal"
LIMIT_EXCEEDED = {"x-amzn-ErrorType": "LimitExceededException"}
CALL_CONNECTIONS = 256  # connections to the functions process at once (local_stack/functions.py)
KEEP_ALIVE_SECONDS = 60  # an idle kept-alive HTTP connection is closed after this


@dataclass
class LocalConnection:
    """A live client connection as the emulator tracks it."""

    connection_id: str
    websocket: ServerConnection
    connected_at_ms: int
    source_ip: str
    user_agent: str
    authorizer: dict[str, Any]
    last_active: float = 0.0  # emulated epoch seconds (the clock's): the last message either way
    last_active_ms: int = 0
    # Route integrations running for it: the idle timeout does not run meanwhile. On AWS an
    # integration ends within 29 s, far inside the 10-minute idle timeout; compressed by
    # TIME_SCALE, a join's reply (which waits for the listener's audio start, real time) would
    # otherwise outlast it.
    invocations: int = 0


@dataclass
class Invocation:
    """What one handler call returned, or raised."""

    result: Any = None
    error: BaseException | None = None
    millis: float = 0.0


class Emulator:
    """The local API Gateway: routes from template.yaml, the management API, limits, time scale."""

    def __init__(
        self,
        template_path: Path = cfn.TEMPLATE,
        *,
        host: str = "127.0.0.1",
        port: int = 8080,
        time_scale: float = 1.0,
        stage: str | None = None,
        log: Callable[[str], None] | None = None,
        parameters: dict[str, str] | None = None,
        env_file: Path | None = None,
        seed: bool = False,
        lost_disconnects: float | None = None,
        connections_rate: float | None = None,
    ) -> None:
        self.template_path = template_path
        self.template = cfn.load(template_path)
        self.host = host
        self.port = port
        self.time_scale = time_scale
        parameters = dict(parameters or {})
        default_stage = self.template.get("Parameters", {}).get("StageName", {}).get("Default", "local")
        self.stage = stage or parameters.get("StageName") or str(default_stage)
        self.routes = cfn.routes(self.template)
        self.access_log_format = cfn.access_log_format(self.template)
        self.connections: dict[str, LocalConnection] = {}
        self._pending: dict[int, LocalConnection] = {}
        self._log = log or (lambda line: print(line, flush=True))
        self._socket_dir = tempfile.mkdtemp(prefix="local-stack-")
        self._socket_path = os.path.join(self._socket_dir, "ws.sock")
        self._functions_path = os.path.join(self._socket_dir, "functions.sock")
        self._idle_calls: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        # Each function's runtime process (local_stack/runtime.py), as the functions process names them
        self._runtime_paths: dict[str, str] = {}
        self._runtime_slots: dict[str, asyncio.Semaphore] = {}
        self._idle_runtime: dict[str, list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]] = {}
        self._concurrency: aws_faults.LambdaConcurrency | None = None  # the routes' reserved concurrency
        self._call_slots = asyncio.Semaphore(CALL_CONNECTIONS)
        self._started_at = time.time()
        # One clock for every process of this stack (local_stack/emulated_clock.py says why it may slow).
        self.clock = emulated_clock.SharedClock.create(
            os.path.join(self._socket_dir, "clock"), started_at=self._started_at, scale=time_scale
        )
        self.backend = AwsBackend(template_path, time_scale=time_scale, parameters=parameters)
        self._function_of = {spec: logical_id for logical_id, spec in self.backend.functions.items()}
        self.env_file = env_file
        self.seed_on_start = seed
        # AWS's failure modes (README: "What the local stack emulates"). $disconnect is best effort:
        # a fraction is never delivered. @connections answers 429 LimitExceededException above a
        # rate (the account's 10,000 requests per second by default), and injected faults (429,
        # 500) at LOCAL_STACK_FAULT_RATE.
        env = os.environ
        self.lost_disconnects = float(
            env.get("LOCAL_STACK_LOST_DISCONNECTS", "0") if lost_disconnects is None else lost_disconnects
        )
        rate = float(env.get("LOCAL_STACK_CONNECTIONS_RATE", "10000") if connections_rate is None else connections_rate)
        self.connections_bucket = aws_faults.TokenBucket(rate, rate)
        self.fault_rate = aws_faults.fault_rate_from_environment() if aws_faults.enabled_by_environment() else 0.0
        self.disconnects_lost = 0
        self._random = random.Random()
        self.seeded: set[str] = set()  # connection ids that events/ uses: live for the management API
        self.sign_in = web.LocalSignIn()
        self._config = b"{}"
        self._extra_env: dict[str, str] = {}

    # -- time ----------------------------------------------------------------------------------

    def now(self) -> float:
        """Emulated epoch seconds: with time_scale 600 one real second counts as ten minutes."""
        return self.clock.now()

    def now_ms(self) -> int:
        return int(self.now() * 1000)

    async def _report_lateness(self, every: float = 0.1) -> None:
        """This event loop's lateness, for the clock's governor (emulated_clock): every frame to every
        listener goes through it, so a loop that wakes late means frames that arrive late."""
        late = 0.0
        while True:
            planned = time.monotonic() + every
            await asyncio.sleep(every)
            # The worst of the last second or so, decaying: one late wake-up is not a trend, many are.
            late = max(time.monotonic() - planned, late * 0.9)
            self.clock.report_backlog("front door", late)

    # -- start and stop --------------------------------------------------------------------------

    async def start(self) -> None:
        """Bind the port, start the functions process (moto and the handlers) and serve the WebSockets."""
        self._front = await asyncio.start_server(self._front_door, self.host, self.port, limit=HEAD_LIMIT)
        self.port = self._front.sockets[0].getsockname()[1]
        self._configure_handlers()
        await self._start_functions()
        if emulated_clock.dilation_by_environment():
            self._lateness = asyncio.create_task(self._report_lateness())
        if self.seed_on_start:
            await self._seed()
        if self.env_file is not None:
            self.write_env_file(self.env_file)
        self.write_page_config()
        self._internal = await unix_serve(
            self._session,
            path=self._socket_path,
            process_request=self._handshake,
            max_size=MAX_MESSAGE_BYTES,
            ping_interval=None,
            server_header=None,
            # No permessage-deflate: deflating every audio frame for every listener took a tenth
            # of the emulator's one core, and clients must not depend on compression anyway.
            compression=None,
        )
        self._loop = asyncio.get_running_loop()

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}/{self.stage}"

    @property
    def management_endpoint(self) -> str:
        return f"http://{self.host}:{self.port}/{self.stage}"

    def _configure_handlers(self) -> None:
        """The handlers' environment: the template's, pointed at this stack (they run in the functions process)."""
        self._extra_env = {
            "MANAGEMENT_ENDPOINT": self.management_endpoint,
            **self._issuer(),
            "POWERTOOLS_METRICS_DISABLED": "true",
            "POWERTOOLS_LOG_LEVEL": os.environ.get("POWERTOOLS_LOG_LEVEL", "WARNING"),
            "StageName": self.stage,
            # On AWS a Secrets Manager secret generated by the stack; here a fresh key per run.
            "RESUME_TOKEN_KEY": os.environ.get("RESUME_TOKEN_KEY") or secrets.token_urlsafe(32),
        }
        # The timer's ARN, as moto will name it, for the environment files (`make invoke`).
        self.backend.state_machine_arns = self.backend.predicted_state_machine_arns()

    async def _start_functions(self, timeout: float = 120) -> None:
        """Start the functions process (local_stack/functions.py) and wait until it answers."""
        command = [
            sys.executable, "-m", "local_stack.functions",
            "--socket", self._functions_path,
            "--template", str(self.template_path),
            "--time-scale", repr(self.time_scale),
            "--started-at", repr(self._started_at),
            "--clock", self.clock.path,
        ]  # fmt: skip
        for name, value in self.backend.parameters.items():
            command += ["--param", f"{name}={value}"]
        env = {
            **os.environ,
            functions.ENV_VARIABLE: json.dumps(self._extra_env),
            "PYTHONPATH": os.pathsep.join([str(cfn.ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        }
        # Its output (handlers' logs, the timer's errors) goes where this process's goes.
        self._functions_process = subprocess.Popen(command, cwd=cfn.ROOT, env=env)  # noqa: S603 - our own module
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._functions_process.poll() is not None:
                raise RuntimeError(f"the functions process exited with {self._functions_process.returncode}")
            with contextlib.suppress(OSError):
                answer = await self._call("ping")
                self._runtime_paths = answer.get("runtimes", {})
                self._runtime_slots = {
                    spec: asyncio.Semaphore(functions.FUNCTION_THREADS) for spec in self._runtime_paths
                }
                self._idle_runtime = {spec: [] for spec in self._runtime_paths}
                if (
                    self._runtime_paths
                    and aws_faults.enabled_by_environment()
                    and aws_faults.concurrency_by_environment()
                ):
                    self._concurrency = aws_faults.LambdaConcurrency(
                        self.backend.reserved_concurrency(), self.time_scale
                    )
                return
            await asyncio.sleep(0.1)
        raise RuntimeError("the functions process did not answer")

    async def _call(self, op: str, **arguments: Any) -> dict[str, Any]:
        """One request to the functions process, on an idle kept-alive connection or a new one.

        At most CALL_CONNECTIONS at once (a thread each over there): a hall's burst of messages
        waits here for a connection instead of opening hundreds at the same instant."""
        async with self._call_slots:
            reply = await self._exchange(self._functions_path, self._idle_calls, {"op": op, **arguments})
        if "failure" in reply:
            raise RuntimeError(f"functions process: {reply['failure']}")
        return reply

    @staticmethod
    async def _exchange(
        path: str, idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]], request: dict[str, Any]
    ) -> dict[str, Any]:
        """One length-prefixed JSON request and its reply (local_stack/functions.py's framing)."""
        reader, writer = idle.pop() if idle else await asyncio.open_unix_connection(path, limit=1 << 24)
        try:
            data = json.dumps(request, separators=(",", ":")).encode()
            writer.write(len(data).to_bytes(4, "big") + data)
            await writer.drain()
            size = int.from_bytes(await reader.readexactly(4), "big")
            reply = json.loads(await reader.readexactly(size))
        except BaseException:
            writer.close()
            raise
        idle.append((reader, writer))
        return reply

    async def _call_runtime(self, spec: str, event: dict[str, Any]) -> dict[str, Any]:
        """Invoke a function in its runtime process directly, as API Gateway invokes Lambda.

        Not through the functions process: there every forwarded invocation was a thread doing
        JSON work beside moto's requests under one GIL, and in a hall's refresh burst those
        threads (hundreds) held up the moto requests that everything waits for. Lambda's
        reserved concurrency is counted here for these invocations (and there for the timer's)."""
        function = self._function_of.get(spec, spec)
        concurrency = self._concurrency
        if concurrency is not None and not concurrency.enter(function):
            return {
                "errorType": "TooManyRequestsException",
                "errorMessage": aws_faults.THROTTLED_MESSAGE,
                "millis": 0.0,
            }
        try:
            async with self._runtime_slots[spec]:
                return await self._exchange(self._runtime_paths[spec], self._idle_runtime[spec], {"event": event})
        finally:
            if concurrency is not None:
                concurrency.leave(function)

    def _issuer(self) -> dict[str, str]:
        """Whose tokens the authorizer accepts: the development key's, or the issuer given as PARAMS.

        `make local PARAMS="JwtIssuer=... JwksUrl=... JwtClientId=..."` verifies tokens from that
        issuer (a real Cognito pool, say), as the template does when JwtIssuer is set.
        """
        issuer = self.backend.parameters.get("JwtIssuer", "")
        if not issuer:
            return {
                "JWT_ISSUER": tokens.ISSUER,
                "JWKS_URL": f"http://{self.host}:{self.port}{tokens.JWKS_PATH}",
                "JWT_CLIENT_ID": tokens.CLIENT_ID,
            }
        client_id = self.backend.parameters.get("JwtClientId", "")
        if not client_id:
            raise ValueError("JwtIssuer needs JwtClientId (as the template requires)")
        jwks_url = self.backend.parameters.get("JwksUrl") or f"{issuer.rstrip('/')}/.well-known/jwks.json"
        return {"JWT_ISSUER": issuer, "JWKS_URL": jwks_url, "JWT_CLIENT_ID": client_id}

    def function_environments(self, host: str) -> dict[str, dict[str, str]]:
        """What `sam local invoke --env-vars` takes: every function's environment, pointed at this stack via `host`."""
        endpoint = f"http://{host}:{self.port}"
        # The emulator quiets its own handlers' logs; an invoked function logs at the template's level.
        extra = {
            **{k: v for k, v in self._extra_env.items() if k != "POWERTOOLS_LOG_LEVEL"},
            "MANAGEMENT_ENDPOINT": f"{endpoint}/{self.stage}",
            **({} if self.backend.parameters.get("JwtIssuer") else {"JWKS_URL": f"{endpoint}{tokens.JWKS_PATH}"}),
            "AWS_ENDPOINT_URL": endpoint,
        }
        return {function: self.backend.function_environment(function, extra) for function in self.backend.functions}

    def write_env_file(self, path: Path) -> None:
        """Write the functions' environments for a container (sam local invoke) to reach this stack."""
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.function_environments(DOCKER_HOST), indent=2, sort_keys=True) + "\n")

    async def _seed(self) -> None:
        seeded = await self._call("seed", now_ms=self.now_ms())
        self.seeded = set(seeded["connections"])
        self._log(f"SEEDED session {seeded['session']} and {len(self.seeded)} connections (local_stack/seed.py)")

    async def serve_forever(self, ready: Callable[[str], None] | None = None) -> None:
        await self.start()
        self._log(f"SPEAKER PAGE  {self.web_origin}/speaker.html")
        self._log(f"LISTENER PAGE {self.web_origin}/?session=SESSION_ID&lang=es")
        (ready or (lambda url: print(f"READY {url}", flush=True)))(self.url)
        try:
            await asyncio.Event().wait()
        finally:
            await self.close()

    async def close(self) -> None:
        lateness = getattr(self, "_lateness", None)
        if lateness is not None:
            lateness.cancel()
        for connection in list(self.connections.values()):
            with contextlib.suppress(Exception):
                await connection.websocket.close(1001, "Going away")
        self._front.close()
        self._internal.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._internal.wait_closed(), 5)
        process = getattr(self, "_functions_process", None)
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                await asyncio.get_running_loop().run_in_executor(None, process.wait, 10)
            except subprocess.TimeoutExpired:
                process.kill()
        with contextlib.suppress(OSError):
            os.unlink(self._functions_path)
        self.clock.close()
        for leftover in (self._socket_path, self.clock.path):
            with contextlib.suppress(OSError):
                os.unlink(leftover)
        with contextlib.suppress(OSError):
            os.rmdir(self._socket_dir)

    # -- the front door: one port for WebSocket and plain HTTP ---------------------------------

    async def _front_door(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername") or ("127.0.0.1", 0)
        # Plain HTTP is kept alive, as API Gateway's endpoints are: a fan-out's posts reuse their
        # connections instead of opening one per post.
        while True:
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), KEEP_ALIVE_SECONDS)
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ConnectionError):
                writer.close()
                return
            lines = head.decode("latin-1").split("\r\n")
            method, _, rest = lines[0].partition(" ")
            target = rest.rpartition(" ")[0]
            headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
            if headers.get("upgrade", "").lower() == "websocket":
                await self._pipe_to_websocket_server(head, peer[0], reader, writer)
                return
            length = int(headers.get("content-length", "0") or 0)
            try:
                body = await reader.readexactly(length) if length else b""
            except (asyncio.IncompleteReadError, ConnectionError):
                writer.close()
                return
            keep_alive = headers.get("connection", "").lower() != "close"
            status, response_headers, data = await self._http(method, target, headers, body)
            if not await _respond(writer, status, response_headers, data, keep_alive=keep_alive):
                return

    async def _pipe_to_websocket_server(
        self, head: bytes, source_ip: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            inner_reader, inner_writer = await asyncio.open_unix_connection(self._socket_path)
        except OSError:
            writer.close()
            return
        # The internal server sees every client as the Unix socket; pass the real address on.
        forwarded = head[:-2] + f"X-Forwarded-For: {source_ip}\r\n\r\n".encode()
        inner_writer.write(forwarded)

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, asyncio.CancelledError):
                pass
            finally:
                with contextlib.suppress(Exception):
                    dst.close()

        await asyncio.gather(pump(reader, inner_writer), pump(inner_reader, writer))

    async def _http(
        self, method: str, target: str, headers: dict[str, str], body: bytes
    ) -> tuple[HTTPStatus | str, dict[str, str], bytes]:
        """Answer one plain HTTP request: (status, headers, body)."""
        path = urlsplit(target).path
        prefix = f"/{self.stage}/@connections/"
        status, payload, extra_headers = HTTPStatus.NOT_FOUND, {"message": "Not Found"}, {}
        if not path.startswith(prefix) and _is_aws_api_call(headers):
            return await self._aws_api(method, target, headers, body)
        page = self._web(method, target, body)
        if page is not None:
            return page
        if method == "POST" and path == LOCAL_SEED:
            await self._seed()
            status, payload = HTTPStatus.OK, {"seeded": sorted(self.seeded)}
        elif method == "GET" and path == LOCAL_FAULTS:
            status, payload = HTTPStatus.OK, await self.faults_report()
        elif method == "GET" and path == LOCAL_CLOCK:
            status, payload = HTTPStatus.OK, self.clock_report()
        elif method == "GET" and path == tokens.JWKS_PATH:
            status, payload = HTTPStatus.OK, tokens.jwks()
        elif method == "GET" and path.startswith(LOCAL_TABLES):
            status, payload = await self._table_dump(path[len(LOCAL_TABLES) :])
        elif path.startswith(prefix):
            connection_id = unquote(path[len(prefix) :])
            status, payload, extra_headers = await self._manage(method, connection_id, body)
        data = b"" if payload is None else json.dumps(payload).encode()
        return status, {"Content-Type": "application/json", **extra_headers}, data

    def _web(self, method: str, target: str, body: bytes) -> web.Response | None:
        """The pages, their configuration and the development sign-in; None for anything else."""
        parts = urlsplit(target)
        if method == "GET" and parts.path == "/config.json":
            return HTTPStatus.OK, {"Content-Type": "application/json", "Cache-Control": "no-store"}, self._config
        if parts.path == "/oauth2/authorize":
            if method == "POST":
                return self.sign_in.authorize_submit(body)
            return self.sign_in.authorize_form(parts.query)
        if method == "POST" and parts.path == "/oauth2/token":
            return self.sign_in.token(body)
        if method == "GET":
            return web.static_file(parts.path)
        return None

    @property
    def web_origin(self) -> str:
        return f"http://{'127.0.0.1' if self.host == '0.0.0.0' else self.host}:{self.port}"  # noqa: S104

    def write_page_config(self) -> None:
        """The pages' configuration (what a deployment writes from its outputs), served as /config.json."""
        config = web.page_config(self.url.replace("0.0.0.0", "127.0.0.1"), self.web_origin)  # noqa: S104
        self._config = json.dumps(config, indent=2).encode()
        path = cfn.ROOT / ".local" / "config.json"
        with contextlib.suppress(OSError):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(self._config)

    async def _aws_api(
        self, method: str, target: str, headers: dict[str, str], body: bytes
    ) -> tuple[str, dict[str, str], bytes]:
        """A DynamoDB or Step Functions call from another process, answered by moto's server app."""

        answer = await self._call(
            "aws", method=method, target=target, headers=headers, body=base64.b64encode(body).decode()
        )
        return answer["status"], answer["headers"], base64.b64decode(answer["body"])

    async def _table_dump(self, logical_id: str) -> tuple[HTTPStatus, Any]:
        """Local only: every item of a template table, for inspection and the benchmarks' final checks."""
        answer = await self._call("table", logical_id=logical_id)
        return HTTPStatus(answer["status"]), answer["payload"]

    async def _manage(self, method: str, connection_id: str, body: bytes) -> tuple[HTTPStatus, Any, dict[str, str]]:
        """The @connections API: POST sends, GET describes, DELETE closes; 410 for an unknown connection."""
        if not self.connections_bucket.take():
            return HTTPStatus.TOO_MANY_REQUESTS, {"message": "LimitExceededException"}, LIMIT_EXCEEDED
        if self.fault_rate and self._random.random() < self.fault_rate:
            if self._random.random() < 0.5:
                return HTTPStatus.TOO_MANY_REQUESTS, {"message": "LimitExceededException (injected)"}, LIMIT_EXCEEDED
            return HTTPStatus.INTERNAL_SERVER_ERROR, {"message": "Internal server error (injected)"}, {}
        connection = self.connections.get(connection_id)
        if connection is None and connection_id in self.seeded:
            return self._manage_seeded(method, connection_id, body)
        if connection is None:
            return HTTPStatus.GONE, {"message": None}, {"x-amzn-ErrorType": "GoneException"}
        if method == "POST":
            try:
                await connection.websocket.send(body.decode("utf-8", errors="replace"))
            except ConnectionClosed:
                return HTTPStatus.GONE, {"message": None}, {"x-amzn-ErrorType": "GoneException"}
            # A message to the client is activity too: API Gateway's idle timeout counts messages
            # either way (a connection only ever sent messages stays up to its 2-hour cut).
            connection.last_active = self.now()
            return HTTPStatus.OK, None, {}
        if method == "GET":
            return (
                HTTPStatus.OK,
                {  # the wire names of the GetConnection response (botocore maps them)
                    "connectedAt": _iso(connection.connected_at_ms),
                    "lastActiveAt": _iso(connection.last_active_ms or connection.connected_at_ms),
                    "identity": {"sourceIp": connection.source_ip, "userAgent": connection.user_agent},
                },
                {},
            )
        if method == "DELETE":
            asyncio.ensure_future(connection.websocket.close(1000))  # noqa: RUF006 - closes on its own
            return HTTPStatus.NO_CONTENT, None, {}
        return HTTPStatus.METHOD_NOT_ALLOWED, {"message": "Method Not Allowed"}, {}

    def clock_report(self) -> dict[str, Any]:
        """The stack's clock (GET /_local/clock): its file (a client on this machine may map it), now and its pace."""
        return {
            "path": self.clock.path,
            "now": self.now(),
            "startedAt": self._started_at,
            "timeScale": self.time_scale,
            "rate": self.clock.rate(),
            "slowest": self.clock.slowest(),
            "dilation": emulated_clock.dilation_by_environment(),
        }

    async def faults_report(self) -> dict[str, Any]:
        """Counts of the AWS failures emulated so far (GET /_local/faults)."""
        report = await self._call("faults")
        if self._concurrency is not None:  # the routes' invocations are counted here, the timer's there
            mine = self._concurrency
            for function, refused in mine.throttled.items():
                report["lambdaThrottled"][function] = report["lambdaThrottled"].get(function, 0) + refused
            for function, peak in mine.peak.items():
                report["lambdaPeakConcurrency"][function] = max(report["lambdaPeakConcurrency"].get(function, 0), peak)
            report["lambdaThrottled"] = dict(sorted(report["lambdaThrottled"].items()))
            report["lambdaPeakConcurrency"] = dict(sorted(report["lambdaPeakConcurrency"].items()))
        return {
            **report,
            "connectionsThrottled": self.connections_bucket.refused,
            "disconnectsLost": self.disconnects_lost,
        }

    def _manage_seeded(self, method: str, connection_id: str, body: bytes) -> tuple[HTTPStatus, Any, dict[str, str]]:
        """A seeded connection (events/) has no socket: a post is logged as a client would receive it."""
        if method == "POST":
            self._log(f"SEEDED-POST {connection_id} {body.decode('utf-8', errors='replace')[:200]}")
            return HTTPStatus.OK, None, {}
        if method == "DELETE":
            self.seeded.discard(connection_id)
            return HTTPStatus.NO_CONTENT, None, {}
        if method == "GET":
            return HTTPStatus.OK, {"connectedAt": _iso(self.now_ms()), "identity": {"sourceIp": "127.0.0.1"}}, {}
        return HTTPStatus.METHOD_NOT_ALLOWED, {"message": "Method Not Allowed"}, {}

    # -- handlers --------------------------------------------------------------------------------

    async def _invoke(self, spec: str, event: dict[str, Any]) -> Invocation:
        """Run one handler in the functions process, as API Gateway invokes a Lambda function."""
        try:
            if spec in self._runtime_paths:
                answer = await self._call_runtime(spec, event)
            else:
                answer = await self._call("invoke", spec=spec, event=event)
        except (OSError, RuntimeError, ValueError, asyncio.IncompleteReadError) as exc:
            return Invocation(error=exc)
        if "errorType" in answer:
            error = type(answer["errorType"], (Exception,), {})(answer["errorMessage"])
            return Invocation(error=error, millis=answer["millis"])
        return Invocation(result=answer["result"], millis=answer["millis"])

    def _request_context(self, connection: LocalConnection, route_key: str, event_type: str) -> dict[str, Any]:
        now_ms = self.now_ms()
        request_id = base64.b64encode(os.urandom(9)).decode()
        context: dict[str, Any] = {
            "routeKey": route_key,
            "eventType": event_type,
            "extendedRequestId": request_id,
            "requestTime": datetime.fromtimestamp(now_ms / 1000, UTC).strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "messageDirection": "IN",
            "stage": self.stage,
            "connectedAt": connection.connected_at_ms,
            "requestTimeEpoch": now_ms,
            "identity": {"sourceIp": connection.source_ip, "userAgent": connection.user_agent},
            "requestId": request_id,
            "domainName": f"{self.host}:{self.port}",
            "connectionId": connection.connection_id,
            "apiId": "local",
        }
        if connection.authorizer:
            context["authorizer"] = dict(connection.authorizer)
        return context

    def _log_invocation(
        self, route_key: str, connection_id: str, status: Any, invocation: Invocation, context: dict[str, Any]
    ) -> None:
        outcome = f"error={type(invocation.error).__name__}" if invocation.error else f"status={status}"
        self._log(f"{time.strftime('%H:%M:%S')} {route_key:<18} {connection_id} {outcome} {invocation.millis:.0f}ms")
        if self.access_log_format:
            self._log("ACCESS " + json.dumps(self._access_line(context, status, invocation), separators=(",", ":")))

    def _access_line(self, context: dict[str, Any], status: Any, invocation: Invocation) -> dict[str, str]:
        """The stage's access-log line, in the template's own format: API Gateway writes "-" for what is empty."""
        error = "The IntegrationResponse failed" if invocation.error else ""
        known = {
            "$context.requestId": context["requestId"],
            "$context.connectionId": context["connectionId"],
            "$context.routeKey": context["routeKey"],
            "$context.eventType": context["eventType"],
            "$context.status": "500" if invocation.error else str(status if status is not None else 200),
            "$context.integrationErrorMessage": error,
            "$context.integrationStatus": "500" if invocation.error else "200",
            "$context.integrationLatency": str(round(invocation.millis)),
            "$context.identity.sourceIp": context["identity"]["sourceIp"],
            "$context.requestTimeEpoch": str(context["requestTimeEpoch"]),
            "$context.disconnectStatusCode": str(context.get("disconnectStatusCode", "")),
        }
        return {field: known.get(variable) or "-" for field, variable in self.access_log_format.items()}

    # -- the WebSocket side ------------------------------------------------------------------------

    async def _handshake(self, websocket: ServerConnection, request: Request) -> Response | None:
        """API Gateway's $connect: authorizer, then the $connect route; non-2xx refuses the handshake."""
        parts = urlsplit(request.path)
        if parts.path.rstrip("/") != f"/{self.stage}":
            return websocket.respond(HTTPStatus.FORBIDDEN, '{"message":"Forbidden"}\n')
        connect = self.routes.get("$connect")
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        connection = LocalConnection(
            connection_id=base64.b64encode(os.urandom(10)).decode(),
            websocket=websocket,
            connected_at_ms=self.now_ms(),
            source_ip=request.headers.get("X-Forwarded-For", "127.0.0.1"),
            user_agent=request.headers.get("User-Agent", ""),
            authorizer={},
        )
        headers = {k: v for k, v in request.headers.raw_items() if k.lower() != "x-forwarded-for"}
        if connect and connect.authorizer_function:
            refused = await self._authorize(connect.authorizer_function, connection, headers, query)
            if refused is not None:
                return websocket.respond(refused, json.dumps({"message": refused.phrase}) + "\n")
        if connect:
            context = self._request_context(connection, "$connect", "CONNECT")
            event = {**_handshake_parts(headers, query), "requestContext": context, "isBase64Encoded": False}
            invocation = await self._invoke(connect.handler, event)
            status = 500 if invocation.error else int((invocation.result or {}).get("statusCode", 200))
            self._log_invocation("$connect", connection.connection_id, status, invocation, context)
            if not 200 <= status < 300:
                http_status = HTTPStatus(status) if status in HTTPStatus._value2member_map_ else HTTPStatus.FORBIDDEN
                return websocket.respond(http_status, json.dumps({"message": http_status.phrase}) + "\n")
        self._pending[id(websocket)] = connection
        return None

    async def _authorize(
        self, function: str, connection: LocalConnection, headers: dict[str, str], query: dict[str, str]
    ) -> HTTPStatus | None:
        """Run the REQUEST authorizer; the HTTP status that refuses the handshake, or None to go on."""
        event = {
            "type": "REQUEST",
            "methodArn": f"arn:aws:execute-api:us-east-1:123456789012:local/{self.stage}/$connect",
            **_handshake_parts(headers, query),
            "stageVariables": None,
            "requestContext": self._request_context(connection, "$connect", "CONNECT"),
        }
        invocation = await self._invoke(self.backend.functions[function], event)
        request_context = event["requestContext"]
        if invocation.error is not None:
            # API Gateway: an authorizer raising "Unauthorized" is 401; any other failure is 500.
            status = (
                HTTPStatus.UNAUTHORIZED if str(invocation.error) == "Unauthorized" else HTTPStatus.INTERNAL_SERVER_ERROR
            )
            self._log_invocation(
                "$connect:authorizer", connection.connection_id, status.value, invocation, request_context
            )
            return status
        policy = invocation.result or {}
        statements = policy.get("policyDocument", {}).get("Statement", [])
        allowed = bool(statements) and all(s.get("Effect") == "Allow" for s in statements)
        self._log_invocation(
            "$connect:authorizer", connection.connection_id, 200 if allowed else 403, invocation, request_context
        )
        if not allowed:
            return HTTPStatus.FORBIDDEN
        context = {k: v for k, v in (policy.get("context") or {}).items()}
        context["principalId"] = policy.get("principalId", "")
        connection.authorizer = context
        return None

    async def _session(self, websocket: ServerConnection) -> None:
        """One connection from after the handshake to $disconnect."""
        connection = self._pending.pop(id(websocket))
        # Idle counts from here, the connection's start, not from its handshake's: compressed by
        # TIME_SCALE, a $connect that waited its turn (a few seconds in a hall's refresh burst)
        # would otherwise be past the idle timeout before the client could send its first message.
        connection.last_active = self.now()
        self.connections[connection.connection_id] = connection
        watchdog = asyncio.create_task(self._enforce_limits(connection))
        in_flight: set[asyncio.Task[None]] = set()
        try:
            async for frame in websocket:
                connection.last_active = self.now()
                connection.last_active_ms = int(connection.last_active * 1000)
                # Like API Gateway, each message is its own invocation: a slow one (a fan-out to
                # every listener) never holds back the connection's next frames, heartbeats included.
                task = asyncio.create_task(self._message(connection, frame))
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)
        except ConnectionClosed:
            pass
        finally:
            watchdog.cancel()
            self.connections.pop(connection.connection_id, None)
            if in_flight:  # messages received before the close are handled before $disconnect
                await asyncio.wait(in_flight, timeout=30)
            await self._disconnect(connection)

    async def _enforce_limits(self, connection: LocalConnection) -> None:
        """API Gateway's 2-hour maximum and 10-minute idle timeout, both scaled; close 1001 like AWS.

        Idle means no message either way: a client's own or one posted to it through @connections
        (services on API Gateway keep connections alive with server-sent messages alone, e.g.
        https://hotsock.io/docs/connections/keep-alive)."""
        hard_deadline = self.now() + MAX_CONNECTION_SECONDS  # both in the clock's seconds
        while True:
            now = self.now()
            if connection.invocations:
                connection.last_active = now
            remaining = min(hard_deadline - now, connection.last_active + IDLE_TIMEOUT_SECONDS - now)
            if remaining <= 0:
                reason = "Going away" if now >= hard_deadline else "Going away (idle)"
                await connection.websocket.close(1001, reason)
                return
            await asyncio.sleep(min(self.clock.real_step(remaining), 1.0))

    async def _message(self, connection: LocalConnection, frame: str | bytes) -> None:
        # A binary frame cannot be routed by $request.body.action: it goes to $default, base64-encoded.
        binary = isinstance(frame, bytes)
        text = base64.b64encode(frame).decode() if binary else frame
        route_key = "$default"
        if not binary:
            try:
                body = json.loads(text)
                action = body.get("action") if isinstance(body, dict) else None
                if isinstance(action, str) and action in self.routes and not action.startswith("$"):
                    route_key = action
            except (ValueError, RecursionError):
                pass
        route = self.routes.get(route_key)
        if route is None:
            await self._send(connection, {"message": "Forbidden", "connectionId": connection.connection_id})
            return
        event = {
            "requestContext": self._request_context(connection, route_key, "MESSAGE"),
            "body": text,
            "isBase64Encoded": binary,
        }
        connection.invocations += 1
        try:
            invocation = await self._invoke(route.handler, event)
        finally:
            connection.invocations -= 1
            connection.last_active = self.now()  # idle counts from its end (and its reply, if any)
        result = invocation.result if isinstance(invocation.result, dict) else {}
        self._log_invocation(
            route_key, connection.connection_id, result.get("statusCode"), invocation, event["requestContext"]
        )
        if invocation.error is not None:
            # What API Gateway sends when the integration fails.
            await self._send(
                connection,
                {
                    "message": "Internal server error",
                    "connectionId": connection.connection_id,
                    "requestId": event["requestContext"]["requestId"],
                },
            )
            return
        if route.has_route_response and result.get("body") is not None:
            with contextlib.suppress(ConnectionClosed):
                await connection.websocket.send(result["body"])

    async def _send(self, connection: LocalConnection, payload: dict[str, Any]) -> None:
        with contextlib.suppress(ConnectionClosed):
            await connection.websocket.send(json.dumps(payload))

    async def _disconnect(self, connection: LocalConnection) -> None:
        route = self.routes.get("$disconnect")
        if route is None:
            return
        if self.lost_disconnects and self._random.random() < self.lost_disconnects:
            self.disconnects_lost += 1
            self._log(f"{time.strftime('%H:%M:%S')} $disconnect         {connection.connection_id} LOST (emulated)")
            return
        context = self._request_context(connection, "$disconnect", "DISCONNECT")
        code = connection.websocket.close_code
        context["disconnectStatusCode"] = code if code is not None else 1006
        context["disconnectReason"] = connection.websocket.close_reason or ""
        event = {"headers": {}, "multiValueHeaders": {}, "requestContext": context, "isBase64Encoded": False}
        invocation = await self._invoke(route.handler, event)
        self._log_invocation("$disconnect", connection.connection_id, 200, invocation, context)


def _handshake_parts(headers: dict[str, str], query: dict[str, str]) -> dict[str, Any]:
    """The handshake's headers and query string, in the shape both $connect and its authorizer receive."""
    return {
        "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": query or None,
        "multiValueQueryStringParameters": {k: [v] for k, v in query.items()} or None,
    }


async def _respond(
    writer: asyncio.StreamWriter,
    status: HTTPStatus | str,
    headers: dict[str, str],
    data: bytes,
    *,
    keep_alive: bool = False,
) -> bool:
    """Write one HTTP/1.1 response; close the connection unless kept alive. True if it is still open."""
    line = f"{status.value} {status.phrase}" if isinstance(status, HTTPStatus) else status
    head = [f"HTTP/1.1 {line}"]
    head += [f"{k}: {v}" for k, v in headers.items() if k.lower() not in ("content-length", "connection")]
    head += [f"Content-Length: {len(data)}", f"Connection: {'keep-alive' if keep_alive else 'close'}"]
    writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + data)
    try:
        await writer.drain()
    except ConnectionError:
        return False
    if not keep_alive:
        writer.close()
    return keep_alive


def _is_aws_api_call(headers: dict[str, str]) -> bool:
    """A SigV4-signed AWS API request (DynamoDB and Step Functions send X-Amz-Target)."""
    return "x-amz-target" in headers or headers.get("authorization", "").startswith("AWS4-HMAC-SHA256")


def _iso(epoch_ms: int) -> str:
    return datetime.fromtimestamp(epoch_ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def run(
    port: int,
    time_scale: float,
    template_path: Path = cfn.TEMPLATE,
    parameters: dict[str, str] | None = None,
    *,
    host: str = "127.0.0.1",
    env_file: Path | None = None,
    seed: bool = False,
) -> None:
    """Serve in the foreground until Ctrl-C or SIGTERM."""
    import signal

    async def main() -> None:
        emulator = Emulator(
            template_path,
            host=host,
            port=port,
            time_scale=time_scale,
            parameters=parameters,
            env_file=env_file,
            seed=seed,
        )
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, task.cancel)  # type: ignore[union-attr]
        with contextlib.suppress(asyncio.CancelledError):
            await emulator.serve_forever()

    asyncio.run(main())
    print("stopped", file=sys.stderr, flush=True)
