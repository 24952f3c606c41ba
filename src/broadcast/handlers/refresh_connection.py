"""refreshConnection: hand a speaker or listener role to this new connection."""

from __future__ import annotations

from broadcast import service
from broadcast.routing import route

handler = route(service.refresh_connection)
