"""The AWS side of the local stack: moto DynamoDB and Step Functions built from template.yaml.

Everything here runs in the functions process (local_stack/functions.py). moto's DynamoDB is
not thread-safe, and requests reach it on many threads (one per runtime connection, the state
machine's executions, the handlers themselves with LOCAL_STACK_RUNTIMES=off), so every request
that reaches moto is serialized by one fair lock, and run by one thread (MotoWorker).
"""

from __future__ import annotations

import collections
import contextlib
import importlib
import inspect
import os
import queue
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from botocore.awsrequest import AWSResponse

from local_stack import aws_faults
from local_stack import template as cfn
from local_stack.lambda_bridge import LambdaBridge

REGION = "us-east-1"
PARTITION = "aws"
ACCOUNT = "123456789012"


class FairLock:
    """A reentrant lock granted in the order it was asked for.

    Every request to moto holds MOTO_LOCK. CPython's locks are not fair: the thread that releases
    one, still holding the GIL, or a thread just arriving, usually takes it again before the
    waiter that was woken. In a hall's refresh burst (a hundred requests waiting) the audio
    route's read waited behind others for 20 s and more, while the Query itself takes
    milliseconds (py-spy: the SendAudio runtime in `get_or_read`, 110 threads at the lock). On
    DynamoDB a read is not held up by writes to other items at all; here it waits its turn, no
    longer than the requests ahead of it.
    """

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._owner: int | None = None
        self._depth = 0
        self._waiters: collections.deque[tuple[int, threading.Lock]] = collections.deque()

    def acquire(self) -> bool:
        me = threading.get_ident()
        with self._mutex:
            if self._owner == me:
                self._depth += 1
                return True
            if self._owner is None:
                self._owner, self._depth = me, 1
                return True
            turn = threading.Lock()
            turn.acquire()
            self._waiters.append((me, turn))
        turn.acquire()  # release() hands the lock over: this thread owns it when it wakes
        return True

    def release(self) -> None:
        with self._mutex:
            if self._owner != threading.get_ident():
                raise RuntimeError("release of a FairLock not held by this thread")
            self._depth -= 1
            if self._depth:
                return
            if self._waiters:
                self._owner, turn = self._waiters.popleft()
                self._depth = 1
                turn.release()
            else:
                self._owner = None

    def held_here(self) -> bool:
        """Whether the calling thread holds the lock."""
        return self._owner == threading.get_ident()

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *_: object) -> None:
        self.release()


MOTO_LOCK = FairLock()


class MotoWorker:
    """One thread that runs every request to moto, one after another, in the order they came.

    Why not each request on its own thread under MOTO_LOCK: the lock was handed from thread to
    thread, and each hand-over waited for the woken thread to get the GIL, in a process with more
    than a thousand threads (the timer's executions, one connection's requests each). In the hall
    of 500 at TIME_SCALE=300 moto held the lock 50 to 70% of each 5 s while 200 requests waited for
    it, and `sendAudio`'s route read waited 20 s and more: the lock stood owned and idle. This
    thread takes the next request as soon as one is done. It holds MOTO_LOCK for a batch at a
    time, so the process's other users of moto (functions.py's own requests) still get their turn.
    A request made while moto's lock is already held here (by this thread, or by a caller that
    took MOTO_LOCK itself) runs at once on its own thread, as it did before.
    """

    BATCH = 64  # requests run under one hold of MOTO_LOCK at most

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._starting = threading.Lock()
        self._waited = 0.0  # real seconds the latest request taken had waited in the queue

    def backlog(self) -> float:
        """How far behind the worker is: the real seconds its latest request waited (0 once the queue is empty)."""
        return self._waited if not self._queue.empty() else 0.0

    def run(self, call: Callable[[], Any]) -> Any:
        """`call()` on the worker thread, after the requests queued before it; its result or its error."""
        if MOTO_LOCK.held_here():
            return call()
        self._start()
        answer: Future[Any] = Future()
        queued = time.monotonic()

        def job() -> None:
            self._waited = time.monotonic() - queued
            try:
                answer.set_result(call())
            except BaseException as exc:  # noqa: BLE001 - raised again on the caller's thread
                answer.set_exception(exc)

        self._queue.put(job)
        return answer.result()

    def _start(self) -> None:
        if self._thread is not None:
            return
        with self._starting:
            if self._thread is None:
                self._thread = threading.Thread(target=self._serve, name="moto", daemon=True)
                self._thread.start()

    def _serve(self) -> None:
        while True:
            job = self._queue.get()
            with MOTO_LOCK:
                job()
                for _ in range(self.BATCH - 1):
                    try:
                        job = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    job()


