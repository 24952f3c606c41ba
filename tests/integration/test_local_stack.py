"""Real WebSocket clients against `python -m local_stack` (what `make local` serves)."""

from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
import websockets
from botocore.exceptions import ClientError

from broadcast_client import Listener
from local_stack import tokens
from local_stack.process import NO_IP_LIMITS, ROOT, LocalStackProcess
from tests.integration.wire import Wire

pytestmark = pytest.mark.integration


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def speaker_and_session(url: str, sub: str = "alice", heartbeat: float | None = None) -> tuple[Wire, str]:
    speaker = await Wire.open(url, tokens.issue(sub), heartbeat=heartbeat)
    created = await speaker.call({"action": "createSession", "sourceLanguage": "en"}, "sessionCreated")
    assert created["type"] == "sessionCreated", created
    return speaker, created["sessionId"]


def test_local_stack_create_join_heartbeat_status(stack: LocalStackProcess) -> None:
    async def scenario() -> None:
        speaker, session_id = await speaker_and_session(stack.url)
        listener = await Wire.open(stack.url)
        joined = await listener.call(
            {"action": "joinSession", "sessionId": session_id, "targetLanguage": "es"}, "sessionJoined"
        )
        assert (joined["sessionId"], joined["sourceLanguage"], joined["listenerCount"]) == (session_id, "en", 1)
        await listener.send({"action": "heartbeat"})
        await asyncio.sleep(0.3)
        assert any(m["type"] == "heartbeatAck" for m in listener.seen)
        status = await speaker.call({"action": "getSessionStatus"}, "sessionStatus")
        assert (status["isActive"], status["listenerCount"], status["languages"]) == (True, 1, {"es": 1})
        await listener.close()
        await speaker.close()

    run(scenario())


def test_local_stack_unknown_action_and_garbage_get_invalid_action(stack: LocalStackProcess) -> None:
    async def scenario() -> None:
        wire = await Wire.open(stack.url)
        for frame in ('{"action":"danceSession"}', "not json", "[1]"):
            reply = await wire.call(frame)
            assert (reply["type"], reply["code"]) == ("error", "INVALID_ACTION"), frame
        await wire.close()

    run(scenario())


def test_local_stack_anonymous_cannot_create(stack: LocalStackProcess) -> None:
    async def scenario() -> None:
        wire = await Wire.open(stack.url)
        reply = await wire.call({"action": "createSession", "sourceLanguage": "en"})
        assert (reply["code"], reply["status"]) == ("UNAUTHORIZED", 401)
        await wire.close()

    run(scenario())


@pytest.mark.parametrize(
    "token",
    [
        "garbage",
        "",
        tokens.issue("alice", lifetime=-3600),
        tokens.issue("alice", iss="https://someone.else/issuer"),
        tokens.issue("alice", token_use="access", client_id="another-client"),
    ],
    ids=["garbage", "empty", "expired", "wrong-issuer", "wrong-client"],
)
def test_local_stack_invalid_token_refused_at_handshake(stack: LocalStackProcess, token: str) -> None:
    async def scenario() -> None:
        with pytest.raises(websockets.InvalidStatus) as refused:
            await websockets.connect(f"{stack.url}?token={token}")
        assert refused.value.response.status_code in (401, 403)

    run(scenario())


def test_local_stack_wrong_stage_refused(stack: LocalStackProcess) -> None:
    async def scenario() -> None:
        with pytest.raises(websockets.InvalidStatus) as refused:
            await websockets.connect(stack.url.rsplit("/", 1)[0] + "/nostage")
        assert refused.value.response.status_code == 403

    run(scenario())


def test_local_stack_message_over_128kb_closes_1009(stack: LocalStackProcess) -> None:
    async def scenario() -> None:
        wire = await Wire.open(stack.url)
        await wire.send('{"action":"heartbeat","pad":"' + "x" * (129 * 1024) + '"}')
        code, _ = await wire.closed(timeout=5)
        assert code == 1009

    run(scenario())


def test_local_stack_disconnect_delivered_on_close(stack: LocalStackProcess) -> None:
    async def scenario() -> None:
        speaker, session_id = await speaker_and_session(stack.url)
        listener = await Wire.open(stack.url)
        await listener.call({"action": "joinSession", "sessionId": session_id, "targetLanguage": "fr"}, "sessionJoined")
        await listener.close()
        for _ in range(50):
            status = await speaker.call({"action": "getSessionStatus"}, "sessionStatus")
            if status["listenerCount"] == 0:
                break
            await asyncio.sleep(0.1)
        assert status["listenerCount"] == 0
        await speaker.close()

    run(scenario())
    assert any("disconnectStatus" in line or "$disconnect" in line for line in stack.lines)


