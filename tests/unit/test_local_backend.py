"""The local stack's AWS side: the timer's Lambda invocations run concurrently, as on AWS."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
import pytest

from broadcast import timer
from local_stack import template as cfn
from local_stack.aws_backend import REGION, AwsBackend
from tests.conftest import TABLE_NAMES
from tests.helpers import wait_until


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


def test_a_cancelled_transaction_puts_back_exactly_the_items_it_named(threaded: Any) -> None:
    # moto_speedups saves the items a transaction names instead of copying whole tables: a
    # cancelled one must leave every item as it was, an item it created must be gone again, and
    # an item it did not name (written in between) must stay.
    from local_stack import moto_speedups

    moto_speedups.install()
    ddb = threaded.ddb
    sessions, connections = TABLE_NAMES["SessionsTable"], TABLE_NAMES["ConnectionsTable"]
    ddb.put_item(TableName=sessions, Item={"sessionId": {"S": "s1"}, "listenerCount": {"N": "1"}})
    ddb.put_item(TableName=connections, Item={"connectionId": {"S": "other"}, "role": {"S": "listener"}})
    before = ddb.scan(TableName=sessions)["Items"]
    count_and_add = [
        {
            "Update": {
                "TableName": sessions,
                "Key": {"sessionId": {"S": "s1"}},
                "UpdateExpression": "ADD listenerCount :one",
                "ExpressionAttributeValues": {":one": {"N": "1"}},
            }
        },
        {"Put": {"TableName": connections, "Item": {"connectionId": {"S": "new"}}}},
    ]
    try:
        ddb.transact_write_items(
            TransactItems=[
                *count_and_add,
                {
                    "Delete": {
                        "TableName": connections,
                        "Key": {"connectionId": {"S": "absent"}},
                        "ConditionExpression": "attribute_exists(connectionId)",
                    }
                },
            ]
        )
    except ddb.exceptions.TransactionCanceledException as exc:
        codes = [r["Code"] for r in exc.response["CancellationReasons"]]
    else:
        raise AssertionError("the condition on the third item should have cancelled the transaction")
    assert codes == ["None", "None", "ConditionalCheckFailed"]
    assert ddb.scan(TableName=sessions)["Items"] == before
    assert sorted(i["connectionId"]["S"] for i in ddb.scan(TableName=connections)["Items"]) == ["other"]
    # AND a transaction that succeeds writes every item
    ddb.transact_write_items(TransactItems=count_and_add)
    assert ddb.get_item(TableName=sessions, Key={"sessionId": {"S": "s1"}})["Item"]["listenerCount"] == {"N": "2"}
    assert ddb.get_item(TableName=connections, Key={"connectionId": {"S": "new"}}).get("Item")


def test_the_timer_definition_is_parsed_once_and_its_executions_stay_apart() -> None:
    # moto_speedups keeps one parsed program per definition: timers started from it must still
    # run as executions of their own, each with its own input, each to its own end.
    from moto.stepfunctions.parser.backend.execution_worker import ExecutionWorker

    backend = AwsBackend(cfn.TEMPLATE, stack_name="parsed-once", time_scale=1_000_000)
    backend.start()
    parsed: list[Any] = []
    original = ExecutionWorker._get_evaluation_entrypoint

    def spy(self: Any) -> Any:
        program = original(self)
        parsed.append(program)
        return program

    ExecutionWorker._get_evaluation_entrypoint = spy  # type: ignore[method-assign]
    try:
        noticed: list[tuple[str, str]] = []

        def notifier(event: dict[str, Any], _context: Any) -> dict[str, Any]:
            noticed.append((event["connectionId"], event["notification"]))
            return {"delivered": False, "connectionId": event["connectionId"]}  # gone: the timer ends

        assert backend._bridge is not None
        backend._bridge.functions[backend.function_arn("NotifierFunction")] = notifier
        sfn = boto3.client("stepfunctions", region_name=REGION)
        arn = backend.state_machine_arns["ConnectionTimer"]
        for connection_id in ("first", "second", "third"):
            payload = {
                "connectionId": connection_id,
                "connectedAt": 0,
                "refreshAfterSeconds": 1,
                "warnAfterSeconds": 1,
                "cutAfterSeconds": 1,
            }
            sfn.start_execution(stateMachineArn=arn, name=connection_id, input=json.dumps(payload))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and len(noticed) < 3:
            time.sleep(0.02)
    finally:
        ExecutionWorker._get_evaluation_entrypoint = original  # type: ignore[method-assign]
        backend.stop()
    assert sorted(noticed) == [(c, "connectionRefreshRequired") for c in ("first", "second", "third")]
    assert len(parsed) == 3
    assert all(program is parsed[0] for program in parsed)


def _timer_backend(stack_name: str) -> tuple[AwsBackend, list[str], Any, str]:
    """A started backend whose Notifier records the connections it is invoked for; its Step Functions
    client and the connection timer's ARN."""
    backend = AwsBackend(cfn.TEMPLATE, stack_name=stack_name, time_scale=1_000_000)
    backend.start()
    noticed: list[str] = []
    assert backend._bridge is not None
    backend._bridge.functions[backend.function_arn("NotifierFunction")] = lambda event, _: noticed.append(
        event["connectionId"]
    )
    sfn = boto3.client("stepfunctions", region_name=REGION)
    return backend, noticed, sfn, backend.state_machine_arns["ConnectionTimer"]


