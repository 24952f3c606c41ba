"""The local stack's Lambda side: runtimes apart from moto."""

from __future__ import annotations

import io
import json
from typing import Any

import boto3

from local_stack.lambda_bridge import LambdaBridge
from local_stack.runtime import RemoteError


def test_a_runtime_error_reaches_the_state_machine_with_the_handlers_own_type() -> None:
    # A handler in a runtime process fails; the timer's Task sees what Lambda reports: the
    # handler's error type (which a Retry or Catch may name), not the emulator's RemoteError.
    def failing(event: dict[str, Any], _context: Any) -> Any:
        raise RemoteError("KeyError", "'connectionId'")

    bridge = LambdaBridge({"Notifier": failing}).install()
    try:
        answer = boto3.client("lambda", region_name="us-east-1").invoke(
            FunctionName="Notifier", Payload=json.dumps({"x": 1}).encode()
        )
    finally:
        bridge.uninstall()
    assert answer["FunctionError"] == "Unhandled"
    payload = json.load(io.BytesIO(answer["Payload"].read()))
    assert payload["errorType"] == "KeyError"
    assert payload["errorMessage"] == "'connectionId'"