def test_local_stack_speaker_deliberate_close_ends_session_at_once(stack: LocalStackProcess) -> None:
    async def scenario() -> None:
        speaker, session_id = await speaker_and_session(stack.url)
        listener = await Wire.open(stack.url)
        await listener.call({"action": "joinSession", "sessionId": session_id, "targetLanguage": "fr"}, "sessionJoined")
        await speaker.close()  # close code 1000: the speaker meant it
        ended = await listener.next("sessionEnded", timeout=5)
        assert (ended["sessionId"], ended["reason"]) == (session_id, "speakerDisconnected")
        await listener.close()

    run(scenario())


def test_local_stack_speaker_dropped_connection_survives_within_grace(stack: LocalStackProcess) -> None:
    # Grace is 30 s at time scale 1; a speaker whose connection drops and who comes back keeps the session.
    async def scenario() -> None:
        speaker, session_id = await speaker_and_session(stack.url)
        listener = await Wire.open(stack.url)
        await listener.call({"action": "joinSession", "sessionId": session_id, "targetLanguage": "fr"}, "sessionJoined")
        speaker.ws.transport.abort()  # no close frame: the server sees 1006, a dropped connection
        await asyncio.sleep(0.5)
        replacement = await Wire.open(stack.url, tokens.issue("alice"))
        done = await replacement.call(
            {"action": "refreshConnection", "sessionId": session_id, "role": "speaker"}, "connectionRefreshComplete"
        )
        assert done["type"] == "connectionRefreshComplete"
        status = await listener.call({"action": "getSessionStatus"}, "sessionStatus")
        assert status["isActive"] is True
        await listener.close()
        await replacement.close()

    run(scenario())


def test_local_stack_management_api_post_get_delete_and_410(stack: LocalStackProcess) -> None:
    client = stack.management_client()

    async def scenario() -> None:
        wire = await Wire.open(stack.url)
        status = await wire.call({"action": "joinSession", "sessionId": "no-such-000", "targetLanguage": "es"})
        assert status["code"] == "SESSION_NOT_FOUND"
        # Learn our connection id from the emulator's own log line for this connection.
        await asyncio.sleep(0.2)
        connection_id = stack.log_lines("joinSession")[-1].split()[2]
        await asyncio.to_thread(client.post_to_connection, ConnectionId=connection_id, Data=b'{"type":"hello"}')
        assert (await wire.next("hello"))["type"] == "hello"
        described = await asyncio.to_thread(client.get_connection, ConnectionId=connection_id)
        assert described["Identity"]["SourceIp"] == "127.0.0.1"
        await asyncio.to_thread(client.delete_connection, ConnectionId=connection_id)
        code, _ = await wire.closed(timeout=5)
        assert code == 1000
        with pytest.raises(ClientError) as gone:
            await asyncio.to_thread(client.post_to_connection, ConnectionId=connection_id, Data=b"{}")
        assert gone.value.response["Error"]["Code"] == "GoneException"

    run(scenario())


def test_local_stack_refresh_both_roles_under_scaled_timers(fast_stack: LocalStackProcess) -> None:
    async def scenario() -> None:
        started = time.monotonic()
        speaker, session_id = await speaker_and_session(fast_stack.url, heartbeat=0.2)
        listener = await Wire.open(fast_stack.url, heartbeat=0.2)
        await listener.call({"action": "joinSession", "sessionId": session_id, "targetLanguage": "it"}, "sessionJoined")

        notice = await listener.next("connectionRefreshRequired", timeout=15)
        assert 8 <= time.monotonic() - started <= 12
        assert (notice["sessionId"], notice["role"], notice["targetLanguage"]) == (session_id, "listener", "it")
        new_listener = await Wire.open(fast_stack.url, heartbeat=0.2)
        done = await new_listener.call(
            {"action": "refreshConnection", "sessionId": session_id, "role": "listener", "targetLanguage": "it"},
            "connectionRefreshComplete",
        )
        assert (done["role"], done["sourceLanguage"], done["targetLanguage"]) == ("listener", "en", "it")
        await listener.close()

        notice = await speaker.next("connectionRefreshRequired", timeout=5)
        assert notice["role"] == "speaker"
        new_speaker = await Wire.open(fast_stack.url, tokens.issue("alice"), heartbeat=0.2)
        done = await new_speaker.call(
            {"action": "refreshConnection", "sessionId": session_id, "role": "speaker"}, "connectionRefreshComplete"
        )
        assert done["role"] == "speaker"
        await speaker.close()
        await asyncio.sleep(0.5)
        status = await new_speaker.call({"action": "getSessionStatus"}, "sessionStatus")
        assert (status["isActive"], status["listenerCount"]) == (True, 1)
        await new_listener.close()
        await new_speaker.close()

    run(scenario())


