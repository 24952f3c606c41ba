"""Audio fan-out: client CPU per post, DynamoDB reads per frame, modelled Lambda latency, end to end.

Measured in this process, in one run:

- CPU per delivered post: the process CPU (every thread) that `messenger.post_many` spends on
  one 200 ms frame to N connections, divided by N, against a stand-in endpoint in another process
  (bench/sink.py: its CPU is not counted), once through the project's path (connections_api) and
  once through a boto3 `post_to_connection` client, for the ratio.
- DynamoDB reads per frame: the calls `send_audio` makes (moto, counted by a botocore hook) for
  the first frame of a speaker connection and for the next one (steady state).
- Modelled latency of the last listener on Lambda: the measured CPU scaled by the memory's vCPU
  share (1,769 MB is one vCPU), against the round trips (ROUND_TRIP_MS per post, at
  messenger.MAX_PARALLEL_POSTS in flight); whichever is longer bounds the frame, as the posts'
  waits overlap the other posts' CPU. With it, how many invocations of one session overlap at
  200 ms frames (a fan-out longer than the frame overlaps the next frame's).
- End to end on the local stack: from the speaker's send to each listener's receive.
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SIZES = (10, 100, 500, 2000)
FRAME = b"\x00\x01" * 3200  # 200 ms of pcm_s16le/16000/1, as a speaker sends it
ROUND_TRIP_MS = 20.0  # stated: one @connections POST from Lambda, same region, kept-alive connection
FRAME_MS = 200
VCPU_MB = 1769


@dataclass
class Row:
    listeners: int
    cpu_ms_lean: float
    cpu_ms_boto3: float
    reads_first: int
    reads_steady: int
    read_units_first: float  # read request units of the first frame's reads (the route read)
    modelled_ms: float
    overlapping: int  # invocations of one session in flight at once, at FRAME_MS frames
    e2e: tuple[float, float, float] | None  # p50, p95, p99 in ms


def _start_sink() -> tuple[subprocess.Popen[str], str]:
    sink = subprocess.Popen(
        [sys.executable, "-m", "bench.sink"], cwd=ROOT, stdout=subprocess.PIPE, text=True, env={**os.environ}
    )
    assert sink.stdout is not None
    port = int(sink.stdout.readline().split()[1])
    return sink, f"http://127.0.0.1:{port}/live"


def cpu_per_post(endpoint: str, listeners: int, *, boto3_client: bool, frames: int = 3) -> float:
    """Milliseconds of this process's CPU per post of one frame to `listeners` connections."""
    from broadcast import aws, config, messenger

    os.environ["MANAGEMENT_ENDPOINT"] = endpoint
    config.reset()
    aws.reset()
    if boto3_client:
        import boto3
        from botocore.config import Config

        client = boto3.client(
            "apigatewaymanagementapi",
            endpoint_url=endpoint,
            config=Config(max_pool_connections=messenger.MAX_PARALLEL_POSTS, retries={"mode": "standard"}),
        )
        aws.inject("apigatewaymanagementapi", client, endpoint)
    ids = [f"conn-{i:05d}=" for i in range(listeners)]
    message = {"type": "audio", "sessionId": "bench-session-001", "seq": 1, "audio": base64.b64encode(FRAME).decode()}
    messenger.post_many(ids[: min(listeners, messenger.MAX_PARALLEL_POSTS)], message)  # warm: pool and sockets
    spent = []
    for _ in range(frames):
        started = time.process_time()
        gone, failed = messenger.post_many(ids, message)
        spent.append(time.process_time() - started)
        if gone or failed:
            raise RuntimeError(f"the sink answered {len(gone)} posts 410 and failed {len(failed)}")
    aws.reset()
    return statistics.median(spent) * 1000 / listeners


def _item_bytes(item: dict[str, Any]) -> int:
    """DynamoDB's item size: attribute names plus values (strings and numbers as text)."""
    return sum(len(name) + len(next(iter(value.values()))) for name, value in item.items())