def test_a_stop_right_after_the_start_stops_the_execution(monkeypatch: pytest.MonkeyPatch) -> None:
    # A connection that closes as soon as it opens: its $disconnect's StopExecution can come before
    # the execution's thread has begun. moto answered that stop with a 500 (no environment yet)
    # and the timer ran on. GIVEN execution threads slow to begin, as in a busy functions process
    from moto.stepfunctions.parser.backend.execution_worker import ExecutionWorker

    backend, noticed, sfn, machine = _timer_backend("stop-first")
    begin = ExecutionWorker._execution_logic

    def slow_to_begin(self: Any) -> None:
        time.sleep(0.2)
        begin(self)

    monkeypatch.setattr(ExecutionWorker, "_execution_logic", slow_to_begin)
    try:
        # WHEN each of five executions is stopped as soon as it is started
        arns = []
        for n in range(5):
            payload = timer.connection_input(f"brief-{n}", 0)
            started = sfn.start_execution(stateMachineArn=machine, name=f"brief-{n}", input=json.dumps(payload))
            sfn.stop_execution(executionArn=started["executionArn"])  # raised before the fix
            arns.append(started["executionArn"])
        wait_until(lambda: all(sfn.describe_execution(executionArn=a)["status"] != "RUNNING" for a in arns))
        time.sleep(0.5)  # what a running timer would have done by now (its waits end in microseconds)
        # THEN each ended ABORTED and none sent a notice
        assert {sfn.describe_execution(executionArn=a)["status"] for a in arns} == {"ABORTED"}
        assert noticed == []
    finally:
        backend.stop()


def _listener_item(i: int, language: str) -> dict[str, Any]:
    """A listener record of session s1, as the Connections table holds one."""
    return {
        "connectionId": {"S": f"c{i}"},
        "sessionId": {"S": "s1"},
        "role": {"S": "listener"},
        "targetLanguage": {"S": language},
        "joinedAt": {"N": str(1000 + i)},
    }


