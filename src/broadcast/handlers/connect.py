"""$connect: register the connection and start its timer. Posts nothing (API Gateway would answer 410)."""

from __future__ import annotations

from typing import Any

from broadcast import service
from broadcast.errors import RateLimitExceeded
from broadcast.observability import logger, metrics
from broadcast.routing import caller_from


@metrics.log_metrics
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Lambda entry point."""
    caller = caller_from(event)
    try:
        service.connect(caller)
    except RateLimitExceeded as exc:
        logger.info("connect rate limited", extra={"retryAfterSeconds": exc.retry_after_seconds})
        return {"statusCode": 429, "headers": {"Retry-After": str(exc.retry_after_seconds)}}
    except Exception:  # noqa: BLE001 - boundary: refuse the handshake (500), log the cause
        logger.exception("connect failed", extra={"connectionId": caller.connection_id})
        return {"statusCode": 500}
    return {"statusCode": 200}
