"""`make invoke` (and `sam local invoke --env-vars .local/env.json`) against a seeded local stack.

Every file in events/ is run through the `make invoke` path and checked against the README's
table of expected results, so the table, the seed and the events cannot drift apart.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from local_stack import invoke
from local_stack import template as cfn
from local_stack.process import ROOT, LocalStackProcess

pytestmark = pytest.mark.integration

ROW = re.compile(r"^\| `(events/[a-z_]+\.json)` \| (\w+) \| (.+?) \|$")


def readme_table() -> dict[str, tuple[str, str]]:
    """event path -> (function, expected), from the README's "Trying one function" table."""
    rows = {}
    for line in (ROOT / "README.md").read_text().splitlines():
        found = ROW.match(line)
        if found:
            rows[found.group(1)] = (found.group(2), found.group(3))
    return rows


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalStackProcess, Path]]:
    env_file = tmp_path_factory.mktemp("local") / "env.json"
    running = LocalStackProcess(seed=True, env_file=env_file)
    yield running, env_file
    running.stop()


def check(expected: str, result: dict[str, Any]) -> None:
    words = expected.split()
    if words[0] == "raises":
        assert result.get("errorMessage") == words[1], result
    elif words[0] == "Allow":
        assert result["policyDocument"]["Statement"][0]["Effect"] == "Allow", result
        assert result["principalId"] == words[1], result
    elif words[0] in ("delivered", "ended"):
        assert result[words[0]] is (words[1] == "true"), result
    else:
        assert result["statusCode"] == int(words[0]), result
        if len(words) > 1:
            body = json.loads(result["body"])
            assert words[1] in (body.get("type"), body.get("code")), body


def test_invoke_readme_table_covers_every_event() -> None:
    table = readme_table()
    assert set(table) == {f"events/{p.name}" for p in (ROOT / "events").glob("*.json")}
    functions = set(cfn.resources_of(cfn.load(), "AWS::Serverless::Function"))
    assert {function for function, _ in table.values()} <= functions


@pytest.mark.parametrize("event", sorted(readme_table()))
def test_invoke_every_event_gives_the_readme_result(seeded: tuple[LocalStackProcess, Path], event: str) -> None:
    stack, env_file = seeded
    function, expected = readme_table()[event]
    stack.local_api("/_local/seed", method="POST")
    done = invoke.invoke(function, ROOT / event, env_file)
    assert done.returncode == 0, done.stderr
    assert "REPORT RequestId:" in done.stderr
    assert "Init Duration:" in done.stderr
    check(expected, json.loads(done.stdout))


def test_invoke_grace_expired_after_the_speaker_dropped_ends_the_session(
    seeded: tuple[LocalStackProcess, Path],
) -> None:
    stack, env_file = seeded
    stack.local_api("/_local/seed", method="POST")
    dropped = invoke.invoke("DisconnectFunction", ROOT / "events/disconnect.json", env_file)
    assert json.loads(dropped.stdout) == {"statusCode": 200}
    done = invoke.invoke("NotifierFunction", ROOT / "events/notifier_speaker_grace_expired.json", env_file)
    assert json.loads(done.stdout) == {"delivered": True, "ended": True}
    stack.local_api("/_local/seed", method="POST")


def test_invoke_env_file_holds_every_function_with_endpoints_and_template_environment(
    seeded: tuple[LocalStackProcess, Path],
) -> None:
    stack, env_file = seeded
    environments = json.loads(env_file.read_text())
    template = cfn.load()
    functions = cfn.resources_of(template, "AWS::Serverless::Function")
    assert set(environments) == set(functions)
    port = stack.url.split(":")[2].split("/")[0]
    globals_ = template["Globals"]["Function"]["Environment"]["Variables"]
    for name, props in functions.items():
        env = environments[name]
        declared = {**globals_, **props.get("Environment", {}).get("Variables", {})}
        # Only what the template declares: sam local invoke ignores anything else.
        assert set(env) <= set(declared), (name, set(env) - set(declared))
        # Reachable from a container: Docker's name for the host, the stack's port.
        assert env["AWS_ENDPOINT_URL"] == f"http://host.docker.internal:{port}", name
        assert env["MANAGEMENT_ENDPOINT"] == f"http://host.docker.internal:{port}/live", name
        assert env["SESSIONS_TABLE"] == "local-SessionsTable", name
        assert env["SPEAKER_GRACE_SECONDS"] == str(template["Parameters"]["SpeakerGraceSeconds"]["Default"])
    authorizer = environments["AuthorizerFunction"]
    assert authorizer["JWKS_URL"] == f"http://host.docker.internal:{port}/.well-known/jwks.json"
    assert "TIMER_STATE_MACHINE_ARN" in environments["ConnectFunction"]


def test_invoke_without_a_running_stack_says_so(tmp_path: Path) -> None:
    with pytest.raises(invoke.NoLocalStack, match="make local"):
        invoke.invoke("HeartbeatFunction", ROOT / "events/heartbeat.json", tmp_path / "env.json")
    stale = tmp_path / "stale.json"
    stale.write_text(json.dumps({"HeartbeatFunction": {"AWS_ENDPOINT_URL": "http://host.docker.internal:9"}}))
    with pytest.raises(invoke.NoLocalStack, match="no local stack answers"):
        invoke.invoke("HeartbeatFunction", ROOT / "events/heartbeat.json", stale)
