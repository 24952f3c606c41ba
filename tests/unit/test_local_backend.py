"""The local stack's AWS side: the timer's Lambda invocations run concurrently, as on AWS."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3

from local_stack import template as cfn
from local_stack.aws_backend import REGION, AwsBackend


def test_local_backend_timer_invocations_overlap_like_lambda() -> None:
    # A whole hall's notices fall due together; one lock around every invocation made them queue
    # (seconds late at TIME_SCALE=300, late enough to set off clients' fallback refreshes).
    backend = AwsBackend(cfn.TEMPLATE, stack_name="overlap")
    backend.start()
    try:
        both_inside = threading.Barrier(2, timeout=5)

        def notifier(event: dict[str, Any], _context: Any) -> dict[str, Any]:
            both_inside.wait()  # returns only when the other invocation is running too
            return {"delivered": True, "connectionId": event["connectionId"]}

        arn = backend.function_arn("NotifierFunction")
        assert backend._bridge is not None
        backend._bridge.functions[arn] = notifier
        client = boto3.client("lambda", region_name=REGION)

        def invoke(connection_id: str) -> dict[str, Any]:
            answer = client.invoke(FunctionName=arn, Payload=json.dumps({"connectionId": connection_id}))
            assert "FunctionError" not in answer, answer["Payload"].read()
            return json.loads(answer["Payload"].read())

        with ThreadPoolExecutor(2) as pool:
            results = list(pool.map(invoke, ["a", "b"]))
        assert [r["connectionId"] for r in results] == ["a", "b"]
    finally:
        backend.stop()
