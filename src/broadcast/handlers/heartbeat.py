"""heartbeat: keeps the connection inside API Gateway's 10-minute idle timeout; makes no AWS call."""

from __future__ import annotations

from broadcast import service
from broadcast.routing import route

handler = route(service.heartbeat_route)