def test_dynamodb_answers_written_as_plain_json_equal_what_the_serializer_writes(threaded: Any) -> None:
    # moto_speedups writes a DynamoDB result of plain JSON with json.dumps instead of moto's
    # generic serializer: every answer of a varied workload must parse to the same object both
    # ways, and a result holding bytes (a binary attribute) must still go through the serializer.
    from moto.dynamodb.responses import DynamoResult

    from local_stack import moto_speedups

    moto_speedups.install()
    fast = DynamoResult.execute_result
    generic = fast.original  # type: ignore[attr-defined]
    compared: list[str] = []
    took_serializer: list[str] = []

    def both(self: Any, context: Any) -> Any:
        status, headers, body = fast(self, context)
        g_status, g_headers, g_body = generic(self, context)
        operation = context.operation_model.name
        assert (status, headers, json.loads(body)) == (g_status, g_headers, json.loads(g_body)), operation
        fast_path = operation in moto_speedups._READS and moto_speedups.plain_json(self.result)
        (compared if fast_path else took_serializer).append(operation)
        return status, headers, body

    ddb = threaded.ddb
    sessions, connections = TABLE_NAMES["SessionsTable"], TABLE_NAMES["ConnectionsTable"]
    DynamoResult.execute_result = both  # type: ignore[method-assign]
    try:
        item = {
            "sessionId": {"S": "s1"},
            "listenerCount": {"N": "3"},
            "languages": {"M": {"es": {"N": "2"}, "fr": {"N": "1"}, "nested": {"L": [{"S": "x"}, {"BOOL": True}]}}},
            "tags": {"SS": ["a", "b"]},
            "scores": {"NS": ["1.5", "2"]},
            "nothing": {"NULL": True},
            "quote": {"S": 'a "quoted" ü \u2028 line'},
        }
        ddb.put_item(TableName=sessions, Item=item)
        for i in range(5):
            ddb.put_item(TableName=connections, Item=_listener_item(i, "es"))
        ddb.get_item(TableName=sessions, Key={"sessionId": {"S": "s1"}}, ReturnConsumedCapacity="TOTAL")
        ddb.get_item(TableName=sessions, Key={"sessionId": {"S": "absent"}})
        ddb.scan(TableName=connections, Limit=2)
        ddb.query(
            TableName=connections,
            KeyConditionExpression="connectionId = :c",
            ExpressionAttributeValues={":c": {"S": "c1"}},
        )
        keys = [{"connectionId": {"S": f"c{i}"}} for i in range(5)]
        ddb.batch_get_item(RequestItems={connections: {"Keys": keys, "ConsistentRead": True}})
        ddb.transact_get_items(TransactItems=[{"Get": {"TableName": sessions, "Key": {"sessionId": {"S": "s1"}}}}])
        ddb.update_item(
            TableName=sessions,
            Key={"sessionId": {"S": "s1"}},
            UpdateExpression="ADD listenerCount :one",
            ExpressionAttributeValues={":one": {"N": "1"}},
            ReturnValues="ALL_NEW",
        )
        ddb.delete_item(TableName=connections, Key={"connectionId": {"S": "c0"}}, ReturnValues="ALL_OLD")
        ddb.put_item(TableName=connections, Item={"connectionId": {"S": "bin"}, "blob": {"B": b"\x00\xff"}})
        ddb.get_item(TableName=connections, Key={"connectionId": {"S": "bin"}})
    finally:
        DynamoResult.execute_result = fast  # type: ignore[method-assign]
    assert set(compared) == {"GetItem", "Scan", "Query", "BatchGetItem", "TransactGetItems"}
    # the writes (small answers), and the read of a binary attribute
    assert took_serializer == ["PutItem"] * 6 + ["UpdateItem", "DeleteItem", "PutItem", "GetItem"]


def _table_indexed_by_group(ddb: Any, name: str, projection: dict[str, Any]) -> None:
    """A table keyed by `pk` with a `by-group` index of the given projection."""
    ddb.create_table(
        TableName=name,
        AttributeDefinitions=[{"AttributeName": n, "AttributeType": "S"} for n in ("pk", "group")],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        GlobalSecondaryIndexes=[
            {
                "IndexName": "by-group",
                "KeySchema": [{"AttributeName": "group", "KeyType": "HASH"}],
                "Projection": projection,
            }
        ],
        BillingMode="PAY_PER_REQUEST",
    )