def test_local_stack_scaled_refresh_warning_and_hard_cut(fast_stack: LocalStackProcess) -> None:
    async def scenario() -> None:
        wire = await Wire.open(fast_stack.url, heartbeat=0.2)
        started = time.monotonic()
        required = await wire.next("connectionRefreshRequired", timeout=15)
        at_required = time.monotonic() - started
        warning = await wire.next("connectionWarning", timeout=5)
        at_warning = time.monotonic() - started
        code, _ = await wire.closed(timeout=5)
        at_cut = time.monotonic() - started
        assert 9.0 <= at_required <= 11.0, at_required  # 100 min (minus up to 2 min of jitter) / 600
        assert 10.0 <= at_warning <= 11.5, at_warning  # 105 min / 600
        assert 11.5 <= at_cut <= 13.0, at_cut  # 120 min / 600
        assert code == 1001
        assert required["refreshBy"] > required["timestamp"]
        assert 0 < warning["remainingSeconds"] <= 900

    run(scenario())


def test_local_stack_messages_to_a_connection_keep_it_from_idling(fast_stack: LocalStackProcess) -> None:
    # API Gateway's idle timeout counts messages either way: a listener that only hears audio
    # is not idle (so the clients send heartbeats only after a quiet spell). 10 scaled minutes = 1 s.
    async def scenario() -> None:
        speaker, session_id = await speaker_and_session(fast_stack.url, heartbeat=0.2)
        listener = await Wire.open(fast_stack.url)  # sends nothing after joining
        await listener.call({"action": "joinSession", "sessionId": session_id, "targetLanguage": "es"}, "sessionJoined")
        for seq in range(12):  # 3 s of frames, three idle timeouts
            await speaker.send({"action": "sendAudio", "seq": seq, "audio": "AAAA"})
            await asyncio.sleep(0.25)
        assert listener.ws.close_code is None, listener.seen[-3:]
        assert sum(1 for m in listener.seen if m.get("type") == "audio") >= 10
        # WHEN the speaker falls silent, the listener is cut within one idle timeout
        code, waited = await listener.closed(timeout=5)
        assert code == 1001
        assert waited <= 3
        await speaker.close()

    run(scenario())


def test_local_stack_idle_connection_cut(fast_stack: LocalStackProcess) -> None:
    async def scenario() -> None:
        wire = await Wire.open(fast_stack.url)  # no heartbeats: idle after 10 scaled minutes = 1 s
        code, waited = await wire.closed(timeout=5)
        assert code == 1001
        assert 0.8 <= waited <= 3

    run(scenario())


def test_local_stack_route_removed_from_template_falls_to_default(tmp_path: Path) -> None:
    # GIVEN a copy of template.yaml without the heartbeat route (its Route, Integration,
    # Permission and RouteResponse, and the Deployment's dependencies on them)
    removed = {f"Heartbeat{suffix}" for suffix in ("Route", "Integration", "Permission", "RouteResponse")}
    kept: list[str] = []
    skipping = False
    for line in (ROOT / "template.yaml").read_text().splitlines():
        if line.startswith("  ") and not line.startswith("   ") and line.strip().endswith(":"):
            skipping = line.strip()[:-1] in removed
        if skipping or line.strip() in {f"- {name}" for name in removed}:
            continue
        kept.append(line)
    copy = tmp_path / "template.yaml"
    copy.write_text("\n".join(kept) + "\n")
    assert "HeartbeatRoute" not in copy.read_text()
    shutil.copytree(ROOT / "statemachines", tmp_path / "statemachines")
    (tmp_path / "src").symlink_to(ROOT / "src")
    running = LocalStackProcess(template=copy, params=NO_IP_LIMITS)
    try:

        async def scenario() -> None:
            wire = await Wire.open(running.url)
            reply = await wire.call({"action": "heartbeat"})
            assert (reply["type"], reply["code"]) == ("error", "INVALID_ACTION")
            await wire.close()

        run(scenario())
    finally:
        running.stop()


def test_local_stack_connection_attempts_over_the_limit_get_429() -> None:
    limited = LocalStackProcess(params={"RateLimitConnectsPerIpPerMinute": "2", "RateLimitJoinsPerIpPerMinute": "0"})
    try:

        async def scenario() -> None:
            first = await websockets.connect(limited.url)
            second = await websockets.connect(limited.url)
            with pytest.raises(websockets.InvalidStatus) as refused:
                await websockets.connect(limited.url)
            assert refused.value.response.status_code == 429
            await first.close()
            await second.close()

        run(scenario())
    finally:
        limited.stop()


