"""connections_api: the fan-out's @connections client, against a scripted HTTP server.

The server answers from a script (status, headers, body, or a dropped connection), records every
request, and checks each one's SigV4 signature the way API Gateway would: recomputed from the
request it received, with botocore's signer.
"""

from __future__ import annotations

import datetime
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from broadcast import messenger
from broadcast.connections_api import ConnectionsApi, Retry

CREDENTIALS = Credentials("AKIDTEST", "secret-key", "session-token")


class Credentialed:
    """What botocore's credentials chain hands out: frozen credentials on request."""

    def get_frozen_credentials(self) -> Credentials:
        return CREDENTIALS


class Script:
    def __init__(self) -> None:
        self.answers: list[tuple[int, dict[str, str], bytes] | str] = []
        self.by_connection: dict[str, tuple[int, dict[str, str], bytes]] = {}  # the path's last part -> answer
        self.requests: list[dict[str, Any]] = []
        self.bad_signatures = 0
        self.connections: set[tuple[str, int]] = set()


def _check_signature(handler: BaseHTTPRequestHandler, body: bytes) -> bool:
    host = handler.headers["Host"]
    request = AWSRequest(method="POST", url=f"http://{host}{handler.path}", data=body)
    amz_date = handler.headers["X-Amz-Date"]
    moment = datetime.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=datetime.UTC)
    from unittest import mock

    with mock.patch("botocore.auth.get_current_datetime", return_value=moment):
        SigV4Auth(CREDENTIALS, "execute-api", "eu-west-1").add_auth(request)
    return request.headers["Authorization"] == handler.headers["Authorization"]


@pytest.fixture
def server() -> Iterator[tuple[str, Script]]:
    script = Script()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            script.connections.add(self.client_address)  # (host, port): a new port per connection
            script.requests.append({"path": self.path, "body": body})
            if not _check_signature(self, body):
                script.bad_signatures += 1
            target = self.path.rsplit("/", 1)[-1]
            if target in script.by_connection:
                answer: Any = script.by_connection[target]
            else:
                answer = script.answers.pop(0) if script.answers else (200, {}, b"")
            if answer == "drop":
                self.close_connection = True
                self.connection.close()
                return
            assert not isinstance(answer, str)
            status, headers, payload = answer
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            if headers.get("Transfer-Encoding") == "chunked":
                self.end_headers()
                self.wfile.write(f"{len(payload):x}\r\n".encode() + payload + b"\r\n0\r\n\r\n")
            else:
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        def log_message(self, *_args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/live", script
    finally:
        httpd.shutdown()
        httpd.server_close()


def api(endpoint: str) -> ConnectionsApi:
    return ConnectionsApi(endpoint, "eu-west-1", Credentialed(), retry=Retry(attempts=3, base_seconds=0.001))


def test_post_is_signed_encoded_and_kept_alive(server: tuple[str, Script]) -> None:
    endpoint, script = server
    client = api(endpoint)
    outcomes = [client.post("Cr8SeSs1oNnEw0A=", b'{"type":"audio"}') for _ in range(3)]
    assert [o.status for o in outcomes] == [200, 200, 200]
    assert script.requests[0] == {"path": "/live/@connections/Cr8SeSs1oNnEw0A%3D", "body": b'{"type":"audio"}'}
    assert script.bad_signatures == 0
    assert len(script.connections) == 1  # one connection, kept alive


def test_gone_is_answered_at_once_and_not_retried(server: tuple[str, Script]) -> None:
    endpoint, script = server
    script.answers = [(410, {"x-amzn-ErrorType": "GoneException"}, b'{"message":null}')]
    outcome = api(endpoint).post("gone=", b"x")
    assert (outcome.status, outcome.retries, outcome.error) == (410, 0, "GoneException")
    assert len(script.requests) == 1


@pytest.mark.parametrize(
    "first",
    [
        (429, {"x-amzn-ErrorType": "LimitExceededException"}, b'{"message":"Rate exceeded"}'),
        (500, {}, b"{}"),
        (503, {"Transfer-Encoding": "chunked"}, b'{"message":"unavailable"}'),
        "drop",
    ],
    ids=["throttled", "500", "503-chunked", "dropped"],
)
def test_throttling_errors_and_drops_are_retried_then_delivered(server: tuple[str, Script], first: Any) -> None:
    endpoint, script = server
    script.answers = [first]
    outcome = api(endpoint).post("abc=", b"frame")
    assert (outcome.status, outcome.retries) == (200, 1)
    assert [r["body"] for r in script.requests] == [b"frame", b"frame"]
    assert script.bad_signatures == 0


def test_retries_are_bounded(server: tuple[str, Script]) -> None:
    endpoint, script = server
    script.answers = [(429, {"x-amzn-ErrorType": "LimitExceededException"}, b"{}")] * 5
    outcome = api(endpoint).post("abc=", b"frame")
    assert (outcome.status, outcome.retries, outcome.error) == (429, 2, "LimitExceededException")
    assert len(script.requests) == 3


def test_forbidden_is_not_retried(server: tuple[str, Script]) -> None:
    endpoint, script = server
    script.answers = [(403, {"x-amzn-ErrorType": "ForbiddenException"}, b'{"message":"Forbidden"}')]
    outcome = api(endpoint).post("abc=", b"frame")
    assert (outcome.status, outcome.retries) == (403, 0)


def test_connection_close_answer_stands_and_the_next_post_reconnects(server: tuple[str, Script]) -> None:
    endpoint, script = server
    script.answers = [(200, {"Connection": "close"}, b""), (200, {}, b"")]
    client = api(endpoint)
    assert client.post("a=", b"1").status == 200
    assert client.post("b=", b"2").status == 200
    assert len(script.requests) == 2
    assert len(script.connections) == 2


def test_no_server_is_a_failed_post_not_an_exception() -> None:
    outcome = api("http://127.0.0.1:9/live").post("abc=", b"frame")
    assert outcome.status == 599
    assert outcome.retries == 2


def test_post_many_through_the_lean_path_sorts_gone_and_failed(
    server: tuple[str, Script], monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN the fan-out's own path (no injected client) and an endpoint that answers by connection
    endpoint, script = server
    monkeypatch.setenv("MANAGEMENT_ENDPOINT", endpoint)
    monkeypatch.setattr(messenger, "_apis", {endpoint: api(endpoint)})
    from broadcast import config

    config.reset()
    script.by_connection = {"gone%3D": (410, {"x-amzn-ErrorType": "GoneException"}, b"{}"), "bad%3D": (403, {}, b"{}")}
    # WHEN one message goes to 40 connections, two of them bad
    ids = [f"ok{i}=" for i in range(38)] + ["gone=", "bad="]
    gone, failed = messenger.post_many(ids, {"type": "audio", "seq": 1})
    # THEN each outcome is where it belongs and every other connection got the message
    assert (gone, failed) == (["gone="], ["bad="])
    assert len(script.requests) == 40
    assert script.bad_signatures == 0


def test_default_retry_resends_a_post_for_under_a_second_and_rarely_loses_one() -> None:
    retry = Retry()
    waits = [min(retry.cap_seconds, retry.base_seconds * 2**attempt) for attempt in range(retry.attempts - 1)]
    assert sum(waits) < 1.0  # a frame is worth resending for about a second only
    assert 0.01**retry.attempts <= 1e-8  # at 1% faults: one post lost in 1e8, not one in 1e6
