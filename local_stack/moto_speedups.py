"""Six of moto's costs that AWS does not have, removed so that the emulator can hold a hall.

Each was found with py-spy on the hall scenario (100 listeners at TIME_SCALE=300), where the
emulator's one process and its one GIL carry every connection, function and timer:

- TransactWriteItems deep-copied every table it touched before each call, to roll back on
  failure: O(table), and a hall's joins, leaves and refreshes are all transactions. Here only
  the items the transaction names are saved and put back: O(items in the transaction).
- Every StartExecution parsed the state machine's definition again with ANTLR (about 0.1 s
  of CPU each; a hall starts one timer per connection and per refresh). Parsed once here.
- Every JSONPath in a Task's Parameters was compiled again (a PLY parser built per call).
- Every DynamoDB answer was written out by moto's generic serializer, which walks the service
  model's shapes value by value: a Query of 500 listener records took about 0.3 s of CPU,
  most of it there (the audio route reads one per second, and at TIME_SCALE=300 one per
  frame). DynamoDB's wire format is the JSON of moto's own result, so a result made only of
  JSON's types is written with json.dumps; anything else (bytes, timestamps) still goes
  through the serializer. tests/unit/test_local_backend.py checks both give the same answer.
- A Query on an index with a KEYS_ONLY or INCLUDE projection projected each item by turning
  it into plain Python and back through boto3's TypeSerializer (a quarter of the audio route's
  read). Those projections keep whole top-level attributes, so here the item's own attributes
  are picked. The same test file checks that an index Query answers the same.
- Every UpdateItem (and every Update in a transaction) tokenized and parsed its
  UpdateExpression twice. A hall repeats a handful of expressions, and moto deep-copies the
  parsed tree before it validates or applies it, so each expression string is parsed once.

What moto computes is unchanged: the same operations, conditions and errors, on the same
state; tests/unit/test_local_backend.py checks the rollback of a cancelled transaction.
Installed once per process with the lock that serializes moto (aws_backend._serialize_moto).
"""

from __future__ import annotations

import copy
import functools
import inspect
import json
import re
import threading
from typing import Any

_installed = False
_lock = threading.Lock()


def install() -> None:
    """Apply the six patches (idempotent)."""
    global _installed
    with _lock:
        if _installed:
            return
        _transactions_save_items_not_tables()
        _parse_each_definition_once()
        _compile_each_json_path_once()
        _dynamodb_answers_as_plain_json()
        _index_projection_picks_attributes()
        _parse_each_update_expression_once()
        _installed = True


def _transactions_save_items_not_tables() -> None:
    from moto.dynamodb.models import DynamoDBBackend
    from moto.dynamodb.models.dynamo_type import DynamoType
    from moto.dynamodb.models.table import Table

    original = DynamoDBBackend.transact_write_items
    assert "__deepcopy__" not in Table.__dict__, "moto's Table copies itself now: revisit this patch"

    def touched(backend: Any, transact_items: list[dict[str, Any]]) -> list[tuple[Any, Any, Any, Any]]:
        """(table, hash key, range key, a copy of the item or None) for every item the transaction names."""
        saved = []
        for entry in transact_items:
            op = next(iter(entry.values()), None)
            if not isinstance(op, dict):
                continue
            table = backend.tables.get(op.get("TableName"))
            key = op.get("Item") if "Item" in op else op.get("Key")
            if table is None or not isinstance(key, dict) or table.hash_key_attr not in key:
                continue  # moto answers these with its own validation error, before writing
            hash_key = DynamoType(key[table.hash_key_attr])
            range_key = None
            if table.range_key_attr is not None:
                if table.range_key_attr not in key:
                    continue
                range_key = DynamoType(key[table.range_key_attr])
            saved.append((table, hash_key, range_key, copy.deepcopy(table.get_item(hash_key, range_key))))
        return saved

    def put_back(saved: list[tuple[Any, Any, Any, Any]]) -> None:
        for table, hash_key, range_key, item in reversed(saved):  # the first copy of an item wins
            items = table.items if range_key is None else table.items[hash_key]
            slot = hash_key if range_key is None else range_key
            if item is None:
                items.pop(slot, None)
            else:
                items[slot] = item

    @functools.wraps(original)
    def transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> None:
        saved = touched(self, transact_items)
        # moto's own copy of each table becomes the table itself (its rollback then restores
        # nothing); every moto request holds MOTO_LOCK, so no other copy of a table is under way.
        Table.__deepcopy__ = lambda table, memo: table  # type: ignore[attr-defined]
        try:
            return original(self, transact_items)
        except BaseException:
            put_back(saved)
            raise
        finally:
            del Table.__deepcopy__  # type: ignore[attr-defined]

    DynamoDBBackend.transact_write_items = transact_write_items  # type: ignore[method-assign]


