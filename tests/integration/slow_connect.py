"""A $connect handler that takes 1.5 s before doing what the real one does (the idle-timeout test)."""

from __future__ import annotations

import time
from typing import Any

from broadcast.handlers.connect import handler as connect


def handler(event: dict[str, Any], context: Any) -> Any:
    time.sleep(1.5)
    return connect(event, context)
