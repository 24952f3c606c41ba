"""getSessionStatus: the caller's session, with listener counts per language."""

from __future__ import annotations

from broadcast import service
from broadcast.routing import route

handler = route(service.session_status_route)
