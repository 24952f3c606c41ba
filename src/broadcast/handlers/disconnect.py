"""$disconnect: forget the connection; idempotent, since API Gateway may deliver it twice or never."""

from __future__ import annotations

from typing import Any

from broadcast import service
from broadcast.observability import logger, metrics
from broadcast.routing import caller_from


@metrics.log_metrics
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Lambda entry point."""
    caller = caller_from(event)
    logger.info(
        "disconnect",
        extra={
            "connectionId": caller.connection_id,
            "disconnectStatusCode": (event.get("requestContext") or {}).get("disconnectStatusCode"),
        },
    )
    service.disconnect(caller)
    return {"statusCode": 200}
