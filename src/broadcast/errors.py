"""The typed error hierarchy; each class maps to exactly one protocol error code."""

from __future__ import annotations


class BroadcastError(Exception):
    """Base of every error a client may see; `code` and `status` come from PROTOCOL.md."""

    code = "INTERNAL_ERROR"
    status = 500
    default_message = "internal error"

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self.default_message)
        self.message = message or self.default_message


class InvalidAction(BroadcastError):
    code, status, default_message = "INVALID_ACTION", 400, "unknown or malformed action"


class InvalidParameters(BroadcastError):
    code, status, default_message = "INVALID_PARAMETERS", 400, "invalid parameters"


class UnsupportedLanguage(BroadcastError):
    code, status, default_message = "UNSUPPORTED_LANGUAGE", 400, "unsupported language"


class Unauthorized(BroadcastError):
    code, status, default_message = "UNAUTHORIZED", 401, "authentication required"


class Forbidden(BroadcastError):
    code, status, default_message = "FORBIDDEN", 403, "not allowed"


class SessionNotFound(BroadcastError):
    code, status, default_message = "SESSION_NOT_FOUND", 404, "session not found or not active"


class PayloadTooLarge(BroadcastError):
    code, status, default_message = "PAYLOAD_TOO_LARGE", 413, "payload too large"


class RateLimitExceeded(BroadcastError):
    code, status, default_message = "RATE_LIMIT_EXCEEDED", 429, "rate limit exceeded"

    def __init__(self, retry_after_seconds: int, message: str | None = None) -> None:
        super().__init__(message)
        self.retry_after_seconds = retry_after_seconds


class InternalError(BroadcastError):
    code, status, default_message = "INTERNAL_ERROR", 500, "internal error"


class SessionFull(BroadcastError):
    code, status, default_message = "SESSION_FULL", 503, "session is full"


class ConnectionGone(Exception):
    """The @connections API answered 410: the connection no longer exists. Not a client error."""

    def __init__(self, connection_id: str) -> None:
        super().__init__(f"connection {connection_id} is gone")
        self.connection_id = connection_id
