"""Powertools logger, metrics and tracer, created once per process and configured by environment variables.

POWERTOOLS_SERVICE_NAME, POWERTOOLS_METRICS_NAMESPACE, POWERTOOLS_LOG_LEVEL and
POWERTOOLS_TRACE_DISABLED come from template.yaml (and the local stack, which disables
tracing and metrics output).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import cache
from typing import Any, TypeVar

from aws_lambda_powertools import Logger, Metrics, single_metric
from aws_lambda_powertools.metrics import MetricUnit

SERVICE = os.environ.get("POWERTOOLS_SERVICE_NAME", "broadcast")
NAMESPACE = os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "BroadcastSessions")

logger = Logger(service=SERVICE)
metrics = Metrics(namespace=NAMESPACE, service=SERVICE)

Handler = TypeVar("Handler", bound=Callable[..., Any])


@cache
def _tracer() -> Any:
    from aws_lambda_powertools import Tracer

    return Tracer(service=SERVICE)


def traced(handler: Handler) -> Handler:
    """Powertools Tracer around a Lambda handler, unless POWERTOOLS_TRACE_DISABLED is true.

    The Tracer is built only when used: the X-Ray SDK's import (about 0.4 s, it loads botocore)
    is then paid only by functions that trace. Responses are not captured: they may carry audio.
    """
    if os.environ.get("POWERTOOLS_TRACE_DISABLED", "").lower() == "true":
        return handler
    return _tracer().capture_lambda_handler(capture_response=False)(handler)


def count(name: str, value: int = 1) -> None:
    """Add one count to this invocation's metrics (flushed by the handler's log_metrics)."""
    metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)


def count_by(name: str, dimension: str, value: str) -> None:
    """A count with its own dimension (e.g. RefreshFailed by code), emitted at once."""
    with single_metric(name=name, unit=MetricUnit.Count, value=1, namespace=NAMESPACE) as metric:
        metric.add_dimension(name="service", value=SERVICE)
        metric.add_dimension(name=dimension, value=value)
