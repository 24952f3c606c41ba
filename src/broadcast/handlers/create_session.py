"""createSession: create a session with the caller as speaker."""

from __future__ import annotations

from broadcast import service
from broadcast.routing import route

handler = route(service.create_session)