def test_an_index_query_answers_the_same_with_moto_speedups_projection(threaded: Any) -> None:
    # moto_speedups projects KEYS_ONLY and INCLUDE index items by picking attributes instead of
    # moto's round trip through plain Python, copies no item before projecting it, and measures
    # each item once per Query: the same Query must answer the same either way, pages included.
    from moto.dynamodb.models.table import SecondaryIndex, Table

    from local_stack import moto_speedups

    moto_speedups.install()
    ddb = threaded.ddb
    connections = TABLE_NAMES["ConnectionsTable"]
    _table_indexed_by_group(ddb, "included", {"ProjectionType": "INCLUDE", "NonKeyAttributes": ["kept", "nested"]})
    for i in range(6):
        nested = {"resumeBy": {"M": {"a": {"L": [{"N": "1"}, {"S": "x"}]}}}}
        ddb.put_item(TableName=connections, Item={**_listener_item(i, "es" if i % 2 else "fr"), **nested})
        ddb.put_item(
            TableName="included",
            Item={
                "pk": {"S": f"p{i}"},
                "group": {"S": "g"},
                "kept": {"NS": ["1", "2.5"]},
                "nested": {"M": {"deep": {"BOOL": True}}},
                "dropped": {"S": "not projected"},
            },
        )

    # Items of 300 KB whose index holds a few bytes of each: moto's 1 MB page counts whole items
    _table_indexed_by_group(ddb, "paged", {"ProjectionType": "KEYS_ONLY"})
    for i in range(8):
        ddb.put_item(TableName="paged", Item={"pk": {"S": f"p{i}"}, "group": {"S": "g"}, "blob": {"S": "x" * 300_000}})

    def queries() -> list[Any]:
        paged = ddb.get_paginator("query").paginate(
            TableName="paged",
            IndexName="by-group",
            KeyConditionExpression="#g = :g",
            ExpressionAttributeNames={"#g": "group"},
            ExpressionAttributeValues={":g": {"S": "g"}},
        )
        pages = [(page["Items"], page.get("LastEvaluatedKey")) for page in paged]
        return [
            pages,
            ddb.query(
                TableName=connections,
                IndexName="sessionId-targetLanguage-index",
                KeyConditionExpression="sessionId = :s",
                ExpressionAttributeValues={":s": {"S": "s1"}},
            )["Items"],
            ddb.query(
                TableName="included",
                IndexName="by-group",
                KeyConditionExpression="#g = :g",
                ExpressionAttributeNames={"#g": "group"},
                ExpressionAttributeValues={":g": {"S": "g"}},
            )["Items"],
        ]

    picked = queries()
    patched, patched_query = SecondaryIndex.project, Table.query
    SecondaryIndex.project = patched.original  # type: ignore[attr-defined,method-assign]
    Table.query = patched_query.original  # type: ignore[attr-defined,method-assign]
    try:
        generic = queries()
    finally:
        SecondaryIndex.project = patched  # type: ignore[method-assign]
        Table.query = patched_query  # type: ignore[method-assign]
    assert picked == generic
    assert [len(items) for items, _ in picked[0]] == [3, 3, 2]  # 1 MB pages of 300 KB items
    assert [sorted(i) for i in picked[1]] == [["connectionId", "sessionId", "targetLanguage"]] * 6
    assert all("dropped" not in i and "kept" in i and "nested" in i for i in picked[2])
    # AND the table's items are whole after queries that shared their values
    assert len(ddb.get_item(TableName="paged", Key={"pk": {"S": "p0"}})["Item"]["blob"]["S"]) == 300_000


def test_an_update_expression_parsed_once_applies_afresh_to_every_item(threaded: Any) -> None:
    # moto_speedups parses each UpdateExpression string once: the shared tree must not carry one
    # update's values or item into the next (moto copies it before validating and applying).
    from moto.dynamodb.parsing.expressions import UpdateExpressionParser

    from local_stack import moto_speedups

    moto_speedups.install()
    ddb = threaded.ddb
    sessions = TABLE_NAMES["SessionsTable"]
    cache = UpdateExpressionParser.make.__func__.cache  # type: ignore[attr-defined]
    cache.cache_clear()
    for session in ("a", "b"):
        ddb.put_item(TableName=sessions, Item={"sessionId": {"S": session}, "languageCounts": {"M": {}}})
    expression = "ADD listenerCount :n SET languageCounts.#l = if_not_exists(languageCounts.#l, :zero) + :n"
    for session, language, n in (("a", "es", 1), ("b", "fr", 5), ("a", "es", 2), ("b", "de", -1), ("a", "fr", 3)):
        ddb.update_item(
            TableName=sessions,
            Key={"sessionId": {"S": session}},
            UpdateExpression=expression,
            ExpressionAttributeNames={"#l": language},
            ExpressionAttributeValues={":n": {"N": str(n)}, ":zero": {"N": "0"}},
        )
    items = {i["sessionId"]["S"]: i for i in ddb.scan(TableName=sessions)["Items"]}
    assert items["a"]["listenerCount"] == {"N": "6"}
    assert items["a"]["languageCounts"] == {"M": {"es": {"N": "3"}, "fr": {"N": "3"}}}
    assert items["b"]["listenerCount"] == {"N": "4"}
    assert items["b"]["languageCounts"] == {"M": {"fr": {"N": "5"}, "de": {"N": "-1"}}}
    assert cache.cache_info().misses == 1  # parsed once, used for all five
    # AND an expression moto refuses is still refused every time (a failed parse is not kept)
    for _ in range(2):
        with pytest.raises(ddb.exceptions.ClientError, match="ValidationException"):
            ddb.update_item(TableName=sessions, Key={"sessionId": {"S": "a"}}, UpdateExpression="SET = nonsense")