MOTO_WORKER = MotoWorker()

Handler = Callable[[dict[str, Any], Any], Any]


def _serialize_moto() -> None:
    """Make moto's request entry point run on MOTO_WORKER, under MOTO_LOCK (once per process)."""
    from moto.core.botocore_stubber import BotocoreStubber

    from local_stack import moto_speedups

    moto_speedups.install()  # its table-copy patch relies on every request holding MOTO_LOCK
    _stop_reaches_a_starting_execution()
    _start_executions_on_their_own()
    if getattr(BotocoreStubber.__call__, "_locked", False):
        return
    unlocked = BotocoreStubber.__call__

    def locked(self: Any, event_name: str, request: Any, **kwargs: Any) -> Any:
        # DynamoDB's transaction contention first (outside the lock, so transactions overlap).
        guard = aws_faults.guard(event_name, request)
        if isinstance(guard, AWSResponse):
            return guard
        with guard:
            return MOTO_WORKER.run(lambda: unlocked(self, event_name, request, **kwargs))

    locked._locked = True  # type: ignore[attr-defined]
    BotocoreStubber.__call__ = locked  # type: ignore[method-assign]


def _stop_reaches_a_starting_execution() -> None:
    """A StopExecution right after its StartExecution stops the execution (once per process).

    moto builds an execution's environment, and marks its program running, on the execution's
    own thread. A StopExecution that came first met no environment and answered a 500 (`'NoneType'
    object has no attribute 'set_stop'`), or met one not yet running and was ignored: either way
    the timer of a connection that closed as soon as it opened ran on. On AWS the execution is
    stopped. Here such a stop waits for the program to be running (the thread's first steps, no
    request to moto among them), then stops it, and the execution ends ABORTED.
    """
    import time

    from moto.stepfunctions.parser.backend.execution_worker import ExecutionWorker

    if getattr(ExecutionWorker.stop, "_waits_for_start", False):
        return
    stop = ExecutionWorker.stop

    def stop_once_running(self: Any, stop_date: Any, error: Any, cause: Any) -> None:
        deadline = time.monotonic() + 5
        while (self.env is None or self.env._program_state is None) and time.monotonic() < deadline:
            time.sleep(0.001)
        stop(self, stop_date=stop_date, error=error, cause=cause)

    stop_once_running._waits_for_start = True  # type: ignore[attr-defined]
    ExecutionWorker.stop = stop_once_running  # type: ignore[method-assign]


def _start_executions_on_their_own() -> None:
    """StartExecution answers without waiting for its execution's thread to run (once per process).

    moto starts each execution on a new thread, inside StartExecution, and `Thread.start()` waits
    until that thread has run its first steps. That thread needs the GIL, in a process where
    hundreds of threads want it: in the hall of 500 a StartExecution held the moto thread about
    8 ms for 2 ms of work, and every request behind it waited too. On AWS StartExecution answers
    as soon as the execution is recorded; so here the thread is started from a thread of its own
    (an executor's one worker).
    A StopExecution that arrives first waits for it (`_stop_reaches_a_starting_execution`).
    """
    from moto.stepfunctions.parser.backend.execution_worker import ExecutionWorker

    if getattr(ExecutionWorker.start, "_on_its_own", False):
        return
    assert "execution_logic_thread.start()" in inspect.getsource(ExecutionWorker.start), (
        "moto starts executions differently now: revisit this patch"
    )
    starter = ThreadPoolExecutor(max_workers=1, thread_name_prefix="execution-starter")

    def start(self: Any) -> None:
        starter.submit(threading.Thread(target=self._execution_logic, daemon=True).start)

    start._on_its_own = True  # type: ignore[attr-defined]
    ExecutionWorker.start = start  # type: ignore[method-assign]


