"""Sixteen of moto's costs that AWS does not have, removed so that the emulator can hold a hall.

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
- A Query on such an index also deep-copied every matching item whole before projecting it,
  and computed each item's size twice (once to check the 1 MB page, once to add it up), each
  time walking every attribute. At 500 listeners that was most of the audio route's read (and
  the route is read once per frame at TIME_SCALE=60 and above). The projection builds new items
  anyway, so nothing is copied before it, and each item's size is computed once per Query.
- Every UpdateItem validates its expression's tree with ten processors, each walking the whole
  tree, and at every node each processor built its map of node types to functions twice (once
  to ask whether the node is one it processes, once to find the function): most of an
  UpdateItem's time in moto (a hall's `$connect` makes one, for its rate limit). Here each walk
  builds the map once, and visits the same nodes in the same order with the same functions.
- Four more in every UpdateItem and every Update or condition in a transaction, measured on the
  thread that runs moto's requests (an UpdateItem with a condition, as a rate limit makes one,
  took 4.6 ms of its CPU; a join's TransactWriteItems 4.6 ms; 3.4 and 3.2 ms after them):
  - every node class has ABCMeta for its metaclass, so each isinstance() against one ran
    ABCMeta's __instancecheck__, at every node, for each of the ten processors and in
    `find_clauses`. No node class has virtual subclasses (checked at install), so a node's type
    decides alone, and it is looked up once per type;
  - DynamoDB's reserved words are checked with `in` on a list of 573 strings, once per name in
    every expression: the same list, with a set's `in`;
  - every ConditionExpression was lexed again, a dozen regular expressions per token: each
    string's tokens are kept (they depend on the string alone; parsing them still uses the
    request's names and values);
  - moto deep-copies the parsed UpdateExpression before it validates it: copied by pickle here,
    the same tree in half the time.
- Every request listed the methods of its response class with inspect.getmembers (a few hundred
  attributes) to check that the action is one: listed once per class.
- Three in every request, whatever it asks (a GetItem took 1.0 to 1.2 ms of the moto thread's
  CPU, about 0.2 ms less after them):
  - its service was found by matching its URL against 53 services' patterns, then the
    service's own URLs, each compiled again: found once per URL;
  - its werkzeug Request was built by werkzeug's test client (an EnvironBuilder); for a POST of
    a body to `/` (every DynamoDB and Step Functions request) the environ is written directly,
    the same keys and values;
  - its 52-character request id was drawn one `random.choice` at a time: drawn with one
    `choices`, from the same seedable source.

What moto computes is unchanged: the same operations, conditions and errors, on the same
state; tests/unit/test_local_backend.py checks the rollback of a cancelled transaction.
Installed once per process with the lock that serializes moto (aws_backend._serialize_moto).
"""

from __future__ import annotations

import abc
import copy
import functools
import inspect
import io
import json
import re
import sys
import threading
from typing import Any

_installed = False
_lock = threading.Lock()


def install() -> None:
    """Apply the patches (idempotent)."""
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
        _index_query_copies_nothing_it_projects()
        _traverse_with_one_processing_map()
        _find_clauses_by_type()
        _reserved_keywords_as_a_set()
        _method_names_once_per_class()
        _lex_each_condition_once()
        _copy_update_trees_by_pickle()
        _dispatch_each_url_once()
        _json_requests_built_without_the_test_client()
        _request_ids_drawn_at_once()
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


def _picks_attributes(index: Any) -> bool:
    """A KEYS_ONLY or INCLUDE index: its projection keeps whole top-level attributes of the item."""
    return (index.projection or {}).get("ProjectionType") in ("KEYS_ONLY", "INCLUDE")


def _index_projection_picks_attributes() -> None:
    from moto.dynamodb.models.dynamo_type import DynamoType, Item, LimitedSizeDict
    from moto.dynamodb.models.table import SecondaryIndex

    probe = Item(hash_key=DynamoType({"S": "k"}), range_key=None, attrs={"a": {"S": "v"}})
    assert set(vars(probe)) == {"hash_key", "range_key", "attrs"}, "moto's Item holds more now: revisit project"
    original = SecondaryIndex.project

    @functools.wraps(original)
    def project(self: Any, item: Any) -> Any:
        if not _picks_attributes(self):
            return original(self, item)
        kept = self.table_key_attrs + [key["AttributeName"] for key in self.schema]
        if self.projection["ProjectionType"] == "INCLUDE":
            kept = kept + self.projection.get("NonKeyAttributes", [])
        # A new item holding the table item's own attribute values: an answer is written out
        # under moto's lock, before any request can change them, and nothing writes to it.
        picked = {name: item.attrs[name] for name in dict.fromkeys(kept) if name in item.attrs}
        projected = Item.__new__(Item)  # Item.__init__ re-wraps and re-measures every value
        projected.hash_key, projected.range_key = item.hash_key, item.range_key
        projected.attrs = LimitedSizeDict()
        dict.update(projected.attrs, picked)  # a subset of an item within the size limit
        return projected

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