def _parse_each_definition_once() -> None:
    from moto.stepfunctions.parser.asl.component.eval_component import EvalComponent
    from moto.stepfunctions.parser.backend.execution_worker import ExecutionWorker

    programs: dict[str, Any] = {}
    lock = threading.Lock()

    def warm_heap_keys(component: Any, seen: set[int]) -> None:
        # A component keeps its per-execution values in the execution's own heap under a key
        # it draws lazily; drawn here, once, so that concurrent executions never race to draw it.
        if id(component) in seen:
            return
        seen.add(id(component))
        if isinstance(component, EvalComponent):
            _ = component.heap_key
        children = vars(component).values() if hasattr(component, "__dict__") else ()
        for child in children:
            for value in child if isinstance(child, (list, tuple)) else (child,):
                if hasattr(value, "__dict__") and type(value).__module__.startswith("moto.stepfunctions"):
                    warm_heap_keys(value, seen)

    def entrypoint(self: Any) -> Any:
        definition = self._evaluation_details.state_machine_details.definition
        if _keeps_state(definition):
            return original(self)  # Map and Parallel states hold per-run state in their components
        with lock:
            if definition not in programs:
                program = original(self)
                warm_heap_keys(program, set())
                programs[definition] = program
            return programs[definition]

    original = ExecutionWorker._get_evaluation_entrypoint
    ExecutionWorker._get_evaluation_entrypoint = entrypoint  # type: ignore[method-assign]


def _keeps_state(definition: str) -> bool:
    """Whether a definition has a Map or Parallel state anywhere (their components are not reusable)."""
    try:
        found = re.findall(r'"Type"\s*:\s*"(\w+)"', definition)
    except TypeError:
        return True
    return bool({"Map", "Parallel"} & set(found))


def _compile_each_json_path_once() -> None:
    from moto.stepfunctions.parser.asl.utils import json_path

    json_path.parse = functools.lru_cache(maxsize=1024)(json_path.parse)


_JSON_SCALARS = (str, int, float, bool, type(None))


def plain_json(value: Any) -> bool:
    """Whether `value` is made only of dicts with str keys, lists and JSON's scalars."""
    if isinstance(value, dict):
        return all(isinstance(k, str) and plain_json(v) for k, v in value.items())
    if isinstance(value, list):
        return all(plain_json(v) for v in value)
    return isinstance(value, _JSON_SCALARS) and not (isinstance(value, float) and value != value)


# The reads, whose answers grow with the items they return; a write's answer is small.
_READS = frozenset({"GetItem", "BatchGetItem", "Query", "Scan", "TransactGetItems"})


def _dynamodb_answers_as_plain_json() -> None:
    from moto.dynamodb.responses import DynamoResult

    original = DynamoResult.execute_result

    @functools.wraps(original)
    def execute_result(self: Any, context: Any) -> Any:
        result = self.result
        operation = context.operation_model
        if operation.name not in _READS or not isinstance(result, dict) or not plain_json(result):
            return original(self, context)
        members = operation.output_shape.members
        serializer = context.serializer_class(operation_model=operation)
        response = serializer._create_default_response()
        response["headers"]["Content-Type"] = serializer._get_protocol_specific_content_type()
        # The serializer writes only the output shape's members (moto adds a few of its own).
        body = json.dumps({key: value for key, value in result.items() if key in members})
        return response["status_code"], response["headers"], body

    execute_result.original = original  # type: ignore[attr-defined]
    DynamoResult.execute_result = execute_result  # type: ignore[method-assign]


def _index_projection_picks_attributes() -> None:
    from moto.dynamodb.models.dynamo_type import Item
    from moto.dynamodb.models.table import SecondaryIndex

    original = SecondaryIndex.project

    @functools.wraps(original)
    def project(self: Any, item: Any) -> Any:
        projection_type = (self.projection or {}).get("ProjectionType")
        if projection_type not in ("KEYS_ONLY", "INCLUDE"):
            return original(self, item)
        kept = self.table_key_attrs + [key["AttributeName"] for key in self.schema]
        if projection_type == "INCLUDE":
            kept = kept + self.projection.get("NonKeyAttributes", [])
        # moto's Query projects copies of the table's items, so their values can be shared.
        picked = {name: item.attrs[name] for name in dict.fromkeys(kept) if name in item.attrs}
        return Item(hash_key=item.hash_key, range_key=item.range_key, attrs=picked)

    project.original = original  # type: ignore[attr-defined]
    SecondaryIndex.project = project  # type: ignore[method-assign]


def _parse_each_update_expression_once() -> None:
    from moto.dynamodb.parsing.expressions import UpdateExpressionParser
    from moto.dynamodb.parsing.validators import Validator

    assert "deepcopy(expression)" in inspect.getsource(Validator.__init__), (
        "moto's Validator no longer copies the tree it validates: a shared parsed tree would be changed"
    )
    original = UpdateExpressionParser.make.__func__  # type: ignore[attr-defined]
    cached = functools.lru_cache(maxsize=1024)(lambda expression: original(UpdateExpressionParser, expression))

    def make(cls: Any, expression_str: str) -> Any:
        if cls is not UpdateExpressionParser or not isinstance(expression_str, str):
            return original(cls, expression_str)
        return cached(expression_str)

    make.original = original  # type: ignore[attr-defined]
    make.cache = cached  # type: ignore[attr-defined]
    UpdateExpressionParser.make = classmethod(make)  # type: ignore[method-assign,assignment]
