"""`make invoke FN=... EVENT=...`: what `sam local invoke` does, without Docker, against a running `make local`.

It reads the function's handler from template.yaml and its environment from `.local/env.json`
(the file `make local` writes for `sam local invoke --env-vars`), then runs the handler once in
a fresh Python process: a cold start, like a new container. As `sam local invoke` does, it prints
the response JSON on stdout, and the function's logs and a REPORT line (durations) on stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

from local_stack import template as cfn
from local_stack.server import DOCKER_HOST

ENV_FILE = cfn.ROOT / ".local" / "env.json"
# A placeholder some events carry (the authorizer's token), replaced by a fresh local token.
TOKEN_PLACEHOLDER = "REPLACE_WITH_A_TOKEN_FROM_make_token"  # noqa: S105 - a placeholder, not a secret
TOKEN_SUBJECT = "speaker-sub-1"  # noqa: S105 - the seeded speaker's subject

# Runs inside the fresh process: import (the cold start), then one invocation, timed.
RUNNER = r"""
import importlib, json, os, sys, time, types, uuid
# The function's own output (logs, metrics) goes to stderr, as sam local invoke shows it; only
# the response goes to stdout.
response_out = os.fdopen(os.dup(1), "w")
os.dup2(2, 1)
spec, event_path, memory = sys.argv[1], sys.argv[2], int(sys.argv[3])
event = json.loads(open(event_path).read())
request_id = str(uuid.uuid4())
sys.stderr.write(f"START RequestId: {request_id} Version: $LATEST\n")
started = time.perf_counter()
module_name, _, attr = spec.rpartition(".")
handler = getattr(importlib.import_module(module_name), attr)
init_ms = (time.perf_counter() - started) * 1000
deadline = time.monotonic() + 900
context = types.SimpleNamespace(
    aws_request_id=request_id, function_name=module_name, function_version="$LATEST", memory_limit_in_mb=memory,
    invoked_function_arn="arn:aws:lambda:us-east-1:123456789012:function:local", log_group_name="local",
    log_stream_name="local", get_remaining_time_in_millis=lambda: int((deadline - time.monotonic()) * 1000),
)
started = time.perf_counter()
try:
    result = handler(event, context)
except Exception as exc:
    result = {"errorMessage": str(exc), "errorType": type(exc).__name__}
duration_ms = (time.perf_counter() - started) * 1000
sys.stdout.flush()
sys.stderr.flush()
sys.stderr.write(f"END RequestId: {request_id}\n")
sys.stderr.write(
    f"REPORT RequestId: {request_id}\tInit Duration: {init_ms:.2f} ms\tDuration: {duration_ms:.2f} ms\t"
    f"Memory Size: {memory} MB\n"
)
response_out.write(json.dumps(result) + "\n")
response_out.flush()
"""


class NoLocalStack(RuntimeError):
    """No `make local` is answering where `.local/env.json` says."""


def host_side(environment: dict[str, str]) -> dict[str, str]:
    """env.json is written for containers (host.docker.internal); this process runs on the host itself."""
    return {key: value.replace(f"//{DOCKER_HOST}:", "//127.0.0.1:") for key, value in environment.items()}


def load_environment(function: str, env_file: Path = ENV_FILE) -> dict[str, str]:
    """The function's environment from env.json, for this host; NoLocalStack when there is none or it is down."""
    if not env_file.exists():
        raise NoLocalStack(f"{env_file} does not exist: start the local stack first with `make local`")
    environments = json.loads(env_file.read_text())
    if function not in environments:
        raise ValueError(f"no function {function} in {env_file}: one of {', '.join(sorted(environments))}")
    environment = host_side(environments[function])
    endpoint = environment.get("AWS_ENDPOINT_URL", "")
    try:
        urllib.request.urlopen(f"{endpoint}/.well-known/jwks.json", timeout=2).close()  # noqa: S310 - our stack
    except (urllib.error.URLError, OSError) as exc:
        raise NoLocalStack(
            f"no local stack answers at {endpoint} (from {env_file}): start it with `make local`"
        ) from exc
    return environment


def prepared_event(path: Path) -> str:
    """The event's text, with a fresh local token where it carries the placeholder."""
    text = path.read_text()
    if TOKEN_PLACEHOLDER in text:
        from local_stack import tokens

        text = text.replace(TOKEN_PLACEHOLDER, tokens.issue(TOKEN_SUBJECT))
    return text


def invoke(function: str, event_path: Path, env_file: Path = ENV_FILE) -> subprocess.CompletedProcess[str]:
    """Run `function`'s handler once on `event_path` in a fresh process; stdout is the response JSON."""
    template = cfn.load()
    functions = cfn.resources_of(template, "AWS::Serverless::Function")
    if function not in functions:
        raise ValueError(f"no function {function} in template.yaml: one of {', '.join(sorted(functions))}")
    globals_ = template.get("Globals", {}).get("Function", {})
    memory = int(functions[function].get("MemorySize", globals_.get("MemorySize", 128)))
    code_dir = cfn.ROOT / globals_.get("CodeUri", "src/")
    environment = {
        # What sam local invoke gives every container besides the template's variables.
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_LAMBDA_FUNCTION_NAME": function,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(memory),
        "AWS_SAM_LOCAL": "true",
        "PYTHONPATH": str(code_dir),
        **load_environment(function, env_file),
    }
    event_file = env_file.parent / "invoke-event.json"
    event_file.write_text(prepared_event(event_path))
    return subprocess.run(  # noqa: S603 - our own interpreter and runner
        [sys.executable, "-c", RUNNER, functions[function]["Handler"], str(event_file), str(memory)],
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("function", help="the function's logical id in template.yaml, e.g. JoinSessionFunction")
    parser.add_argument("event", type=Path, help="an event file, e.g. events/join_session.json")
    parser.add_argument("--env-file", type=Path, default=ENV_FILE)
    args = parser.parse_args()
    try:
        done = invoke(args.function, args.event, args.env_file)
    except (NoLocalStack, ValueError) as exc:
        print(f"make invoke: {exc}", file=sys.stderr)
        sys.exit(2)
    sys.stderr.write(done.stderr)
    sys.stdout.write(done.stdout)
    sys.exit(0 if done.returncode == 0 else 1)


if __name__ == "__main__":
    main()
