"""Powertools logger, metrics and tracer, created once per process and configured by environment variables.

POWERTOOLS_SERVICE_NAME, POWERTOOLS_METRICS_NAMESPACE, POWERTOOLS_LOG_LEVEL and
POWERTOOLS_TRACE_DISABLED come from template.yaml (and the local stack, which disables
tracing and metrics output).
"""

from __future__ import annotations

import os

from aws_lambda_powertools import Logger, Metrics, Tracer, single_metric
from aws_lambda_powertools.metrics import MetricUnit

SERVICE = os.environ.get("POWERTOOLS_SERVICE_NAME", "broadcast")
NAMESPACE = os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "BroadcastSessions")

logger = Logger(service=SERVICE)
metrics = Metrics(namespace=NAMESPACE, service=SERVICE)
tracer = Tracer(service=SERVICE)


def count(name: str, value: int = 1) -> None:
    """Add one count to this invocation's metrics (flushed by the handler's log_metrics)."""
    metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)


def count_by(name: str, dimension: str, value: str) -> None:
    """A count with its own dimension (e.g. RefreshFailed by code), emitted at once."""
    with single_metric(name=name, unit=MetricUnit.Count, value=1, namespace=NAMESPACE) as metric:
        metric.add_dimension(name="service", value=SERVICE)
        metric.add_dimension(name=dimension, value=value)