def test_local_stack_access_log_has_the_stage_format_fields(stack: LocalStackProcess) -> None:
    from local_stack import template as cfn

    async def scenario() -> None:
        wire = await Wire.open(stack.url)
        reply = await wire.call('{"action":"danceSession"}')
        assert reply["code"] == "INVALID_ACTION"
        await wire.close()
        await asyncio.sleep(0.5)  # $disconnect runs after the close

    run(scenario())
    fields = set(cfn.access_log_format(cfn.load()))
    lines = stack.access_log()
    assert lines
    assert all(set(line) == fields for line in lines)
    by_route = {}
    for line in lines:
        by_route.setdefault(line["routeKey"], []).append(line)
    assert {"$connect", "$default", "$disconnect"} <= set(by_route)
    assert by_route["$connect"][-1]["eventType"] == "CONNECT"
    assert by_route["$disconnect"][-1]["disconnectStatusCode"] == "1000"
    assert all(line["sourceIp"] == "127.0.0.1" for line in lines)


def test_local_stack_lost_disconnect_converges_through_the_timers_410() -> None:
    # GIVEN API Gateway loses every $disconnect (it delivers them best effort)
    lossy = LocalStackProcess(time_scale=600, extra_env={"LOCAL_STACK_LOST_DISCONNECTS": "1"})
    try:

        async def scenario() -> tuple[str, Any]:
            speaker, session_id = await speaker_and_session(lossy.url, heartbeat=0.3)
            listener = await Wire.open(lossy.url)
            await listener.call(
                {"action": "joinSession", "sessionId": session_id, "targetLanguage": "fr"}, "sessionJoined"
            )
            await listener.close()  # its $disconnect is lost
            await asyncio.sleep(0.5)
            still = await speaker.call({"action": "getSessionStatus"}, "sessionStatus")
            assert still["listenerCount"] == 1  # nothing has told the backend yet
            # WHEN the listener's timer posts its notice (100 minutes = 10 s here) and meets a 410
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                status = await speaker.call({"action": "getSessionStatus"}, "sessionStatus")
                if status["listenerCount"] == 0:
                    break
                await asyncio.sleep(0.5)
            await speaker.close()
            return session_id, status

        _session_id, status = run(scenario())
        # THEN the count converged without the $disconnect
        assert status["listenerCount"] == 0
        assert lossy.log_lines("LOST (emulated)")
    finally:
        lossy.stop()


def test_local_stack_throttles_a_function_beyond_its_reserved_concurrency(tmp_path: Path) -> None:
    # GIVEN a copy of template.yaml whose JoinSessionFunction may run 2 at once (a join's reply
    # waits about 2 s for the audio routes, so 3 joins sent together are in flight together)
    lines = (ROOT / "template.yaml").read_text().splitlines()
    start = lines.index("  JoinSessionFunction:")
    (at,) = [i for i in range(start, start + 30) if "ReservedConcurrentExecutions:" in lines[i]][:1]
    lines[at] = "      ReservedConcurrentExecutions: 2"
    copy = tmp_path / "template.yaml"
    copy.write_text("\n".join(lines) + "\n")
    shutil.copytree(ROOT / "statemachines", tmp_path / "statemachines")
    (tmp_path / "src").symlink_to(ROOT / "src")
    limited = LocalStackProcess(template=copy, params=NO_IP_LIMITS, extra_env={"LOCAL_STACK_LAMBDA_CONCURRENCY": "on"})
    try:

        async def scenario() -> tuple[list[dict[str, Any]], dict[str, Any], dict[str, Any], list[int]]:
            speaker, session_id = await speaker_and_session(limited.url)
            listeners = [await Wire.open(limited.url) for _ in range(3)]
            join = {"action": "joinSession", "sessionId": session_id, "targetLanguage": "fr"}
            # WHEN the three join at once
            replies = await asyncio.gather(*(listener.call(join) for listener in listeners))
            status = await speaker.call({"action": "getSessionStatus"}, "sessionStatus")
            # and the refused one tries again once the others are done
            refused = [listener for listener, reply in zip(listeners, replies, strict=True) if "type" not in reply]
            again = await refused[0].call(join) if refused else {}
            for wire in listeners:
                await wire.close()
            # AND four Python clients joining at once all get in, backing off after each refusal
            clients = [Listener(limited.url, session_id, "de") for _ in range(4)]
            await asyncio.gather(*(client.connect() for client in clients))
            retried = [client.stats.gateway_errors for client in clients]
            for client in clients:
                await client.close()
            await speaker.close()
            return replies, status, again, retried

        replies, status, again, retried = run(scenario())
        # THEN Lambda refuses the third before it runs, and API Gateway answers it as a failed integration
        assert sorted(reply.get("type", reply.get("message")) for reply in replies) == [
            "Internal server error",
            "sessionJoined",
            "sessionJoined",
        ]
        assert status["listenerCount"] == 2  # the throttled join changed nothing
        assert again["type"] == "sessionJoined"
        assert sum(retried) >= 2  # two of the four were refused at least once, and came back
        faults = limited.local_api("/_local/faults")
        assert faults["lambdaThrottled"] == {"JoinSessionFunction": 1 + sum(retried)}
        assert faults["lambdaPeakConcurrency"]["JoinSessionFunction"] == 2
        assert len(limited.log_lines("error=TooManyRequestsException")) == 1 + sum(retried)  # each logged
    finally:
        limited.stop()


