"""heartbeat: keeps the connection inside API Gateway's 10-minute idle timeout; makes no AWS call."""

from __future__ import annotations

from typing import Any

from broadcast import service
from broadcast.routing import message_route


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Lambda entry point."""
    return message_route(event, lambda _caller, _body: service.heartbeat())