def test_the_functions_process_sends_moto_unsigned_requests_and_moto_still_answers(threaded: Any) -> None:
    # The functions process skips SigV4 for the handlers' requests (moto checks no signature):
    # requests must go out without Authorization, and moto must still find the same tables.
    import boto3

    from local_stack.functions import _requests_to_moto_unsigned

    seen: list[dict[str, str]] = []
    handler = _requests_to_moto_unsigned()
    try:
        ddb = boto3.client("dynamodb", region_name=REGION)
        ddb.meta.events.register("before-send", lambda request, **_: seen.append(dict(request.headers)))
        sessions = TABLE_NAMES["SessionsTable"]
        ddb.put_item(TableName=sessions, Item={"sessionId": {"S": "unsigned"}})
        assert ddb.get_item(TableName=sessions, Key={"sessionId": {"S": "unsigned"}})["Item"]
        # AND a signed client (as the tests use) sees what the unsigned one wrote: one account, one region
        assert threaded.ddb.get_item(TableName=sessions, Key={"sessionId": {"S": "unsigned"}})["Item"]
    finally:
        assert boto3.DEFAULT_SESSION is not None
        boto3.DEFAULT_SESSION.events.unregister("choose-signer", handler)
    assert len(seen) == 2
    assert all("Authorization" not in headers for headers in seen)


def test_reserved_concurrency_is_the_templates_under_its_condition() -> None:
    functions = cfn.resources_of(cfn.load(), "AWS::Serverless::Function")
    reserved = AwsBackend(cfn.TEMPLATE, stack_name="reserved").reserved_concurrency()
    # Every function reserves its own, as template.yaml says when ReserveConcurrency is "true" (the default)
    assert set(reserved) == set(functions)
    for logical_id, props in functions.items():
        assert reserved[logical_id] == props["ReservedConcurrentExecutions"]["Fn::If"][1]
    assert reserved["DisconnectFunction"] == 50
    assert AwsBackend(cfn.TEMPLATE, parameters={"ReserveConcurrency": "false"}).reserved_concurrency() == {}


def test_lambda_concurrency_refuses_beyond_the_limit_and_frees_a_slot_when_one_returns() -> None:
    from local_stack import aws_faults

    concurrency = aws_faults.LambdaConcurrency({"Limited": 2})
    aws_faults.install_concurrency(concurrency)
    try:
        with (
            aws_faults.invocation("Limited") as first,
            aws_faults.invocation("Limited") as second,
            aws_faults.invocation("Limited") as third,
            aws_faults.invocation("Other") as unlimited,
        ):
            assert (first, second, third, unlimited) == (True, True, False, True)
        with aws_faults.invocation("Limited") as after:  # both returned: room again
            assert after
        with pytest.raises(RuntimeError), aws_faults.invocation("Limited"):
            raise RuntimeError("a handler that fails still leaves")
        assert concurrency.in_flight == {"Limited": 0, "Other": 0}
        assert concurrency.throttled == {"Limited": 1}
        assert concurrency.peak == {"Limited": 2, "Other": 1}
        # At TIME_SCALE=3 three times as many arrive for the same traffic: three times the room
        scaled = aws_faults.LambdaConcurrency({"Limited": 2}, time_scale=3)
        assert [scaled.enter("Limited") for _ in range(7)] == [True] * 6 + [False]
    finally:
        aws_faults.install_concurrency(None)


# Update expressions of every kind the backend writes, and ones moto refuses: the patched walk
# must leave the same items and raise the same errors as moto's own.
_UPDATES: list[tuple[str, dict[str, str], dict[str, Any], str | None]] = [
    (
        "ADD listenerCount :n SET languageCounts.#l = if_not_exists(languageCounts.#l, :zero) + :n",
        {"#l": "es"},
        {":n": {"N": "2"}, ":zero": {"N": "0"}},
        None,
    ),
    (
        "SET #s = :s, endedAt = :t REMOVE speakerGoneAt",
        {"#s": "status"},
        {":s": {"S": "ended"}, ":t": {"N": "5"}},
        None,
    ),
    (
        "SET tags = list_append(if_not_exists(tags, :empty), :tag)",
        {},
        {":empty": {"L": []}, ":tag": {"L": [{"S": "a"}]}},
        None,
    ),
    ("ADD members :m", {}, {":m": {"SS": ["x", "y"]}}, None),
    ("DELETE members :m", {}, {":m": {"SS": ["x"]}}, None),
    ("SET a = :v, a = :v", {}, {":v": {"N": "1"}}, "ValidationException"),  # overlapping paths
    ("SET sessionId = :v", {}, {":v": {"S": "other"}}, "ValidationException"),  # the key
    ("ADD #s :n", {"#s": "status"}, {":n": {"N": "1"}}, "ValidationException"),  # type mismatch
    ("SET missing.deep = :v", {}, {":v": {"N": "1"}}, "ValidationException"),  # no such path
    ("ADD x :n ADD y :n", {}, {":n": {"N": "1"}}, "ValidationException"),  # two ADD clauses
    ("SET status = :s", {}, {":s": {"S": "x"}}, "ValidationException"),  # a reserved word
]


