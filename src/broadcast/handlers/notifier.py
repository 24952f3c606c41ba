"""Called by the connection timer state machine: posts connectionRefreshRequired / connectionWarning.

Returns {"delivered": false} for a closed connection (410), which ends the execution as
succeeded; any other error raises, and the state machine retries it with backoff.
"""

from __future__ import annotations

from typing import Any

from broadcast import service
from broadcast.observability import metrics


@metrics.log_metrics
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Lambda entry point."""
    return service.notify(event)
