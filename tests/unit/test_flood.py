"""One connection that floods messages is refused, then cut; a speaker's frames and a hall's
heartbeats never come near the budget (broadcast/flood.py)."""

from __future__ import annotations

import os
from typing import Any

from broadcast.flood import FloodGuard
from broadcast.handlers import heartbeat, send_audio
from tests.helpers import audio_event, body_of, message_event

# The template's values (tests/conftest.py puts them in the environment).
TEMPLATE_BUDGET = {
    "burst": float(os.environ["MESSAGE_BURST"]),
    "per_second": float(os.environ["MESSAGES_PER_SECOND"]),
    "cut_after": int(os.environ["CUT_AFTER_REFUSED"]),
}


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_flood_guard_burst_then_rate_then_cut_after_refusals_in_a_row() -> None:
    clock = Clock()
    guard = FloodGuard(burst=5, per_second=2, cut_after=3, clock=clock)
    assert [guard.admit("a") for _ in range(5)] == ["ok"] * 5
    assert guard.admit("a") == "refused"
    assert guard.admit("b") == "ok"  # another connection has its own budget
    clock.now = 0.5  # one token back
    assert guard.admit("a") == "ok"
    assert [guard.admit("a") for _ in range(3)] == ["refused", "refused", "cut"]


def test_flood_a_speaker_flushing_forty_seconds_of_outbox_on_a_new_connection_is_never_refused() -> None:
    # After a reconnect (handshake retries take up to about 40 s) the speaker sends its outbox at
    # once on the new connection, then goes on at 10 frames a second.
    clock = Clock()
    guard = FloodGuard(**TEMPLATE_BUDGET, clock=clock)
    verdicts = {guard.admit("spk-2") for _ in range(400)}
    for frame in range(600):
        clock.now = frame / 10
        verdicts.add(guard.admit("spk-2"))
    assert verdicts == {"ok"}


def test_flood_a_speaker_at_ten_frames_a_second_for_a_minute_is_never_refused(driver: Any, backend: Any) -> None:
    clock = Clock()
    guard = FloodGuard(**TEMPLATE_BUDGET, clock=clock)
    verdicts = set()
    for frame in range(600):
        clock.now = frame / 10
        verdicts.add(guard.admit("spk-1"))
    assert verdicts == {"ok"}


def test_flood_a_connection_sending_too_fast_is_refused_then_cut(driver: Any, backend: Any) -> None:
    # GIVEN the template's budget (a burst, a rate, a cut after refusals in a row)
    driver.connect("lst-1")
    burst = TEMPLATE_BUDGET["burst"]
    event = message_event("heartbeat", connection_id="lst-1")
    replies = [body_of(heartbeat.handler(event, None)) for _ in range(int(burst) + 40)]
    types = [r["type"] for r in replies]
    # THEN the burst is answered, the rest refused with RATE_LIMIT_EXCEEDED, and the connection cut
    assert types[: int(burst)] == ["heartbeatAck"] * int(burst)
    refused = [r for r in replies if r["type"] == "error"]
    assert refused
    assert {r["code"] for r in refused} == {"RATE_LIMIT_EXCEEDED"}
    assert all(r["retryAfterSeconds"] >= 1 for r in refused)
    assert backend.management.deleted == ["lst-1"]
    # AND another connection is untouched
    assert body_of(heartbeat.handler(message_event("heartbeat", connection_id="lst-2"), None))["type"] == "heartbeatAck"


def test_flood_a_frame_over_the_budget_is_not_relayed(driver: Any, backend: Any) -> None:
    session_id = driver.speaker_session("spk-1", "alice")
    driver.join("lst-es", session_id, "es")
    sent = int(TEMPLATE_BUDGET["burst"]) + 10
    for seq in range(sent):
        send_audio.handler(audio_event("spk-1", seq), None)
    delivered = [m["seq"] for m in backend.management.messages_to("lst-es", "audio")]
    assert len(delivered) < sent
    assert delivered == sorted(delivered)