def _scale_waits(time_scale: float | None, clock: Any = None) -> None:
    """Make moto's Wait states wait 1/time_scale of their seconds (Retry intervals are not scaled).

    With the stack's shared `clock` (emulated_clock.SharedClock) a Wait lasts its seconds on that
    clock, however its pace changes meanwhile. None puts moto's own waits back (a backend stopped
    in a process that goes on, as in the tests)."""
    from moto.stepfunctions.parser.asl.component.state.wait.wait_function.wait_function import WaitFunction

    current = WaitFunction._wait_interval
    original = getattr(current, "original", current)
    if time_scale is None:
        WaitFunction._wait_interval = original  # type: ignore[method-assign]
        return

    def _wait_interval(self: Any, env: Any, wait_seconds: int) -> None:
        if wait_seconds <= 0:
            return
        if clock is None:
            env.program_state_event.wait(wait_seconds / time_scale)
        else:  # an execution stopped meanwhile sets the event: the wait ends there, as moto's does
            clock.sleep_until(clock.now() + wait_seconds, wait=env.program_state_event.wait)

    _wait_interval.original = original  # type: ignore[attr-defined]
    WaitFunction._wait_interval = _wait_interval  # type: ignore[method-assign]


def _reuse_task_clients(enable: bool = True) -> None:
    """One boto3 Lambda client for all of moto's Task states, not a new one per invocation.

    moto's Step Functions engine builds a fresh boto3 client for every `lambda:invoke` Task
    (loading the service model each time, about 0.1 s of CPU): with a hall's timers firing,
    that alone took most of the emulator's one core and starved every connection. Lambda's
    service does nothing of the kind, so the emulator should not either.
    """
    from moto.stepfunctions.parser.asl.component.state.exec.state_task import lambda_eval_utils

    current = lambda_eval_utils.boto_client_for
    original = getattr(current, "original", current)
    if not enable:
        # A cached client keeps the event hooks it was built with: a later LambdaBridge (another
        # backend in the same process, as in the tests) must get fresh clients again.
        lambda_eval_utils.boto_client_for = original  # type: ignore[assignment]
        return
    clients: dict[tuple[str, str], Any] = {}
    lock = threading.Lock()

    def reused(region: str, service: str, state_credentials: Any = None) -> Any:
        with lock:
            if (region, service) not in clients:
                clients[(region, service)] = original(region, service)
            return clients[(region, service)]

    reused.original = original  # type: ignore[attr-defined]
    lambda_eval_utils.boto_client_for = reused  # type: ignore[assignment]


def resolve_handler(spec: str) -> Handler:
    """Import 'package.module.function' and return the function."""
    module_name, _, attr = spec.rpartition(".")
    return getattr(importlib.import_module(module_name), attr)


def _lazy(spec: str) -> Handler:
    """A handler imported on first call, after the emulator has set the functions' environment."""

    def call(event: dict[str, Any], context: Any) -> Any:
        return resolve_handler(spec)(event, context)

    return call


