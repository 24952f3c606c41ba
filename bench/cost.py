"""Cost per 1,000 connection-hours, from counted calls and published prices (bench/prices.json).

One connection lives about 99 minutes here: it is told to refresh at 100 minutes minus up to
2 minutes of jitter, and its client hands over then. Each lifetime pays for its own setup
(authorizer, $connect, join or refresh), its heartbeats, its timer, and its $disconnect.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

PRICES = json.loads((Path(__file__).parent / "prices.json").read_text())


@dataclass
class Usage:
    """Billable units for one connection lifetime."""

    messages: float = 0  # API Gateway messages, both directions (32 KB increments; ours are small)
    lambda_calls: float = 0
    gb_seconds: float = 0
    read_units: float = 0
    write_units: float = 0
    transitions: float = 0

    def add_lambda(self, calls: float, light: bool = False) -> None:
        a = PRICES["assumptions"]
        ms = a["lambda_ms_light_handler"] if light else a["lambda_ms_dynamodb_handler"]
        mb = a["lambda_memory_mb_light"] if light else a["lambda_memory_mb"]
        self.lambda_calls += calls
        self.gb_seconds += calls * ms / 1000 * mb / 1024


def listener_start_wait_seconds() -> float:
    """How long a listener's join or refresh waits before its reply: AUDIO_ROUTE_CACHE_MS +
    AUDIO_START_MARGIN_MS from template.yaml (billed as Lambda duration)."""
    from local_stack import template

    variables = template.load()["Globals"]["Function"]["Environment"]["Variables"]
    return (int(variables["AUDIO_ROUTE_CACHE_MS"]) + int(variables["AUDIO_START_MARGIN_MS"])) / 1000


def dollars(usage: Usage, minutes: float) -> float:
    p = PRICES
    return (
        usage.messages / 1e6 * p["apigateway_websocket_per_million_messages"]
        + minutes / 1e6 * p["apigateway_websocket_per_million_connection_minutes"]
        + usage.lambda_calls / 1e6 * p["lambda_per_million_requests"]
        + usage.gb_seconds * p["lambda_arm64_per_gb_second"]
        + usage.read_units / 1e6 * p["dynamodb_on_demand_per_million_read_request_units"]
        + usage.write_units / 1e6 * p["dynamodb_on_demand_per_million_write_request_units"]
        + usage.transitions / 1000 * p["stepfunctions_standard_per_thousand_transitions"]
    )


def lifetime(role: str, design: str) -> Usage:
    """Units for one connection lifetime of `role` under `design` ('timer' = this project, 'seed' = polling)."""
    a = PRICES["assumptions"]
    minutes = a["connection_lifetime_minutes"]
    u = Usage()
    # authorizer + $connect: one PutItem (1 WRU); with the timer, a StartExecution (no DynamoDB)
    u.add_lambda(2)
    u.write_units += 1
    # join (first lifetime) or refresh (every later one): the steady state is a refresh
    if design == "timer":
        u.messages += 2  # the refreshConnection frame and its route-response reply
        u.add_lambda(1)
        if role == "listener":
            u.read_units += 1  # strongly consistent GetItem for sourceLanguage
            u.write_units += 2 * 2  # TransactWriteItems of 2 items: transactional writes cost double
            # its reply waits for the new connection's audio start (service.audible_from)
            u.gb_seconds += listener_start_wait_seconds() * a["lambda_memory_mb"] / 1024
        else:
            u.write_units += 2 * 2
        u.transitions += a["timer_transitions_per_connection"]
        u.add_lambda(1)  # the notifier posting connectionRefreshRequired
        u.read_units += 1
        u.messages += 1
        beat = a["client_heartbeat_seconds"]
        beats = minutes * 60 / beat
        u.messages += 2 * beats  # heartbeat in, heartbeatAck out (route response)
        u.add_lambda(beats, light=True)
    else:
        u.messages += 2
        u.add_lambda(1)
        if role == "listener":  # GetItem + PutItem + UpdateItem + post
            u.read_units += 0.5
            u.write_units += 2
        else:  # GetItem + UpdateItem + post
            u.read_units += 0.5
            u.write_units += 1
        beat = a["seed_heartbeat_seconds"]
        beats = minutes * 60 / beat
        u.messages += 2 * beats  # heartbeat in, ack posted back
        u.add_lambda(beats)  # each heartbeat reads the connection to check its age
        u.read_units += 0.5 * beats
    # $disconnect: GetItem + TransactWriteItems (listener) or DeleteItem (old speaker); timer stop
    u.add_lambda(1)
    u.read_units += 1
    u.write_units += 4 if role == "listener" else 1
    return u


def per_thousand_hours(role: str, design: str) -> float:
    minutes = PRICES["assumptions"]["connection_lifetime_minutes"]
    per_lifetime = dollars(lifetime(role, design), minutes)
    return per_lifetime * (60 / minutes) * 1000


def rows() -> list[tuple[str, float, float]]:
    return [
        (role, per_thousand_hours(role, "timer"), per_thousand_hours(role, "seed")) for role in ("listener", "speaker")
    ]


def table(data: list[tuple[str, float, float]]) -> str:
    lines = [
        "| per 1,000 connection-hours | this design (Step Functions timer, heartbeat every 200 s) "
        "| seed design (heartbeat every 30 s checks the age) | ratio |",
        "|---|---|---|---|",
    ]
    for role, ours, seed in data:
        lines.append(f"| {role} | ${ours:.4f} | ${seed:.4f} | {ours / seed:.2f} |")
    lines.append("")
    lines.append(f"Prices: {PRICES['region']}, recorded {PRICES['recorded']} (see bench/prices.json for sources).")
    return "\n".join(lines)


# --- audio -------------------------------------------------------------------------------------

MESSAGE_METER_BYTES = 32 * 1024  # API Gateway bills WebSocket messages in 32 KB increments
BYTES_PER_SECOND = 16000 * 2  # pcm_s16le/16000/1
STRONG_READ_BYTES = 4096  # one read request unit: up to 4 KB, strongly consistent (eventually: half)


@dataclass
class AudioInputs:
    """What the audio cost is computed from, all measured or counted by `make bench` (bench/fanout.py)."""

    listeners_per_session: int
    cpu_ms_per_post: float  # measured CPU per delivered post, at this session size
    memory_mb: int  # SendAudioFunction's MemorySize in template.yaml
    modelled_ms: float  # modelled duration of one frame's fan-out at that memory
    read_units_per_route_read: float  # read request units of one route read (counted calls, item sizes)
    route_cache_seconds: float  # one route read per speaker connection per this many seconds


def audio_message_bytes(frame_ms: int) -> int:
    """The size of one `audio` message as the fan-out sends it (JSON with base64 audio)."""
    import base64

    raw = b"\x00" * (BYTES_PER_SECOND * frame_ms // 1000)
    body = {"type": "audio", "sessionId": "golden-eagle-427", "seq": 123456, "audio": base64.b64encode(raw).decode()}
    return len(json.dumps(body, separators=(",", ":")).encode())


def audio_per_thousand_listener_hours(frame_ms: int, inputs: AudioInputs) -> dict[str, float]:
    """Dollars per 1,000 listener-hours of audio, by service, for one frame length."""
    p = PRICES
    n = inputs.listeners_per_session
    frames = 3600 * 1000 / frame_ms  # per hour
    sessions = 1000 / n  # 1,000 listener-hours = this many session-hours
    metered = math.ceil(audio_message_bytes(frame_ms) / MESSAGE_METER_BYTES)
    messages = frames * (n * metered + metered) * sessions  # one post per listener, plus the speaker's frame in
    invocations = frames * sessions
    gb_seconds = invocations * inputs.modelled_ms / 1000 * inputs.memory_mb / 1024
    read_units = 3600 / inputs.route_cache_seconds * inputs.read_units_per_route_read * sessions
    return {
        "apigateway": messages / 1e6 * p["apigateway_websocket_per_million_messages"],
        "lambda": invocations / 1e6 * p["lambda_per_million_requests"] + gb_seconds * p["lambda_arm64_per_gb_second"],
        "dynamodb": read_units / 1e6 * p["dynamodb_on_demand_per_million_read_request_units"],
    }


def audio_table(inputs: AudioInputs) -> str:
    """Audio next to the connections' own cost (the table above), per 1,000 listener-hours."""
    connection = per_thousand_hours("listener", "timer")
    seed_connection = per_thousand_hours("listener", "seed")
    lines = [
        f"| per 1,000 listener-hours, sessions of {inputs.listeners_per_session} | message size | API Gateway messages "
        "| Lambda (SendAudio) | DynamoDB reads | audio total | + connection (this design / seed design) |",
        "|---|---|---|---|---|---|---|",
    ]
    for frame_ms in (200, 500):
        cost = audio_per_thousand_listener_hours(frame_ms, inputs)
        total = sum(cost.values())
        lines.append(
            f"| {frame_ms} ms frames | {audio_message_bytes(frame_ms):,} B "
            f"({math.ceil(audio_message_bytes(frame_ms) / MESSAGE_METER_BYTES)} metered) "
            f"| ${cost['apigateway']:.2f} | ${cost['lambda']:.4f} | ${cost['dynamodb']:.5f} | ${total:.2f} "
            f"| ${total + connection:.2f} / ${total + seed_connection:.2f} |"
        )
    lines.append("")
    lines.append(
        f"From bench/fanout.py's run: {inputs.cpu_ms_per_post:.3f} ms CPU per post, SendAudioFunction at "
        f"{inputs.memory_mb} MB for {inputs.modelled_ms:.0f} ms per frame (modelled), "
        f"{inputs.read_units_per_route_read:g} read units per route read, one per "
        f"{inputs.route_cache_seconds:g} s per speaker connection. The speaker's own frames in are counted."
    )
    return "\n".join(lines)
