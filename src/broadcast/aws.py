"""Lazily built, cached and injectable AWS clients (moto, Stubber and the local stack swap them)."""

from __future__ import annotations

import threading
from typing import Any

_clients: dict[tuple[str, str], Any] = {}
_injected: set[tuple[str, str]] = set()
_lock = threading.Lock()


# StartExecution runs inside $connect: its whole retry budget must fit the function's 10 s
# timeout, or a throttled start would time the handshake out instead of leaving the connection
# up without a timer (the client's fallback covers that). 3 attempts of at most 1 + 1 s, plus
# standard mode's jittered backoff (under 1 s, then under 2 s): at most 9 s.
# The management API client serves tests' fakes and tools; the fan-out itself posts through
# connections_api, a kept-alive connection per posting thread.
_LIMITS = {
    "stepfunctions": {"total_max_attempts": 3, "connect_timeout": 1, "read_timeout": 1},
    "apigatewaymanagementapi": {"total_max_attempts": 3, "connect_timeout": 2, "read_timeout": 5, "pool": 32},
}
_DEFAULT_LIMITS = {"total_max_attempts": 6, "connect_timeout": 3, "read_timeout": 10}


def _config(service: str = "") -> Any:
    from botocore.config import Config

    # Standard mode retries throttling (ThrottlingException, ProvisionedThroughputExceeded...) with
    # jittered backoff; a connect burst above StartExecution's refill rate is absorbed here first.
    limits = _LIMITS.get(service, _DEFAULT_LIMITS)
    return Config(
        retries={"mode": "standard", "total_max_attempts": limits["total_max_attempts"]},
        connect_timeout=limits["connect_timeout"],
        read_timeout=limits["read_timeout"],
        max_pool_connections=limits.get("pool", 10),
    )


def client(service: str, endpoint_url: str | None = None) -> Any:
    """The cached boto3 client for `service` (and endpoint), built on first use."""
    key = (service, endpoint_url or "")
    found = _clients.get(key)
    if found is not None:
        return found
    with _lock:
        found = _clients.get(key)
        if found is None:
            import boto3

            found = boto3.client(service, endpoint_url=endpoint_url or None, config=_config(service))
            _clients[key] = found
    return found


def inject(service: str, instance: Any, endpoint_url: str | None = None) -> None:
    """Use `instance` for `service` from now on (tests and the local stack)."""
    _clients[(service, endpoint_url or "")] = instance
    _injected.add((service, endpoint_url or ""))


def injected(service: str, endpoint_url: str | None = None) -> Any:
    """The instance injected for `service` (and endpoint), or None when none was."""
    key = (service, endpoint_url or "")
    return _clients.get(key) if key in _injected else None


def reset() -> None:
    """Drop every cached client, so that the next call builds fresh ones."""
    _clients.clear()
    _injected.clear()


def error_code(exc: BaseException) -> str:
    """The AWS error code of a botocore ClientError, or '' for anything else."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    return ""