_query = threading.local()  # per thread: `sharing` (an index Query under way) and its item `sizes`


def _index_query_copies_nothing_it_projects() -> None:
    from moto.dynamodb.models import table as table_module
    from moto.dynamodb.models.dynamo_type import Item
    from moto.dynamodb.models.table import Table

    source = inspect.getsource(Table.query)
    revisit = "moto's Query no longer copies the matches before projecting them: revisit this patch"
    assert "results = copy.deepcopy(results)" in source, revisit
    assert "index.project(r) for r in results" in source, revisit
    real_copy = table_module.copy
    original_query, original_size = Table.query, Item.size
    signature = inspect.signature(original_query)

    class _Copy:
        """table.py's `copy`: during an index Query that projects, the matches go to the projection uncopied."""

        def __getattr__(self, name: str) -> Any:
            return getattr(real_copy, name)

        @staticmethod
        def deepcopy(value: Any, memo: Any = None) -> Any:
            if getattr(_query, "sharing", False) and isinstance(value, list):
                return list(value)
            return real_copy.deepcopy(value, memo)

    @functools.wraps(original_size)
    def size(self: Any) -> int:
        sizes = getattr(_query, "sizes", None)
        if sizes is None:
            return original_size(self)
        found = sizes.get(id(self))
        if found is None:
            found = sizes[id(self)] = original_size(self)
        return found

    @functools.wraps(original_query)
    def query(self: Any, *args: Any, **kwargs: Any) -> Any:
        index_name = signature.bind(self, *args, **kwargs).arguments.get("index_name")
        index = next((i for i in self.all_indexes() if i.name == index_name), None) if index_name else None
        if index is None or not _picks_attributes(index):
            return original_query(self, *args, **kwargs)
        # Within one Query under moto's lock no item changes: its size is the same every time.
        _query.sharing, _query.sizes = True, {}
        try:
            return original_query(self, *args, **kwargs)
        finally:
            _query.sharing, _query.sizes = False, None

    table_module.copy = _Copy()  # type: ignore[assignment]
    Item.size = size  # type: ignore[method-assign]
    query.original = original_query  # type: ignore[attr-defined]
    Table.query = query  # type: ignore[method-assign]


def _traverse_with_one_processing_map() -> None:
    from moto.dynamodb.parsing.ast_nodes import DepthFirstTraverser, Node

    revisit = "moto's DepthFirstTraverser changed: revisit this patch"
    assert "self.nodes_to_be_processed()" in inspect.getsource(DepthFirstTraverser.traverse_node_recursively), revisit
    for name in ("process", "nodes_to_be_processed", "traverse_node_recursively"):
        overridden = [c.__name__ for c in _subclasses(DepthFirstTraverser) if name in vars(c)]
        assert not overridden, f"{revisit} ({', '.join(overridden)} override {name})"
    original = DepthFirstTraverser.traverse
    no_hook = DepthFirstTraverser.pre_processing_of_child

    # Node's metaclass is ABCMeta, so each isinstance() against a node class ran ABCMeta's
    # __instancecheck__: most of a walk. No node class is registered as a virtual subclass
    # (checked below), so a node's type alone decides, and is looked up once per type:
    # whether it is a Node, and which entry of a traverser's map (the first that matches) handles it.
    is_node: dict[type, bool] = {}
    handled_by: dict[tuple[type, type], int] = {}
    node_classes = [Node, *_subclasses(Node)]
    assert not any(abc._get_dump(c)[0] for c in node_classes), f"{revisit} (a node class has virtual subclasses)"

    @functools.wraps(original)
    def traverse(self: Any, node: Any) -> Any:
        functions = tuple(self._processing_map().values())
        traverser = type(self)
        hook = None if traverser.pre_processing_of_child is no_hook else self.pre_processing_of_child

        def entry(kind: type) -> int:
            key = (traverser, kind)
            found = handled_by.get(key)
            if found is None:
                types = tuple(self._processing_map())
                found = handled_by[key] = next((i for i, t in enumerate(types) if issubclass(kind, t)), -1)
            return found

        def walk(node: Any, child_id: int) -> Any:  # DepthFirstTraverser.traverse_node_recursively
            kind = type(node)
            node_like = is_node.get(kind)
            if node_like is None:
                node_like = is_node[kind] = issubclass(kind, Node)
            if node_like:
                parent = node.parent
                if node.children is not None:
                    for i, child in enumerate(node.children):
                        if hook is not None:
                            hook(node, i)
                        walk(child, i)
                index = entry(kind)
                if index >= 0:
                    node = functions[index](node)
                    node.parent = parent
                    if parent:
                        parent.children[child_id] = node
            return node

        return walk(node, -1)

    traverse.original = original  # type: ignore[attr-defined]
    DepthFirstTraverser.traverse = traverse  # type: ignore[method-assign]


