"""`resumeToken`: proof that a listener already holds a place in a session, checked without a read.

A token is an HMAC (SHA-256, key from the stack's secret) over the session id, the connection
that holds the place and an expiry. A listener `refreshConnection` carrying a valid one skips
the capacity check and the join rate limit (PROTOCOL.md section 4); anything else is a join.
The token expires shortly after the connection it was issued to is cut at the latest, so a leaked token is
good for one connection lifetime at most.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from broadcast import clock
from broadcast.config import settings

VERSION = "v1"
# Room after the holder's 2-hour cut for a listener whose connection dropped to come back.
RESUME_MARGIN_SECONDS = 600
MAX_TOKEN_CHARS = 256


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(session_id: str, connection_id: str, expires: int) -> str:
    key = settings().resume_token_key.encode()
    digest = hmac.new(key, f"{VERSION}|{session_id}|{connection_id}|{expires}".encode(), hashlib.sha256).digest()
    return _b64(digest[:20])


def issue(session_id: str, connection_id: str) -> str:
    """A token for the place `connection_id` holds in `session_id`, good until shortly after its cut."""
    expires = clock.now_seconds() + settings().max_connection_seconds + RESUME_MARGIN_SECONDS
    return ".".join((VERSION, str(expires), _b64(connection_id.encode()), _mac(session_id, connection_id, expires)))


def holder(token: object, session_id: str) -> str | None:
    """The connection id whose place `token` proves in `session_id`, or None when it proves nothing."""
    if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_CHARS:
        return None
    parts = token.split(".")
    if len(parts) != 4 or parts[0] != VERSION or not parts[1].isdigit():
        return None
    expires = int(parts[1])
    if expires < clock.now_seconds():
        return None
    try:
        connection_id = _unb64(parts[2]).decode()
    except (ValueError, UnicodeDecodeError):
        return None
    if not hmac.compare_digest(parts[3], _mac(session_id, connection_id, expires)):
        return None
    return connection_id
