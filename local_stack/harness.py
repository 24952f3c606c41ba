"""Instrumentation shared by the tests and the benchmarks: a recording @connections API, an AWS
call counter, and moto tables and timer built from template.yaml."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any

from botocore.exceptions import ClientError

from local_stack import template as cfn


class RecordingManagementApi:
    """Stands in for the apigatewaymanagementapi client: records posts, answers 410 for `gone` ids."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, dict[str, Any]]] = []
        self.gone: set[str] = set()
        self.deleted: list[str] = []  # connections closed with DeleteConnection
        self.refused: list[str] = []  # posts answered 410

    def post_to_connection(self, *, ConnectionId: str, Data: bytes) -> dict[str, Any]:  # noqa: N803 - boto3 names
        if ConnectionId in self.gone:
            self.refused.append(ConnectionId)
            raise ClientError({"Error": {"Code": "GoneException", "Message": "gone"}}, "PostToConnection")
        self.posts.append((ConnectionId, json.loads(Data)))
        return {}

    def delete_connection(self, *, ConnectionId: str) -> dict[str, Any]:  # noqa: N803 - boto3 names
        if ConnectionId in self.gone:
            raise ClientError({"Error": {"Code": "GoneException", "Message": "gone"}}, "DeleteConnection")
        self.gone.add(ConnectionId)
        self.deleted.append(ConnectionId)
        return {}

    def messages_to(self, connection_id: str, type_: str | None = None) -> list[dict[str, Any]]:
        """Messages posted to one connection, optionally only of one type."""
        return [m for c, m in self.posts if c == connection_id and (type_ is None or m["type"] == type_)]


class AwsCallCounter:
    """Counts the AWS API calls the handlers make, by service.operation, with a botocore event hook.

    Each botocore client copies its event hooks when it is created, so the hook goes on the
    cached clients the handlers use (broadcast.aws), not on the session.
    """

    SERVICES = ("dynamodb", "stepfunctions")

    def __init__(self) -> None:
        from broadcast import aws

        self._emitters = [aws.client(service).meta.events for service in self.SERVICES]
        self.calls: list[str] = []

    def _count(self, event_name: str, **_kwargs: Any) -> None:
        _, service, operation = event_name.split(".", 2)
        self.calls.append(f"{service}.{operation}")

    def __enter__(self) -> AwsCallCounter:
        for events in self._emitters:
            events.register("before-call", self._count, unique_id="aws-call-counter")
        return self

    def __exit__(self, *_exc: object) -> None:
        for events in self._emitters:
            events.unregister("before-call", unique_id="aws-call-counter")


@contextlib.contextmanager
def mocked_backend(
    table_names: dict[str, str], state_machine_arn: str, endpoint: str
) -> Iterator[tuple[Any, Any, RecordingManagementApi]]:
    """moto DynamoDB tables and the (non-executing) timer state machine from template.yaml, plus a
    recording @connections API injected where the handlers look for it. Yields (ddb, sfn, management)."""
    import boto3
    from moto import mock_aws

    from broadcast import aws

    template = cfn.load()
    with mock_aws():
        ddb = boto3.client("dynamodb", region_name="us-east-1")
        cfn.create_tables(ddb, template, table_names)
        sfn = boto3.client("stepfunctions", region_name="us-east-1")
        definition = cfn.state_machine_definition(
            template,
            "ConnectionTimer",
            {"NotifierFunctionArn": "arn:aws:lambda:us-east-1:123456789012:function:notifier", "Partition": "aws"},
        )
        sfn.create_state_machine(
            name=state_machine_arn.rsplit(":", 1)[-1],
            definition=definition,
            roleArn="arn:aws:iam::123456789012:role/timer",
        )
        management = RecordingManagementApi()
        aws.inject("apigatewaymanagementapi", management, endpoint)
        yield ddb, sfn, management