def _apply_updates(ddb: Any) -> tuple[dict[str, Any], list[str]]:
    table = TABLE_NAMES["SessionsTable"]
    ddb.put_item(
        TableName=table,
        Item={
            "sessionId": {"S": "s"},
            "status": {"S": "active"},
            "speakerGoneAt": {"N": "1"},
            "languageCounts": {"M": {}},
        },
    )
    errors = []
    for expression, names, values, _ in _UPDATES:
        arguments: dict[str, Any] = {"ExpressionAttributeValues": values}
        if names:
            arguments["ExpressionAttributeNames"] = names
        try:
            ddb.update_item(TableName=table, Key={"sessionId": {"S": "s"}}, UpdateExpression=expression, **arguments)
            errors.append("")
        except ddb.exceptions.ClientError as exc:
            errors.append(exc.response["Error"]["Code"])
    item = ddb.get_item(TableName=table, Key={"sessionId": {"S": "s"}})["Item"]
    ddb.delete_item(TableName=table, Key={"sessionId": {"S": "s"}})
    return item, errors


def test_update_expressions_walked_with_one_processing_map_change_what_moto_would(threaded: Any) -> None:
    from moto.dynamodb.parsing.ast_nodes import DepthFirstTraverser

    from local_stack import moto_speedups

    moto_speedups.install()
    patched = DepthFirstTraverser.traverse
    assert hasattr(patched, "original"), "the patch is installed"
    item, errors = _apply_updates(threaded.ddb)
    DepthFirstTraverser.traverse = patched.original  # type: ignore[attr-defined]
    try:
        expected_item, expected_errors = _apply_updates(threaded.ddb)
    finally:
        DepthFirstTraverser.traverse = patched  # type: ignore[method-assign]
    assert item == expected_item
    assert errors == expected_errors
    assert errors == [error or "" for *_, error in _UPDATES]  # the refused ones refused, the rest applied
    assert item["listenerCount"] == {"N": "2"}
    assert item["status"] == {"S": "ended"}
    assert "speakerGoneAt" not in item
    assert item["members"] == {"SS": ["y"]}


# Conditions as the backend writes them (rate limits, joins), and ones moto refuses.
_CONDITIONS = [
    ("attribute_not_exists(hits) OR hits < :limit", {}, {":limit": {"N": "2"}}),
    ("attribute_not_exists(hits) OR hits < :limit", {}, {":limit": {"N": "2"}}),
    ("attribute_not_exists(hits) OR hits < :limit", {}, {":limit": {"N": "2"}}),  # now at the limit: refused
    ("attribute_exists(hits) AND #h >= :one", {"#h": "hits"}, {":one": {"N": "1"}}),
    ("hits = :limit", {}, {":limit": {"N": "9"}}),  # false: refused
    ("name = :one", {}, {":one": {"N": "1"}}),  # a reserved word
]


def _apply_conditions(ddb: Any) -> tuple[dict[str, Any], list[str]]:
    table = TABLE_NAMES["RateLimitsTable"]
    key = {"limitKey": {"S": "join#10.0.0.1#0"}}
    ddb.delete_item(TableName=table, Key=key)
    errors = []
    for condition, names, values in _CONDITIONS:
        arguments: dict[str, Any] = {"ExpressionAttributeValues": {":inc": {"N": "1"}, **values}}
        if names:
            arguments["ExpressionAttributeNames"] = names
        try:
            ddb.update_item(
                TableName=table, Key=key, UpdateExpression="ADD hits :inc", ConditionExpression=condition, **arguments
            )
            errors.append("")
        except ddb.exceptions.ClientError as exc:
            errors.append(exc.response["Error"]["Code"])
    return ddb.get_item(TableName=table, Key=key)["Item"], errors