def _find_clauses_by_type() -> None:
    from moto.dynamodb.parsing.ast_nodes import Expression, Node, UpdateExpressionFunction

    revisit = "moto's find_clauses changed: revisit this patch"
    source = inspect.getsource(Node.find_clauses)
    assert "elif isinstance(child, Expression)" in source, revisit
    assert "elif isinstance(child, UpdateExpressionFunction)" in source, revisit
    assert not [c.__name__ for c in _subclasses(Node) if "find_clauses" in vars(c)], revisit
    original = Node.find_clauses
    descends: dict[type, bool] = {}  # a child of this type is searched in turn

    @functools.wraps(original)
    def find_clauses(self: Any, clause_types: Any) -> list[Any]:
        clauses: list[Any] = []
        for child in self.children or []:
            kind = type(child)
            if kind in clause_types:
                clauses.append(child)
                continue
            deeper = descends.get(kind)
            if deeper is None:
                deeper = descends[kind] = issubclass(kind, (Expression, UpdateExpressionFunction))
            if deeper:
                clauses.extend(child.find_clauses(clause_types))
        return clauses

    find_clauses.original = original  # type: ignore[attr-defined]
    Node.find_clauses = find_clauses  # type: ignore[method-assign]


class _Keywords(list):  # type: ignore[type-arg]
    """DynamoDB's reserved words: still the list moto built, with a set's `in`."""

    def __init__(self, words: list[str]) -> None:
        super().__init__(words)
        self._set = frozenset(words)

    def __contains__(self, word: object) -> bool:
        return word in self._set


def _reserved_keywords_as_a_set() -> None:
    from moto.dynamodb.parsing.reserved_keywords import ReservedKeywords

    words = ReservedKeywords.get_reserved_keywords()
    if not isinstance(words, _Keywords):
        ReservedKeywords.KEYWORDS = _Keywords(words)


def _method_names_once_per_class() -> None:
    from moto.core import responses

    current = responses.method_names_from_class
    if hasattr(current, "cache_info"):
        return
    assert "method_names = method_names_from_class(self.__class__)" in inspect.getsource(
        responses.BaseResponse.call_action
    ), "moto's call_action changed: revisit this patch"
    responses.method_names_from_class = functools.lru_cache(maxsize=None)(current)  # type: ignore[assignment]


def _lex_each_condition_once() -> None:
    from collections import deque

    from moto.dynamodb.comparisons import ConditionExpressionParser

    original = ConditionExpressionParser._lex_condition_expression
    if hasattr(original, "original"):
        return
    assert "return nodes" in inspect.getsource(original), "moto's condition lexer changed: revisit this patch"

    @functools.lru_cache(maxsize=1024)
    def tokens(expression: str) -> tuple[Any, ...]:
        lexer = ConditionExpressionParser(expression, None, None)
        return tuple(original(lexer))

    @functools.wraps(original)
    def lex(self: Any) -> Any:
        if not isinstance(self.condition_expression, str):
            return original(self)
        return deque(tokens(self.condition_expression))

    lex.original = original  # type: ignore[attr-defined]
    ConditionExpressionParser._lex_condition_expression = lex  # type: ignore[method-assign]


