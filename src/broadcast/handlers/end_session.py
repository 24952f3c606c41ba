"""endSession: the speaker ends the session for everyone."""

from __future__ import annotations

from broadcast import service
from broadcast.routing import route

handler = route(service.end_session)
