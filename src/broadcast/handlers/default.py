"""$default: any frame whose action has no route (or that is not JSON) gets INVALID_ACTION."""

from __future__ import annotations

from typing import Any

from broadcast.errors import InvalidAction
from broadcast.routing import message_route


def _unknown(_caller: Any, body: dict[str, Any]) -> dict[str, Any]:
    raise InvalidAction("unknown action" if body.get("action") is not None else "frame has no action")


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Lambda entry point."""
    return message_route(event, _unknown)
