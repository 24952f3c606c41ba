"""heartbeat: keeps the connection inside API Gateway's 10-minute idle timeout; makes no AWS call.

It imports neither boto3 nor the domain layer: its cold start is the protocol module alone.
"""

from __future__ import annotations

from typing import Any

from broadcast import protocol
from broadcast.caller import Caller
from broadcast.routing import route


def heartbeat(_caller: Caller, _body: dict[str, Any]) -> dict[str, Any]:
    """Answer heartbeatAck."""
    return protocol.message("heartbeatAck")


handler = route(heartbeat)