def _copy_update_trees_by_pickle() -> None:
    import pickle

    from moto.dynamodb.parsing import validators
    from moto.dynamodb.parsing.ast_nodes import Node

    if getattr(validators.deepcopy, "by_pickle", False):
        return
    assert validators.deepcopy is copy.deepcopy, "moto's validators copy differently now: revisit this patch"

    def deepcopy(value: Any, memo: Any = None) -> Any:
        if memo is None and isinstance(value, Node):
            return pickle.loads(pickle.dumps(value, pickle.HIGHEST_PROTOCOL))  # noqa: S301 - our own tree, in memory
        return copy.deepcopy(value, memo)

    deepcopy.by_pickle = True  # type: ignore[attr-defined]
    validators.deepcopy = deepcopy  # type: ignore[attr-defined]


def _dispatch_each_url_once() -> None:
    """moto finds the service of every request by matching its URL against every service's
    patterns (53 regular expressions), then the service's own URLs, each compiled again. The
    answer depends on the URL alone (a service's URLs map to its response class's `dispatch`,
    a classmethod that makes a new handler per request), so it is kept per URL; what follows
    the match is moto's own code, unchanged."""
    from moto.core import botocore_stubber
    from moto.core.exceptions import HTTPException
    from moto.core.request import normalize_request
    from moto.core.utils import get_equivalent_url_in_aws_domain
    from moto.moto_api import recorder  # one object for the process (moto imports it per request)

    stubber = botocore_stubber.BotocoreStubber
    original = stubber.process_request
    if getattr(original, "cached_dispatch", False):
        return
    source = inspect.getsource(original)
    for line in (
        "for service, pattern in backend_index.backend_url_patterns:",
        "for url, method_to_execute in backend.urls.items():",
        "recorder._record_request(normalized_request)",
        "normalized_request.raw_url,",
    ):
        assert line in source, "moto's BotocoreStubber.process_request changed: revisit this patch"
    targets: dict[str, Any] = {}

    def process_request(self: Any, request: Any) -> Any:
        parsed_url, _ = get_equivalent_url_in_aws_domain(request.url)
        clean_url = f"{parsed_url.scheme}://{parsed_url.netloc}{parsed_url.path}"
        target = targets.get(clean_url)
        if target is None:
            target = dispatcher_of(clean_url)
            if target is None:
                return original(self, request)  # not one to keep (passthrough, unknown, refused): moto decides
            targets[clean_url] = target
        normalized_request = normalize_request(request)
        try:
            recorder._record_request(normalized_request)
            status, headers, body = target(normalized_request, normalized_request.raw_url, normalized_request.headers)
        except HTTPException as e:
            status, headers, body = e.code, e.get_headers(), e.get_body()
        return status, headers, body

    process_request.cached_dispatch = True  # type: ignore[attr-defined]
    process_request.original = original  # type: ignore[attr-defined]
    stubber.process_request = process_request  # type: ignore[method-assign]


def dispatcher_of(clean_url: str) -> Any:
    """What moto's BotocoreStubber.process_request calls for `clean_url`, when it is a response
    class's `dispatch` (the same for every request to that URL); None otherwise."""
    import moto.backend_index as backend_index
    import moto.backends as backends
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.core.base_backend import BackendDict
    from moto.core.config import passthrough_service, passthrough_url, service_whitelisted

    if passthrough_url(clean_url):
        return None
    for service, pattern in backend_index.backend_url_patterns:
        if pattern.match(clean_url):
            if passthrough_service(service) or not service_whitelisted(service):
                return None
            backend_dict = backends.get_backend(service)  # type: ignore[call-overload]
            if isinstance(backend_dict, BackendDict):
                regions = backend_dict[DEFAULT_ACCOUNT_ID]
                backend = regions["us-east-1"] if "us-east-1" in regions else regions["aws"]
            else:
                backend = backend_dict["global"]
            for url, method in backend.urls.items():
                if re.compile(url).match(clean_url):
                    stateless = inspect.ismethod(method) and isinstance(method.__self__, type)
                    return method if stateless else None
            return None
    return None