def reads_per_frame(listeners: int) -> tuple[int, int, float]:
    """(DynamoDB reads of a speaker connection's first frame, of its next frame, the first's read units).

    Read units from the counted calls: a strongly consistent GetItem of an item under 4 KB is 1;
    the Query on the session index (eventually consistent) is 0.5 per 4 KB of listener items.
    """
    from bench.calls import ENV, TABLES, _event
    from broadcast import audio_routes, aws, config
    from broadcast.handlers import connect, create_session, send_audio
    from local_stack.harness import AwsCallCounter, mocked_backend

    os.environ.update(ENV)
    config.reset()
    aws.reset()
    audio_routes.forget()
    with mocked_backend(TABLES, ENV["TIMER_STATE_MACHINE_ARN"], ENV["MANAGEMENT_ENDPOINT"]) as (ddb, _sfn, _mgmt):
        connect.handler(_event("spk-1", None, "alice"), None)
        body = {"action": "createSession", "sourceLanguage": "en"}
        session_id = json.loads(create_session.handler(_event("spk-1", body, "alice"), None)["body"])["sessionId"]
        # Listener records written directly: the joins themselves are measured elsewhere.
        for i in range(listeners):
            item = {
                "connectionId": {"S": f"lst-{i}"},
                "sessionId": {"S": session_id},
                "role": {"S": "listener"},
                "targetLanguage": {"S": "es"},
                "connectedAt": {"N": "0"},
            }
            ddb.put_item(TableName=TABLES["ConnectionsTable"], Item=item)
        counts, units = [], 0.0
        for seq in (1, 2):
            frame = {"action": "sendAudio", "seq": seq, "audio": "AAAA"}
            with AwsCallCounter() as counter:
                send_audio.handler(_event("spk-1", frame, "alice"), None)
            reads = [c for c in counter.calls if c.startswith("dynamodb.")]
            counts.append(len(reads))
            if seq == 1:
                listed = math.ceil(listeners * _item_bytes(item) / 4096) if listeners else 1
                queried = 0.5 * listed if "dynamodb.Query" in reads else 0.0
                units = reads.count("dynamodb.GetItem") * 1.0 + queried
    aws.reset()
    audio_routes.forget()
    return counts[0], counts[1], units


def send_audio_memory_mb() -> int:
    return int(_send_audio_props()["MemorySize"])


def modelled_ms(cpu_ms_per_post: float, listeners: int, memory_mb: int) -> float:
    """The last listener's modelled latency in ms on Lambda at `memory_mb`, one invocation per frame."""
    from broadcast import messenger

    vcpu = min(memory_mb / VCPU_MB, 1.0)  # posting from one Python process uses at most one vCPU
    cpu = listeners * cpu_ms_per_post / vcpu
    waits = math.ceil(listeners / messenger.MAX_PARALLEL_POSTS) * ROUND_TRIP_MS
    return max(cpu, waits)


async def _end_to_end(url: str, listeners: int, frames: int = 15, fps: float = 5.0) -> tuple[float, float, float]:
    from bench.load import connect, connect_many
    from local_stack import tokens

    speaker = await connect(url, tokens.issue("bench-fanout"))
    _, created = await speaker.call({"action": "createSession", "sourceLanguage": "en"})
    session_id = created["sessionId"]
    audience = await connect_many(url, listeners)
    # Joins 20 at a time: this measures the fan-out, not a join burst (the load and hall tables
    # do that). Each join's reply waits about two seconds for its audio start, so two at a time
    # (what the one-process emulator once needed) would take minutes.
    gate = asyncio.Semaphore(20)

    async def join(client: Any) -> tuple[float, dict[str, Any]]:
        async with gate:
            for _ in range(5):  # a join told to come back (RATE_LIMIT_EXCEEDED) comes back, as clients do
                answer = await client.call({"action": "joinSession", "sessionId": session_id, "targetLanguage": "es"})
                if answer[1].get("code") != "RATE_LIMIT_EXCEEDED":
                    break
                await asyncio.sleep(float(answer[1].get("retryAfterSeconds") or 1))
            return answer

    joins = await asyncio.gather(*(join(c) for c in audience))
    refused = [m for _, m in joins if m.get("type") != "sessionJoined"]
    if refused:
        raise RuntimeError(f"{len(refused)} of {listeners} joins refused: {refused[:3]}")
    await asyncio.sleep(1.5)  # margin: each join's reply already came at its audio start
    sent: dict[int, float] = {}
    audio = base64.b64encode(FRAME).decode()

    async def speak() -> None:
        for seq in range(1, frames + 1):
            sent[seq] = time.perf_counter()
            await speaker.ws.send(json.dumps({"action": "sendAudio", "seq": seq, "audio": audio}))
            await asyncio.sleep(1 / fps)

    async def hear(client: Any) -> list[float]:
        delays = []
        while len(delays) < frames:
            try:
                arrived, message = await asyncio.wait_for(client.messages.get(), 30)
            except TimeoutError:
                break
            if message.get("type") == "audio":
                delays.append((arrived - sent[message["seq"]]) * 1000)
        return delays

    results = await asyncio.gather(speak(), *(hear(c) for c in audience))
    delays = sorted(d for per in results[1:] for d in per)
    for client in [speaker, *audience]:
        await client.ws.close()
    if len(delays) != frames * listeners:
        raise RuntimeError(f"{frames * listeners - len(delays)} of {frames * listeners} frames not received")
    q = statistics.quantiles(delays, n=100, method="inclusive")
    return statistics.median(delays), q[94], q[98]


