"""Who sent a message; kept free of AWS imports so that light handlers stay light."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Caller:
    """Who sent a message: the connection, and the identity its $connect authorizer established."""

    connection_id: str
    connected_at: int
    user_id: str | None = None
    request_id: str = ""
    source_ip: str = ""
    disconnect_status: int | None = None  # $disconnect only: the WebSocket close code

    @property
    def authenticated(self) -> bool:
        """True when the connection presented a valid token."""
        return bool(self.user_id)