@contextlib.contextmanager
def _moto_as_shipped() -> Iterator[None]:
    """moto's own code for what moto_speedups' expression and request patches replace, for the length of the block."""
    import copy

    from moto.core import responses
    from moto.core.botocore_stubber import BotocoreStubber
    from moto.core.request import Request
    from moto.dynamodb.comparisons import ConditionExpressionParser
    from moto.dynamodb.parsing import validators
    from moto.dynamodb.parsing.ast_nodes import DepthFirstTraverser, Node
    from moto.dynamodb.parsing.reserved_keywords import ReservedKeywords
    from moto.moto_api._internal.moto_random import MotoRandom

    lexer = ConditionExpressionParser._lex_condition_expression
    shipped: list[tuple[Any, str, Any]] = [
        (DepthFirstTraverser, "traverse", DepthFirstTraverser.traverse.original),  # type: ignore[attr-defined]
        (Node, "find_clauses", Node.find_clauses.original),  # type: ignore[attr-defined]
        (ReservedKeywords, "KEYWORDS", list(ReservedKeywords.KEYWORDS or [])),
        (responses, "method_names_from_class", responses.method_names_from_class.__wrapped__),  # type: ignore[attr-defined]
        (ConditionExpressionParser, "_lex_condition_expression", lexer.original),  # type: ignore[attr-defined]
        (validators, "deepcopy", copy.deepcopy),
        (BotocoreStubber, "process_request", BotocoreStubber.process_request.original),  # type: ignore[attr-defined]
        (Request, "from_primitives", classmethod(Request.from_primitives.__func__.original)),  # type: ignore[attr-defined]
        (MotoRandom, "get_random_string", MotoRandom.get_random_string.original),  # type: ignore[attr-defined]
    ]
    saved = [(owner, name, getattr(owner, name)) for owner, name, _ in shipped]
    for owner, name, value in shipped:
        setattr(owner, name, value)
    try:
        yield
    finally:
        for owner, name, value in saved:
            setattr(owner, name, value)


def test_updates_and_conditions_answer_as_moto_does_without_the_speedups(threaded: Any) -> None:
    # moto_speedups looks node types up once instead of asking ABCMeta at every node, keeps the
    # reserved words in a set, lexes each ConditionExpression string once and copies parsed trees
    # by pickle: the same items and the same refusals as moto's own code.
    from local_stack import moto_speedups

    moto_speedups.install()
    ddb = threaded.ddb
    item, errors = _apply_updates(ddb)
    limited, refused = _apply_conditions(ddb)
    with _moto_as_shipped():
        expected_item, expected_errors = _apply_updates(ddb)
        expected_limited, expected_refused = _apply_conditions(ddb)
    assert (item, errors) == (expected_item, expected_errors)
    assert (limited, refused) == (expected_limited, expected_refused)
    assert errors[-2:] == ["ValidationException", "ValidationException"]
    failed = "ConditionalCheckFailedException"
    assert refused == ["", "", failed, "", failed, "ValidationException"]
    assert limited["hits"] == {"N": "3"}


_REQUESTS = [
    (  # what botocore sends moto for a GetItem
        "https://dynamodb.us-east-1.amazonaws.com/",
        {
            "X-Amz-Target": b"DynamoDB_20120810.GetItem",
            "Content-Type": b"application/x-amz-json-1.0",
            "User-Agent": b"Boto3/1.0 md/Botocore#1.0",
            "host": b"dynamodb.us-east-1.amazonaws.com",
            "X-Amz-Date": b"20261201T073607Z",
            "amz-sdk-request": b"attempt=1",
            "Content-Length": "24",
        },
        b'{"TableName": "t\\u00e9 x"}',
    ),
    (
        "https://states.us-east-1.amazonaws.com/",
        {"X-Amz-Target": "AWSStepFunctions.StartExecution", "Content-Type": "application/x-amz-json-1.0"},
        b"{}",
    ),
    # no Content-Type, a header twice, Transfer-Encoding dropped, an empty body, plain http
    ("http://dynamodb.us-east-1.amazonaws.com/", {"X-Dup": "1", "x-dup": "2", "Transfer-Encoding": "chunked"}, b""),
    # Content-Type twice (the first counts), a stale Content-Length (the body's counts)
    (
        "https://dynamodb.us-east-1.amazonaws.com/",
        {"Content-Type": "a/b", "content-type": "c/d", "Content-Length": "9"},
        b"x",
    ),
]


