"""joinSession: join a session as a listener."""

from __future__ import annotations

from broadcast import service
from broadcast.routing import route

handler = route(service.join_session)