class AwsBackend:
    """moto, the tables and the timer state machine, with Lambda tasks bridged to the real handlers."""

    def __init__(
        self,
        template_path: Path,
        *,
        time_scale: float = 1.0,
        stack_name: str = "local",
        parameters: dict[str, str] | None = None,
    ) -> None:
        self.template_path = template_path
        self.parameters = dict(parameters or {})
        self.template = cfn.load(template_path)
        unknown = set(self.parameters) - set(self.template.get("Parameters", {}))
        if unknown:
            raise ValueError(f"unknown template parameters: {', '.join(sorted(unknown))}")
        self.time_scale = time_scale
        self.stack_name = stack_name
        code_uri = self.template.get("Globals", {}).get("Function", {}).get("CodeUri", "src/")
        self.code_dir = code_dir = str((template_path.parent / code_uri).resolve())
        if code_dir not in sys.path:
            sys.path.insert(0, code_dir)
        self.table_names = {
            logical_id: f"{stack_name}-{logical_id}"
            for logical_id in cfn.resources_of(self.template, "AWS::DynamoDB::Table")
        }
        self.functions = {
            logical_id: props["Handler"]
            for logical_id, props in cfn.resources_of(self.template, "AWS::Serverless::Function").items()
        }
        self.state_machine_arns: dict[str, str] = {}
        # The stack's shared clock (emulated_clock), when it runs in a local stack's functions
        # process: the timer's Wait states wait on it. None: they wait 1/time_scale real seconds.
        self.clock: Any = None
        self._mock: Any = None
        self._bridge: LambdaBridge | None = None

    def key_attributes(self) -> dict[str, list[str]]:
        """Table name -> its key attribute names, from the template."""
        tables = cfn.resources_of(self.template, "AWS::DynamoDB::Table")
        return {self.table_names[t]: [k["AttributeName"] for k in p["KeySchema"]] for t, p in tables.items()}

    def function_arn(self, logical_id: str) -> str:
        return f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{self.stack_name}-{logical_id}"

    def start(self) -> None:
        """Start moto and create everything the template declares."""
        import boto3
        from moto import mock_aws

        os.environ.setdefault("AWS_ACCESS_KEY_ID", "local")
        os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "local")
        os.environ["AWS_DEFAULT_REGION"] = REGION
        _serialize_moto()
        _scale_waits(self.time_scale, self.clock)
        _reuse_task_clients()
        if aws_faults.enabled_by_environment():
            # A transaction's 20 ms in flight is a duration like any other: at TIME_SCALE=300 the load
            # per real second is 300 times AWS's (a hall's refreshes spread over 120 s arrive within
            # 0.4 s), so the window shrinks with it and conflicts stay as likely as on AWS.
            window = aws_faults.TRANSACTION_SECONDS / self.time_scale
            aws_faults.install(aws_faults.DynamoContention(self.key_attributes(), transaction_seconds=window))
            aws_faults.install_throttling(aws_faults.Throttling(aws_faults.fault_rate_from_environment()))
            if aws_faults.concurrency_by_environment():
                limits = self.reserved_concurrency()
                aws_faults.install_concurrency(aws_faults.LambdaConcurrency(limits, self.time_scale))
        self._mock = mock_aws(config={"stepfunctions": {"execute_state_machine": True}})
        self._mock.start()
        ddb = boto3.client("dynamodb", region_name=REGION)
        cfn.create_tables(ddb, self.template, self.table_names)
        # No lock around invocations: moto's requests are serialized by MOTO_LOCK already, and
        # one lock for every timer invocation made notices queue behind each other (late
        # enough, with a whole hall's timers due together, to set off clients' fallback refreshes).
        self._bridge = LambdaBridge(
            {self.function_arn(f): _lazy(h) for f, h in self.functions.items()},
            lock=contextlib.nullcontext(),
            names={self.function_arn(f): f for f in self.functions},
        ).install()
        sfn = boto3.client("stepfunctions", region_name=REGION)
        for logical_id, props in cfn.resources_of(self.template, "AWS::Serverless::StateMachine").items():
            substitutions = {
                key: self._resolve_arn(value) for key, value in props.get("DefinitionSubstitutions", {}).items()
            }
            definition = cfn.state_machine_definition(
                self.template, logical_id, substitutions, base=self.template_path.parent
            )
            created = sfn.create_state_machine(
                name=self._state_machine_name(logical_id, props),
                definition=definition,
                roleArn=f"arn:aws:iam::{ACCOUNT}:role/{logical_id}Role",
                type=props.get("Type", "STANDARD"),
            )
            self.state_machine_arns[logical_id] = created["stateMachineArn"]
            assert created["stateMachineArn"] == self.predicted_state_machine_arns()[logical_id]

    def route_invocations(self, handlers: dict[str, Handler]) -> None:
        """The timer's lambda:invoke tasks call these (logical id -> handler) instead of the imported handlers."""
        assert self._bridge is not None
        for function, handler in handlers.items():
            self._bridge.functions[self.function_arn(function)] = handler

    def _state_machine_name(self, logical_id: str, props: dict[str, Any]) -> str:
        return self.resolve(props["Name"], {}) if "Name" in props else f"{self.stack_name}-{logical_id}"

    def predicted_state_machine_arns(self) -> dict[str, str]:
        """The ARNs start() gives the template's state machines (another process can know them)."""
        prefix = f"arn:{PARTITION}:states:{REGION}:{ACCOUNT}:stateMachine:"
        return {
            logical_id: prefix + self._state_machine_name(logical_id, props)
            for logical_id, props in cfn.resources_of(self.template, "AWS::Serverless::StateMachine").items()
        }

    def _resolve_arn(self, value: Any) -> str:
        if value == {"Ref": "AWS::Partition"}:
            return PARTITION
        target = cfn.logical_id_of(value)
        if target in self.functions:
            return self.function_arn(target)
        raise ValueError(f"cannot resolve DefinitionSubstitution {value!r} locally")

    def stop(self) -> None:
        _reuse_task_clients(enable=False)
        _scale_waits(None)
        aws_faults.install(None)
        aws_faults.install_throttling(None)
        aws_faults.install_concurrency(None)
        if self._bridge:
            self._bridge.uninstall()
        if self._mock:
            self._mock.stop()

    def condition(self, name: str) -> bool:
        """One of the template's Conditions, with the parameters this stack was given."""
        return self._holds(self.template.get("Conditions", {})[name])

    def _holds(self, expression: dict[str, Any]) -> bool:
        ((function, arguments),) = expression.items()
        if function == "Condition":
            return self.condition(arguments)
        if function == "Fn::Equals":
            left, right = (self.resolve(argument, {}) for argument in arguments)
            return left == right
        if function == "Fn::Not":
            return not self._holds(arguments[0])
        if function == "Fn::And":
            return all(self._holds(argument) for argument in arguments)
        if function == "Fn::Or":
            return any(self._holds(argument) for argument in arguments)
        raise ValueError(f"cannot evaluate condition {expression!r} locally")

    def reserved_concurrency(self) -> dict[str, int]:
        """Each function's ReservedConcurrentExecutions as `sam deploy` would set it with these
        parameters (an `!If` on a condition resolved; a function without one is left out)."""
        found: dict[str, int] = {}
        for logical_id, props in cfn.resources_of(self.template, "AWS::Serverless::Function").items():
            value = props.get("ReservedConcurrentExecutions")
            if isinstance(value, dict) and "Fn::If" in value:
                name, when_true, when_false = value["Fn::If"]
                value = when_true if self.condition(name) else when_false
            if value is None or value == {"Ref": "AWS::NoValue"}:
                continue
            found[logical_id] = int(self.resolve(value, {}))
        return found

    def resolve(self, value: Any, extra: dict[str, str]) -> str:
        """A template value (a literal, !Ref, !Sub or !GetAtt X.Arn) as a string, for environment variables."""
        if isinstance(value, (str, int, float)):
            return str(value)
        if "Ref" in value:
            return self._ref(value["Ref"], extra)
        if "Fn::Sub" in value:
            sub = value["Fn::Sub"]
            text = sub if isinstance(sub, str) else sub[0]
            out, rest = "", text
            while "${" in rest:
                before, _, after = rest.partition("${")
                name, _, rest = after.partition("}")
                out += before + self._ref(name, extra)
            return out + rest
        if "Fn::GetAtt" in value:
            return self._ref(".".join(value["Fn::GetAtt"]), extra)
        raise ValueError(f"cannot resolve {value!r} locally")

    def _ref(self, name: str, extra: dict[str, str]) -> str:
        if name in extra:
            return extra[name]
        if name in self.parameters:
            return self.parameters[name]
        parameters = self.template.get("Parameters", {})
        if name in parameters:
            return str(parameters[name].get("Default", ""))
        if name in self.table_names:
            return self.table_names[name]
        if name in self.state_machine_arns:
            return self.state_machine_arns[name]
        if name == "AWS::Region":
            return REGION
        if name == "AWS::Partition":
            return PARTITION
        if name == "AWS::StackName":
            return self.stack_name
        if name == "AWS::AccountId":
            return ACCOUNT
        raise ValueError(f"cannot resolve {name} locally")

    def _resolved(self, variables: dict[str, Any], extra: dict[str, str]) -> dict[str, str]:
        env: dict[str, str] = {}
        for key, value in variables.items():
            if key in extra:
                env[key] = extra[key]
                continue
            try:
                env[key] = self.resolve(value, extra)
            except ValueError:
                continue  # e.g. an !If on the Cognito pool: the caller supplies it in `extra`
        return env

    def _variables(self, function: str | None) -> dict[str, Any]:
        """The template's environment variables of `function` (Globals first), or of every function."""
        functions = cfn.resources_of(self.template, "AWS::Serverless::Function")
        chosen = functions.values() if function is None else [functions[function]]
        variables: dict[str, Any] = {}
        for block in [self.template.get("Globals", {}).get("Function", {}), *chosen]:
            variables.update(block.get("Environment", {}).get("Variables", {}))
        return variables

    def variable_names(self) -> set[str]:
        """Every environment variable the template declares, for any function (Globals included)."""
        return set(self._variables(None))

    def function_environment(self, function: str, extra: dict[str, str]) -> dict[str, str]:
        """One function's environment as the template declares it, resolved (`extra` wins)."""
        return self._resolved(self._variables(function), extra)

    def environment(self, extra: dict[str, str]) -> dict[str, str]:
        """The union of every function's environment (they share one process here), resolved."""
        env = self._resolved(self._variables(None), extra)
        env.update({k: v for k, v in extra.items() if k.isupper()})
        return env