def end_to_end(sizes: tuple[int, ...]) -> dict[int, tuple[float, float, float]]:
    """p50/p95/p99 of speaker-send to listener-receive on the local stack, per session size."""
    from local_stack.process import NO_IP_LIMITS, LocalStackProcess

    found = {}
    stack = LocalStackProcess(time_scale=1, extra_env={"POWERTOOLS_LOG_LEVEL": "ERROR"}, params=NO_IP_LIMITS)
    try:
        for n in sizes:
            found[n] = asyncio.run(_end_to_end(stack.url, n))
    finally:
        stack.stop()
    return found


def measure(progress: Any = print, e2e_sizes: tuple[int, ...] = (10, 100, 500)) -> list[Row]:
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    memory = send_audio_memory_mb()
    sink, endpoint = _start_sink()
    rows = []
    try:
        for n in SIZES:
            lean = cpu_per_post(endpoint, n, boto3_client=False)
            heavy = cpu_per_post(endpoint, n, boto3_client=True)
            first, steady, units = reads_per_frame(n)
            model = modelled_ms(lean, n, memory)
            rows.append(Row(n, lean, heavy, first, steady, units, model, math.ceil(model / FRAME_MS), None))
            progress(
                f"  fan-out: {n:>5} listeners: {lean:.3f} ms CPU per post ({heavy:.3f} through boto3), "
                f"reads {first} then {steady}, modelled {model:.0f} ms at {memory} MB"
            )
    finally:
        sink.terminate()
        sink.wait()
    progress(f"  fan-out: end to end on the local stack for {', '.join(map(str, e2e_sizes))} listeners")
    measured = end_to_end(e2e_sizes)
    for row in rows:
        row.e2e = measured.get(row.listeners)
    return rows


def table(rows: list[Row]) -> str:
    memory = send_audio_memory_mb()
    lines = [
        f"| listeners | CPU per post, project path (ms) | CPU per post, boto3 (ms) | ratio "
        f"| DynamoDB reads: first frame / next frames | modelled last listener at {memory} MB (ms) "
        f"| invocations in flight at {FRAME_MS} ms frames "
        "| local stack end to end p50 / p95 / p99 (ms) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        e2e = " / ".join(f"{v:.0f}" for v in r.e2e) if r.e2e else "above the 500-listener session cap"
        lines.append(
            f"| {r.listeners} | {r.cpu_ms_lean:.3f} | {r.cpu_ms_boto3:.3f} | {r.cpu_ms_boto3 / r.cpu_ms_lean:.1f}x "
            f"| {r.reads_first} / {r.reads_steady} | {r.modelled_ms:.0f} | {r.overlapping} | {e2e} |"
        )
    lines.append(
        f"\nModel: max(posts x CPU per post / vCPU share, rounds of {ROUND_TRIP_MS:.0f} ms round trips at "
        f"{_parallel()} in flight); the round trip is stated, not measured. 1,769 MB is one vCPU."
    )
    return "\n".join(lines)


def _parallel() -> int:
    from broadcast import messenger

    return messenger.MAX_PARALLEL_POSTS


def cost_inputs(rows: list[Row], listeners: int = 500) -> Any:
    """The audio cost model's inputs, from this run's row for a `listeners` session."""
    from bench.cost import AudioInputs

    (row,) = [r for r in rows if r.listeners == listeners]
    return AudioInputs(
        listeners_per_session=listeners,
        cpu_ms_per_post=row.cpu_ms_lean,
        memory_mb=send_audio_memory_mb(),
        modelled_ms=row.modelled_ms,
        read_units_per_route_read=row.read_units_first,
        route_cache_seconds=_route_cache_seconds(),
    )


def _send_audio_props() -> dict[str, Any]:
    from local_stack import template as cfn

    (props,) = [
        p for p in cfn.resources_of(cfn.load(), "AWS::Serverless::Function").values() if "send_audio" in p["Handler"]
    ]
    return props


def _route_cache_seconds() -> float:
    """AUDIO_ROUTE_CACHE_MS as template.yaml deploys it (in Globals: the joins wait on it too)."""
    from local_stack import template as cfn

    return int(cfn.load()["Globals"]["Function"]["Environment"]["Variables"]["AUDIO_ROUTE_CACHE_MS"]) / 1000
