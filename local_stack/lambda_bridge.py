"""Runs lambda:Invoke calls in-process, so moto's Step Functions engine executes our real handlers.

moto's engine calls Lambda through a plain `boto3.client("lambda")` on boto3's default
session; moto's own Lambda would need Docker. A botocore `before-call` hook that returns a
response short-circuits the request, the same mechanism botocore's Stubber uses.
"""

from __future__ import annotations

import io
import json
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any
from urllib.parse import unquote

import boto3
from botocore.awsrequest import AWSResponse
from botocore.response import StreamingBody

from local_stack import aws_faults

Handler = Callable[[dict[str, Any], Any], Any]


class LambdaBridge:
    """Maps function names (or ARNs) to Python handlers and answers lambda:Invoke with their results."""

    def __init__(
        self,
        functions: dict[str, Handler],
        lock: AbstractContextManager[Any] | None = None,
        names: dict[str, str] | None = None,
    ) -> None:
        self.functions = dict(functions)
        # The name each function's reserved concurrency is counted under (aws_faults.invocation);
        # by default its key here.
        self.names = dict(names or {})
        self.invocations: list[tuple[str, dict[str, Any]]] = []
        # Handlers touch moto's DynamoDB, which is not thread-safe; the engine runs each
        # execution on its own thread, so by default every in-process invocation takes this
        # lock. The local stack passes a no-op: it serializes moto's requests itself, and
        # Lambda runs invocations concurrently.
        self.lock = lock or threading.RLock()
        self._session = boto3._get_default_session()

    def install(self) -> LambdaBridge:
        """Start answering lambda:Invoke."""
        self._session.events.register("before-call.lambda.Invoke", self._on_invoke, unique_id="lambda-bridge")
        return self

    def uninstall(self) -> None:
        """Stop answering lambda:Invoke."""
        self._session.events.unregister("before-call.lambda.Invoke", unique_id="lambda-bridge")

    def _resolve(self, url_path: str) -> tuple[str, Handler | None]:
        name = unquote(url_path.split("/functions/", 1)[1].split("/", 1)[0])
        for key in (name, name.rsplit(":", 1)[-1]):
            if key in self.functions:
                return key, self.functions[key]
        return name, None

    def _on_invoke(self, params: dict[str, Any], **_kwargs: Any) -> tuple[AWSResponse, dict[str, Any]]:
        key, handler = self._resolve(params["url_path"])
        with aws_faults.invocation(self.names.get(key, key)) as admitted:
            if not admitted:
                return _throttled()
            return self._invoke(params, handler)

    def _invoke(self, params: dict[str, Any], handler: Handler | None) -> tuple[AWSResponse, dict[str, Any]]:
        raw = params.get("body") or b"{}"
        event = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
        parsed: dict[str, Any] = {"StatusCode": 200, "ExecutedVersion": "$LATEST"}
        if handler is None:
            result: Any = {"errorType": "ResourceNotFoundException", "errorMessage": "no such function"}
            parsed["FunctionError"] = "Unhandled"
        else:
            self.invocations.append((params["url_path"], event))
            try:
                with self.lock:
                    result = handler(event, None)
            except Exception as exc:  # noqa: BLE001 - reported the way Lambda reports it
                result = {
                    # a runtime process's error keeps the handler's own type (local_stack/runtime.py)
                    "errorType": getattr(exc, "error_type", type(exc).__name__),
                    "errorMessage": str(exc),
                    "stackTrace": traceback.format_exception(exc)[-3:],
                }
                parsed["FunctionError"] = "Unhandled"
                # What CloudWatch Logs would show for the function: the error is never silent.
                name = params["url_path"].split("/functions/", 1)[1].split("/", 1)[0]
                print(
                    f"{time.strftime('%H:%M:%S')} lambda:Invoke      {unquote(name).rsplit(':', 1)[-1]} "
                    f"error={result['errorType']} {str(exc)[:200]}",
                    flush=True,
                )
        data = json.dumps(result).encode()
        parsed["Payload"] = StreamingBody(io.BytesIO(data), len(data))
        return AWSResponse(None, 200, {}, None), parsed


def _throttled() -> tuple[AWSResponse, dict[str, Any]]:
    """Lambda's answer to an invocation beyond the function's reserved concurrency: 429, raised by botocore."""
    error = {"Code": "TooManyRequestsException", "Message": aws_faults.THROTTLED_MESSAGE}
    parsed = {
        "Error": error,
        "Reason": "ReservedFunctionConcurrentInvocationLimitExceeded",
        "Type": "User",
        "ResponseMetadata": {"HTTPStatusCode": 429, "RequestId": str(uuid.uuid4()), "HTTPHeaders": {}},
    }
    return AWSResponse(None, 429, {"x-amzn-ErrorType": "TooManyRequestsException"}, None), parsed
