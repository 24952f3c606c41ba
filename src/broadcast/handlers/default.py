"""$default: any frame whose action has no route (or that is not JSON) gets INVALID_ACTION."""

from __future__ import annotations

from typing import Any

from broadcast.errors import InvalidAction
from broadcast.routing import route


def unknown_action(_caller: Any, body: dict[str, Any]) -> dict[str, Any]:
    """Every frame that reaches $default is refused."""
    raise InvalidAction("unknown action" if body.get("action") is not None else "frame has no action")


handler = route(unknown_action)