def _comparable(environ: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in environ.items() if k not in ("wsgi.input", "wsgi.errors", "werkzeug.request")}


@pytest.mark.parametrize(("url", "headers", "body"), _REQUESTS)
def test_a_json_request_is_built_with_the_environ_werkzeugs_test_client_builds(
    url: str, headers: dict[str, Any], body: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    from moto.core.request import Request

    from local_stack import moto_speedups

    moto_speedups.install()
    with monkeypatch.context() as patched:

        def not_the_test_client(*_: Any, **__: Any) -> None:
            raise AssertionError("built by werkzeug's test client")

        patched.setattr(Request, "from_values", not_the_test_client)
        direct = Request.from_primitives("POST", url, headers, body)
    with _moto_as_shipped():
        built = Request.from_primitives("POST", url, headers, body)
    assert _comparable(direct.environ) == _comparable(built.environ)
    assert direct.get_data() == built.get_data()
    assert (direct.raw_url, list(direct.headers)) == (built.raw_url, list(built.headers))


def test_requests_that_are_not_a_json_post_are_built_the_way_moto_builds_them() -> None:
    from moto.core.request import Request

    from local_stack import moto_speedups

    moto_speedups.install()
    for method, url, body in [
        ("GET", "https://s3.amazonaws.com/bucket/key?versionId=1", None),
        ("POST", "https://dynamodb.us-east-1.amazonaws.com/?x=1", b"{}"),
        ("POST", "http://localhost:5000/", b"{}"),
        ("POST", "https://DynamoDB.us-east-1.amazonaws.com/", b"{}"),  # werkzeug writes the host in lower case
    ]:
        direct = Request.from_primitives(method, url, {}, body)
        with _moto_as_shipped():
            built = Request.from_primitives(method, url, {}, body)
        assert _comparable(direct.environ) == _comparable(built.environ), url


def test_each_url_is_dispatched_to_what_moto_would_match() -> None:
    from moto.dynamodb.responses import DynamoHandler
    from moto.stepfunctions.responses import StepFunctionResponse

    from local_stack import moto_speedups

    assert moto_speedups.dispatcher_of("https://dynamodb.us-east-1.amazonaws.com/") == DynamoHandler.dispatch
    assert moto_speedups.dispatcher_of("https://states.us-east-1.amazonaws.com/") == StepFunctionResponse.dispatch
    assert moto_speedups.dispatcher_of("https://example.com/") is None  # not AWS's: moto decides


def test_request_ids_drawn_at_once_are_the_same_kind_and_follow_moto_s_seed() -> None:
    import string

    from moto.moto_api._internal import mock_random

    from local_stack import moto_speedups

    moto_speedups.install()
    mock_random.seed(7)
    first = [mock_random.get_random_string(length=52) for _ in range(50)]
    mock_random.seed(7)
    assert first == [mock_random.get_random_string(length=52) for _ in range(50)]
    assert {len(x) for x in first} == {52}
    assert set("".join(first)) <= set(string.ascii_letters + string.digits)
    assert set(mock_random.get_random_string(length=400, include_digits=False)) <= set(string.ascii_letters)
    assert mock_random.get_random_string(length=30, lower_case=True).islower()


def test_a_start_execution_leaves_starting_its_thread_to_another(monkeypatch: pytest.MonkeyPatch) -> None:
    # moto's StartExecution started the execution's thread itself and waited for it to begin (a
    # wait for the GIL, on the one thread that runs moto's requests). GIVEN the thread that starts
    # each execution's thread recorded
    backend, noticed, sfn, machine = _timer_backend("starts")
    starters: list[str] = []
    start = threading.Thread.start

    def recorded(self: threading.Thread) -> None:
        if getattr(self, "_target", None) is not None and getattr(self._target, "__name__", "") == "_execution_logic":
            starters.append(threading.current_thread().name)
        start(self)

    monkeypatch.setattr(threading.Thread, "start", recorded)
    try:
        # WHEN three timers are started
        for n in range(3):
            sfn.start_execution(
                stateMachineArn=machine, name=f"t-{n}", input=json.dumps(timer.connection_input(f"t-{n}", 0))
            )
        # THEN each runs (and notifies) as before, its thread started by the starter, not by moto's request
        wait_until(lambda: len(set(noticed)) == 3)
        assert starters == ["execution-starter_0"] * 3
    finally:
        backend.stop()
