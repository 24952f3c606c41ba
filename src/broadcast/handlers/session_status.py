"""getSessionStatus: the caller's session, with listener counts per language."""

from __future__ import annotations

from typing import Any

from broadcast import service
from broadcast.caller import Caller
from broadcast.routing import route


def session_status(caller: Caller, _body: dict[str, Any]) -> dict[str, Any]:
    """The message route; getSessionStatus takes no fields."""
    return service.session_status(caller)


handler = route(session_status)
