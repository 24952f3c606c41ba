"""getSessionStatus: the caller's session, with listener counts per language."""

from __future__ import annotations

from typing import Any

from broadcast import service
from broadcast.routing import message_route


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Lambda entry point."""
    return message_route(event, lambda caller, _body: service.session_status(caller))
