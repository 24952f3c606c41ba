"""joinSession: join a session as a listener."""

from __future__ import annotations

from typing import Any

from broadcast import service
from broadcast.observability import metrics
from broadcast.routing import message_route


@metrics.log_metrics
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Lambda entry point."""
    return message_route(event, service.join_session)
