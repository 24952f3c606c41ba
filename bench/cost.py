"""Cost per 1,000 connection-hours, from counted calls and published prices (bench/prices.json).

One connection lives about 99 minutes here: it is told to refresh at 100 minutes minus up to
2 minutes of jitter, and its client hands over then. Each lifetime pays for its own setup
(authorizer, $connect, join or refresh), its heartbeats, its timer, and its $disconnect.
"""

from __future__ import annotations

import json
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
