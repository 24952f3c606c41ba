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
import threading
from typing import Any

from aws_lambda_powertools import Logger, Metrics, single_metric
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.metrics.provider.cloudwatch_emf.cloudwatch import AmazonCloudWatchEMFProvider

SERVICE = os.environ.get("POWERTOOLS_SERVICE_NAME", "broadcast")
NAMESPACE = os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "BroadcastSessions")

logger = Logger(service=SERVICE)


class ThreadSafeEMFProvider(AmazonCloudWatchEMFProvider):
    """Powertools' EMF provider with one lock around adding and flushing.

    Powertools keeps one metric set per process (class attributes of `Metrics`) and assumes one
    invocation at a time, as a Lambda container runs. Two invocations on threads of one process
    (the local stack's runtimes, and the tests' bursts) broke that: one thread's flush iterated
    the set while another added to it (`RuntimeError: dictionary changed size during iteration`),
    or cleared a count that was never printed. With the lock each count is printed once, though a
    flush may carry another thread's counts. On AWS the lock is never contended.
    """

    _lock = threading.RLock()

    def add_metric(self, *args: Any, **kwargs: Any) -> None:
        with self._lock:
            super().add_metric(*args, **kwargs)

    def flush_metrics(self, *args: Any, **kwargs: Any) -> None:
        with self._lock:
            super().flush_metrics(*args, **kwargs)


metrics = Metrics(
    provider=ThreadSafeEMFProvider(
        namespace=NAMESPACE,
        service=SERVICE,
        metric_set=Metrics._metrics,
        dimension_set=Metrics._dimensions,
        metadata_set=Metrics._metadata,
        default_dimensions=Metrics._default_dimensions,
    )
)


def count(name: str, value: int = 1) -> None:
    """Add one count to this invocation's metrics (flushed by the handler's log_metrics)."""
    metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)


def count_by(name: str, dimension: str, value: str) -> None:
    """A count with its own dimension (e.g. RefreshFailed by code), emitted at once."""
    with single_metric(name=name, unit=MetricUnit.Count, value=1, namespace=NAMESPACE) as metric:
        metric.add_dimension(name="service", value=SERVICE)
        metric.add_dimension(name=dimension, value=value)
