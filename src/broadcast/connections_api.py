"""API Gateway's @connections POST, signed with SigV4 and sent over kept-alive connections.

Why not boto3's `post_to_connection`: through botocore's whole per-call pipeline (parameter
validation, serialization, the event hooks, the retry handler, the response parser) one post
costs about 1.6 ms of CPU; a 500-listener frame then needs most of a vCPU-second. Here each
post is signed with Signature Version 4 (broadcast.sigv4, checked against botocore's signer; the
credentials still come from botocore's chain) and sent with the standard library's
`http.client` on a connection each posting thread keeps alive for the container's life. What is
left per post is the signature and one HTTP exchange (about 0.15 ms; urllib3's pool, botocore's
HTTP layer, costs 0.3 ms for the same exchange, its locking and bookkeeping included, which a
connection owned by one thread does not need).

The answer codes are the management API's: 200 delivered, 410 `GoneException` (the connection is
closed), 429 `LimitExceededException` and 5xx (retried here with full-jitter backoff within the
frame's useful life), 403 (signature or permission: a configuration error, never retried).
"""

from __future__ import annotations

import contextlib
import random
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

from broadcast.sigv4 import SigV4

SERVICE = "execute-api"
RETRIED = frozenset({429, 500, 502, 503, 504, 599})  # 599: no answer at all (a network error)


@dataclass(frozen=True)
class Retry:
    """Retries of a throttled or failed post: a frame is worth resending for about a second only.

    Four attempts: at a 1% rate of throttled or failed posts, three lost one post in a million,
    and a hall of 500 posts a million frames in about 17 minutes (`make bench`'s hall with 1%
    injected faults lost one frame so). Four lose one in a hundred million, and the waits
    between them add up to 0.35 s at most."""

    attempts: int = 4
    base_seconds: float = 0.05
    cap_seconds: float = 0.4

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Full jitter: a random wait up to base * 2^attempt, capped."""
        return rng.uniform(0, min(self.cap_seconds, self.base_seconds * 2**attempt))


class _Channel:
    """One kept-alive HTTP/1.1 connection, owned by one thread: a request out, its answer in.

    Why not http.client: for this one exchange (a small POST, an answer with no body or a short
    JSON error) its request building and its email-package header parsing cost about as much
    CPU as everything else in a post together. This reads the status line, the two headers that
    matter (Content-Length, x-amzn-ErrorType; chunked bodies too) and the body; anything it does
    not understand raises ValueError and the connection is replaced.
    """

    def __init__(self, host: str, port: int | None, tls: ssl.SSLContext | None, timeout: float) -> None:
        sock = socket.create_connection((host, port or (443 if tls else 80)), timeout=timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = tls.wrap_socket(sock, server_hostname=host) if tls else sock
        self.reader = self.sock.makefile("rb")
        self.open = True

    def exchange(self, request: bytes) -> tuple[int, str]:
        self.sock.sendall(request)
        status_line = self.reader.readline(4096)
        if not status_line:
            raise ConnectionResetError("closed by the far end")
        status = int(status_line.split(None, 2)[1])
        length, error, chunked, closing = 0, "", False, False
        while True:
            line = self.reader.readline(65536)
            if line in (b"\r\n", b"\n"):
                break
            if not line:
                raise ConnectionResetError("closed in the headers")
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"x-amzn-errortype":
                error = value.strip().decode("latin-1")
            elif name == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
            elif name == b"connection":
                closing = b"close" in value.lower()
        if chunked:
            while size := int(self.reader.readline(1024).split(b";")[0], 16):
                self.reader.read(size + 2)
            while self.reader.readline(65536) not in (b"\r\n", b"\n", b""):
                pass  # trailers
        elif length:
            self.reader.read(length)
        if closing:
            self.close()  # the answer stands; the next exchange opens a new connection
        return status, error

    def close(self) -> None:
        self.open = False
        with contextlib.suppress(OSError):
            self.reader.close()
            self.sock.close()


@dataclass
class Outcome:
    """What one post came to: its final status and how many retries it took."""

    status: int
    retries: int = 0
    error: str = ""


class ConnectionsApi:
    """One stage's @connections API; thread-safe (a connection per thread), one per container."""

    def __init__(
        self,
        endpoint: str,
        region: str,
        credentials: Any,
        *,
        retry: Retry | None = None,
        timeout: float = 5.0,
    ) -> None:
        parts = urlsplit(endpoint)
        self.base_path = parts.path.rstrip("/")
        self.credentials = credentials  # botocore credentials: refreshed by botocore, frozen per post
        self.retry = retry or Retry()
        self.timeout = timeout
        self._https = parts.scheme == "https"
        self._host, self._port = parts.hostname or "", parts.port
        self._tls = ssl.create_default_context() if self._https else None
        self._local = threading.local()  # each posting thread's own kept-alive connection
        self._rng = random.Random()
        default_port = 443 if self._https else 80
        host = self._host if self._port in (None, default_port) else f"{self._host}:{self._port}"
        self._signer = SigV4(host, region, SERVICE)

    def _channel(self) -> _Channel:
        channel = getattr(self._local, "channel", None)
        if channel is None or not channel.open:
            channel = self._local.channel = _Channel(self._host, self._port, self._tls, self.timeout)
        return channel

    def _exchange(self, path: str, data: bytes) -> tuple[int, str]:
        """One signed POST on this thread's connection: (status, x-amzn-ErrorType); 599 for no answer."""
        headers = "".join(f"{k}: {v}\r\n" for k, v in self._signed_headers(path, data).items())
        head = f"POST {path} HTTP/1.1\r\nHost: {self._signer.host}\r\nContent-Length: {len(data)}\r\n{headers}\r\n"
        try:
            channel = self._channel()
            return channel.exchange(head.encode() + data)
        except (OSError, ValueError) as exc:
            # A kept-alive connection the far end closed, a reset, a timeout, a garbled answer:
            # the next attempt opens a fresh one.
            broken = getattr(self._local, "channel", None)
            if broken is not None:
                broken.close()
            return 599, type(exc).__name__

    def _signed_headers(self, path: str, data: bytes) -> dict[str, str]:
        return self._signer.headers("POST", path, data, self.credentials.get_frozen_credentials())

    def post(self, connection_id: str, data: bytes) -> Outcome:
        """POST `data` to one connection; retries 429 and 5xx, returns the final status (200, 410, ...)."""
        path = f"{self.base_path}/@connections/{quote(connection_id, safe='')}"
        retries = 0
        while True:
            # A fresh signature per attempt: X-Amz-Date is part of it.
            status, error = self._exchange(path, data)
            if status not in RETRIED or retries + 1 >= self.retry.attempts:
                return Outcome(status, retries, error.split(":", 1)[0])
            time.sleep(self.retry.delay(retries, self._rng))
            retries += 1
