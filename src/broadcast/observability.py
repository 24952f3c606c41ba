"""Powertools logger and metrics, created once per process and configured by environment variables."""

from __future__ import annotations

import os

from aws_lambda_powertools import Logger, Metrics

logger = Logger(service=os.environ.get("POWERTOOLS_SERVICE_NAME", "broadcast"))
metrics = Metrics(
    namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "BroadcastSessions"),
    service=os.environ.get("POWERTOOLS_SERVICE_NAME", "broadcast"),
)
