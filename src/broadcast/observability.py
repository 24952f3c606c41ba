"""Powertools logger and metrics, created once per process and configured by environment variables.

POWERTOOLS_SERVICE_NAME, POWERTOOLS_METRICS_NAMESPACE and POWERTOOLS_LOG_LEVEL come from
template.yaml (and the local stack, which disables metrics output).

Tracing is Lambda's own (`Tracing: Active` in the template): X-Ray records every invocation's
segment (initialization, invocation, overhead) from the service side, at no import cost. The
X-Ray SDK (powertools' Tracer) would add subsegments per AWS call, but its import costs about
0.17 s of every cold start (1.6x `import boto3` for a handler instead of 1.1x); the calls' own
latencies show in the metrics and the stage's access log (integrationLatency) instead.
"""

from __future__ import annotations

import os

from aws_lambda_powertools import Logger, Metrics, single_metric
from aws_lambda_powertools.metrics import MetricUnit

SERVICE = os.environ.get("POWERTOOLS_SERVICE_NAME", "broadcast")
NAMESPACE = os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "BroadcastSessions")

logger = Logger(service=SERVICE)
metrics = Metrics(namespace=NAMESPACE, service=SERVICE)


def count(name: str, value: int = 1) -> None:
    """Add one count to this invocation's metrics (flushed by the handler's log_metrics)."""
    metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)


def count_by(name: str, dimension: str, value: str) -> None:
    """A count with its own dimension (e.g. RefreshFailed by code), emitted at once."""
    with single_metric(name=name, unit=MetricUnit.Count, value=1, namespace=NAMESPACE) as metric:
        metric.add_dimension(name="service", value=SERVICE)
        metric.add_dimension(name=dimension, value=value)