def _json_requests_built_without_the_test_client() -> None:
    """moto turns each request into a werkzeug Request through werkzeug's test client
    (`Request.from_values`, an EnvironBuilder): about a quarter of a GetItem's time. A DynamoDB
    or Step Functions request is a POST of a body to `/` with no query; for those the environ
    is written here, key for key what EnvironBuilder writes (tests/unit/test_local_backend.py
    compares the two), and any other request goes the way moto sends it."""
    from urllib.parse import urlsplit

    from moto.core import request as moto_request

    cls = moto_request.Request
    original = cls.from_primitives.__func__  # type: ignore[attr-defined]
    if getattr(original, "direct_environ", False):
        return
    source = inspect.getsource(original)
    for line in ("cls.from_values(", "PRESERVED_HEADER_NAMES_ENVIRON_KEY", 'setdefault("CONTENT_LENGTH", "0")'):
        assert line in source, "moto's Request.from_primitives changed: revisit this patch"
    preserved_key = moto_request.PRESERVED_HEADER_NAMES_ENVIRON_KEY
    key_for = moto_request.environ_key_for_header
    preserve = moto_request.should_preserve_original_header_name
    default_ports = {"http": "80", "https": "443"}

    def from_primitives(cls: Any, method: str, url: str, headers: Any, body: Any = None) -> Any:
        parts = urlsplit(url)
        if (
            method != "POST"
            or not isinstance(body, bytes)
            or parts.path != "/"
            or parts.query
            or parts.fragment
            or parts.scheme not in default_ports
            or not parts.netloc
            or ":" in parts.netloc
            or "@" in parts.netloc
            or parts.netloc != parts.netloc.lower()
        ):
            return original(cls, method, url, headers, body)
        header_items = [
            (key, value.decode("utf-8") if isinstance(value, bytes) else value)
            for key, value in headers.items()
            if key.lower() != "transfer-encoding"
        ]
        environ: dict[str, Any] = {
            "REQUEST_METHOD": "POST",
            "SCRIPT_NAME": "",
            "PATH_INFO": "/",
            "QUERY_STRING": "",
            "REQUEST_URI": "/",
            "RAW_URI": "/",
            "SERVER_NAME": parts.netloc,
            "SERVER_PORT": default_ports[parts.scheme],
            "HTTP_HOST": parts.netloc,
            "SERVER_PROTOCOL": "HTTP/1.1",
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": parts.scheme,
            "wsgi.input": io.BytesIO(body),
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": False,
            "wsgi.multiprocess": False,
            "wsgi.run_once": False,
        }
        content_type = None
        combined: dict[str, list[str]] = {}
        for key, value in header_items:
            lowered = key.lower()
            if lowered == "content-type":
                content_type = value if content_type is None else content_type
            elif lowered != "content-length":
                combined.setdefault(f"HTTP_{key.upper().replace('-', '_')}", []).append(value)
        if content_type is not None:
            environ["CONTENT_TYPE"] = content_type
        if body:  # an empty body gets its CONTENT_LENGTH last, from moto's setdefault
            environ["CONTENT_LENGTH"] = str(len(body))
        for key, values in combined.items():
            environ[key] = ", ".join(values)
        request = cls(environ)
        request.environ[preserved_key] = {key_for(key): key for key, _ in header_items if preserve(key)}
        request.environ.setdefault("CONTENT_LENGTH", "0")
        return request

    from_primitives.direct_environ = True  # type: ignore[attr-defined]
    from_primitives.original = original  # type: ignore[attr-defined]
    cls.from_primitives = classmethod(from_primitives)  # type: ignore[assignment]


def _request_ids_drawn_at_once() -> None:
    """Every answer gets a 52-character request id, drawn one `choice` at a time (a tenth of a
    GetItem's time). `choices` draws the same kind of string from moto's same (seedable) random
    source in one call."""
    import string

    from moto.moto_api._internal.moto_random import MotoRandom

    if getattr(MotoRandom.get_random_string, "at_once", False):
        return
    assert "self.choice(pool) for i in range(length)" in inspect.getsource(MotoRandom.get_random_string), (
        "moto's get_random_string changed: revisit this patch"
    )

    def get_random_string(self: Any, length: int = 20, include_digits: bool = True, lower_case: bool = False) -> str:
        pool = string.ascii_letters + string.digits if include_digits else string.ascii_letters
        random_str = "".join(self.choices(pool, k=length))
        return random_str.lower() if lower_case else random_str

    get_random_string.at_once = True  # type: ignore[attr-defined]
    get_random_string.original = MotoRandom.get_random_string  # type: ignore[attr-defined]
    MotoRandom.get_random_string = get_random_string  # type: ignore[method-assign]


def _subclasses(cls: type) -> list[type]:
    import moto.dynamodb.parsing.validators  # noqa: F401 - defines the traversers

    found, todo = [], list(cls.__subclasses__())
    while todo:
        sub = todo.pop()
        found.append(sub)
        todo.extend(sub.__subclasses__())
    return found