def test_local_stack_runs_each_function_in_its_own_process_and_counts_idle_from_the_connection(
    tmp_path: Path,
) -> None:
    # GIVEN a copy of template.yaml whose $connect handler takes 1.5 s, at TIME_SCALE=600 (the
    # idle timeout is 1 s): a handshake that waited its turn in a busy emulator
    template = (ROOT / "template.yaml").read_text()
    assert template.count("Handler: broadcast.handlers.connect.handler") == 1
    copy = tmp_path / "template.yaml"
    copy.write_text(template.replace("broadcast.handlers.connect.handler", "tests.integration.slow_connect.handler"))
    shutil.copytree(ROOT / "statemachines", tmp_path / "statemachines")
    (tmp_path / "src").symlink_to(ROOT / "src")
    slow = LocalStackProcess(template=copy, time_scale=600)
    try:
        # THEN every function has a runtime process of its own, with the environment the
        # template gives that function (TIMER_STATE_MACHINE_ARN and the JWT settings only where declared)
        runtimes = _runtime_processes(slow)
        assert set(runtimes) == {
            "AuthorizerFunction", "ConnectFunction", "DisconnectFunction", "DefaultFunction",
            "CreateSessionFunction", "JoinSessionFunction", "RefreshConnectionFunction", "HeartbeatFunction",
            "GetSessionStatusFunction", "SendAudioFunction", "EndSessionFunction", "NotifierFunction",
        }  # fmt: skip
        assert len({pid for pid, _ in runtimes.values()}) == 12
        assert "TIMER_STATE_MACHINE_ARN" in runtimes["ConnectFunction"][1]
        assert "TIMER_STATE_MACHINE_ARN" not in runtimes["HeartbeatFunction"][1]
        assert "JWT_ISSUER" in runtimes["AuthorizerFunction"][1]
        assert "JWT_ISSUER" not in runtimes["SendAudioFunction"][1]
        assert runtimes["HeartbeatFunction"][1]["SESSIONS_TABLE"] == "local-SessionsTable"  # Globals

        async def scenario() -> tuple[dict[str, Any], float]:
            started = time.monotonic()
            wire = await Wire.open(slow.url)
            opened = time.monotonic() - started
            # WHEN the client speaks a moment after its handshake
            await asyncio.sleep(0.3)
            await wire.send({"action": "heartbeat"})
            for _ in range(50):  # Wire keeps heartbeatAck out of its inbox, in `seen`
                if wire.seen:
                    break
                await asyncio.sleep(0.1)
            await wire.close()
            return (wire.seen or [{}])[0], opened

        reply, opened = run(scenario())
        # THEN it is answered: idle counts from the connection's start, not from its handshake's
        assert opened >= 1.5
        assert reply["type"] == "heartbeatAck"
    finally:
        slow.stop()


def _runtime_processes(stack: LocalStackProcess) -> dict[str, tuple[int, dict[str, str]]]:
    """Each runtime process of the stack (local_stack/runtime.py): function -> (pid, environment)."""
    found: dict[str, tuple[int, dict[str, str]]] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().decode().split("\0")
            environ = (proc / "environ").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if "local_stack.runtime" not in argv or not _belongs_to(stack, int(proc.name)):
            continue
        function = argv[argv.index("--function") + 1]
        found[function] = (int(proc.name), dict(item.split("=", 1) for item in environ if "=" in item))
    return found


def _belongs_to(stack: LocalStackProcess, pid: int) -> bool:
    """Whether `pid` descends from the stack's process."""
    while pid > 1:
        if pid == stack.process.pid:
            return True
        try:
            pid = int((Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError):
            return False
    return False
