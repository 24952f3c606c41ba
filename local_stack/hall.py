"""The hall: a speaker on stage, hundreds of listeners behind the venue's one IP, hours of audio.

Run on the template's production defaults (rate limits on, grace period on) and the local
stack's AWS failure modes (transaction conflicts, throttling; optionally lost $disconnects and
injected faults): everyone joins within a minute, lives through refresh cycles with every
refresh handshake accepted at its first attempt, and loses no frame; at the end the counts
equal the live listener records. `tests/integration/test_hall.py` runs 100 listeners; `make
bench` runs 500.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from broadcast_client import Frame, Listener, Speaker, Timing
from local_stack import emulated_clock, tokens
from local_stack.process import LocalStackProcess

LANGUAGES = ("es", "fr", "de", "it", "pt")
# The hall's stack: quiet logs, each function held to its reserved concurrency (off by default
# in the local stack: aws_faults.concurrency_by_environment says why), and a clock that slows
# down while the emulator is behind (emulated_clock says why; the report says by how much).
ENVIRONMENT = {
    "POWERTOOLS_LOG_LEVEL": "ERROR",
    "LOCAL_STACK_LAMBDA_CONCURRENCY": "on",
    emulated_clock.ENV_VARIABLE: "on",
}


@dataclass
class HallReport:
    """What a hall run measured, all counted in the run."""

    listeners: int
    joined: int = 0
    join_seconds: list[float] = field(default_factory=list)
    frames_sent: int = 0
    lost: int = 0
    duplicated: int = 0
    refreshes_min: int = 0
    handshake_retries: int = 0
    rate_limited: int = 0
    reconnects: int = 0
    internal_errors: int = 0
    conflicts_retried: int = 0
    lambda_throttled: int = 0  # invocations refused beyond a function's reserved concurrency
    # the function whose peak came closest to its limit (reserved concurrency times TIME_SCALE): "Name peak/limit"
    lambda_closest: str = "-"
    listener_count: int = -1
    listener_records: int = -1
    left_behind: list[str] = field(default_factory=list)  # listener records still there at the end
    lost_detail: list[str] = field(default_factory=list)  # who missed which frames, for a failure's message
    speaker_end_error: str = ""  # what endSession met, if it could not be sent
    seconds_until_counts_right: float = -1.0
    # The emulator's own CPU in cores (Linux): its functions process is GIL-bound at one core, so
    # a busiest window near 1.0 means the emulator, not the backend, was the limit.
    functions_cores_mean: float = -1.0
    functions_cores_peak: float = -1.0
    # The stack's clock (emulated_clock): emulated seconds per real second over the talk, and its
    # slowest pace. Below TIME_SCALE means the emulator slowed its clock to keep up.
    clock_rate_mean: float = -1.0
    clock_rate_slowest: float = -1.0

    def percentile(self, q: float) -> float:
        if not self.join_seconds:
            return 0.0
        ordered = sorted(self.join_seconds)
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def listener_records(stack: LocalStackProcess, session_id: str) -> list[str]:
    """The connection ids of the session's listener records."""
    items = stack.table_items("ConnectionsTable")
    return [i["connectionId"] for i in items if i.get("sessionId") == session_id and i.get("role") == "listener"]


def listener_count(stack: LocalStackProcess, session_id: str) -> int:
    items = stack.table_items("SessionsTable")
    (session,) = [item for item in items if item["sessionId"] == session_id]
    return int(session["listenerCount"])


async def run_hall(
    stack: LocalStackProcess,
    listeners: int,
    *,
    cycles: int = 3,
    fps: float = 2.0,
    time_scale: float = 300,
    join_over: float = 50.0,
) -> HallReport:
    """One speaker and `listeners` listeners joining over `join_over` seconds, for `cycles` refreshes."""
    report = HallReport(listeners)
    clock = emulated_clock.SharedClock(stack.local_api("/_local/clock")["path"])
    timing = Timing(time_scale=time_scale, gap_timeout=5.0, clock=clock)
    talk_started = clock.now(), time.monotonic()
    speaker = Speaker(stack.url, lambda: tokens.issue("hall-speaker"), timing=timing)
    await speaker.connect()
    assert speaker.session_id
    audience = [
        Listener(stack.url, speaker.session_id, LANGUAGES[i % len(LANGUAGES)], timing=timing) for i in range(listeners)
    ]
    heard: list[list[int]] = [[] for _ in audience]

    async def join(index: int, listener: Listener) -> None:
        await asyncio.sleep(index * join_over / max(1, listeners))  # a QR code scanned over the minute
        started = time.monotonic()
        await listener.connect()
        report.join_seconds.append(time.monotonic() - started)

    async def consume(index: int, listener: Listener) -> None:
        async for item in listener:
            if isinstance(item, Frame):
                heard[index].append(item.seq)

    consumers = [asyncio.create_task(consume(i, listener)) for i, listener in enumerate(audience)]
    sending = True

    async def speak() -> None:
        started = time.monotonic()
        while sending:
            await speaker.send_audio(b"\x00\x01" * 1600)  # 100 ms of pcm_s16le/16000/1
            report.frames_sent += 1
            await asyncio.sleep(max(0.0, started + report.frames_sent / fps - time.monotonic()))

    # The talk is on when the QR code goes up: listeners join a session already sending audio
    # (so, like phones in a hall, they hear frames from their first second and need no heartbeat).
    speaker_task = asyncio.create_task(speak())
    watching = asyncio.create_task(_watch_cpu(stack, report))
    results = await asyncio.gather(*(join(i, listener) for i, listener in enumerate(audience)), return_exceptions=True)
    report.joined = sum(1 for r in results if not isinstance(r, BaseException))
    # Every connection refreshes at 100 emulated minutes: `cycles` of them, plus the last joiner's
    # offset; on the stack's clock, which may run slower than time_scale (emulated_clock).
    talk_ends = clock.now() + 6000 * cycles + 5 * time_scale
    while (left := talk_ends - clock.now()) > 0:
        await asyncio.sleep(min(1.0, timing.real(left)))
    sending = False
    await speaker_task
    watching.cancel()
    report.clock_rate_mean = (clock.now() - talk_started[0]) / (time.monotonic() - talk_started[1])
    report.clock_rate_slowest = clock.slowest()
    await asyncio.sleep(6.0)  # the last frames and any gap timeout

    last = report.frames_sent - 1
    for index, seqs in enumerate(heard):
        if seqs:
            missing = sorted(set(range(seqs[0], last + 1)) - set(seqs))
            report.lost += len(missing)
            report.duplicated += len(seqs) - len(set(seqs))
            if missing:
                stats = audience[index].stats
                report.lost_detail.append(
                    f"listener {index}: missing {missing[:5]} of {seqs[0]}..{last}, refreshes {stats.refreshes}, "
                    f"reconnects {stats.reconnects}, handovers timed out {stats.handovers_timed_out}"
                )
    report.refreshes_min = min(listener.stats.refreshes for listener in audience)
    report.handshake_retries = sum(listener.stats.handshake_retries for listener in audience)
    report.rate_limited = sum(listener.stats.rate_limited for listener in audience)
    report.reconnects = sum(listener.stats.reconnects for listener in audience)
    report.internal_errors = len(stack.log_lines("status=500")) + len(stack.log_lines("error="))
    faults = stack.local_api("/_local/faults")
    report.conflicts_retried = faults["transactionConflicts"]
    report.lambda_throttled = sum(faults["lambdaThrottled"].values())
    limits, peaks = faults["lambdaConcurrencyLimits"], faults["lambdaPeakConcurrency"]
    closest = max((f for f in peaks if f in limits), key=lambda f: peaks[f] / limits[f], default=None)
    if closest is not None:
        report.lambda_closest = f"{closest.removesuffix('Function')} {peaks[closest]}/{limits[closest]}"

    for listener in audience:
        await listener.close()
    closed = time.monotonic()
    # The counts converge once every $disconnect (or, for a lost one, the timer's 410) is in:
    # at the latest the timer's sweep after the 2-hour cut (60 s real at TIME_SCALE=300, but
    # more at a slower scale: the audio has stopped, so no frame's 410 comes sooner).
    settle = max(60.0, timing.real(7200) + 10)
    while time.monotonic() - closed < settle:
        report.listener_count = listener_count(stack, speaker.session_id)
        report.left_behind = listener_records(stack, speaker.session_id)
        report.listener_records = len(report.left_behind)
        if report.listener_count == report.listener_records == 0:
            report.seconds_until_counts_right = time.monotonic() - closed
            break
        await asyncio.sleep(0.5)
    try:
        await speaker.end()
    except Exception as exc:  # noqa: BLE001 - reported: an emulator that fell behind can cut the speaker
        report.speaker_end_error = repr(exc)[:200]
    for task in consumers:
        task.cancel()
    return report


async def _watch_cpu(stack: LocalStackProcess, report: HallReport, every: float = 5.0) -> None:
    """The functions process's cores, over the whole run and in its busiest `every` seconds."""
    first = previous = stack.cpu_seconds().get("functions")
    if first is None:
        return
    started = last = time.monotonic()
    while True:
        await asyncio.sleep(every)
        now, used = time.monotonic(), stack.cpu_seconds().get("functions", previous)
        report.functions_cores_peak = max(report.functions_cores_peak, (used - previous) / (now - last))
        report.functions_cores_mean = (used - first) / (now - started)
        previous, last = used, now


def table(reports: list[tuple[str, HallReport]]) -> str:
    """The bench's hall table (markdown)."""
    lines = [
        "| hall | listeners joined | join p50 / p95 / p99 (s) | frames sent | lost | refreshes each (min) "
        "| refused handshakes retried | RATE_LIMIT_EXCEEDED | INTERNAL_ERROR | conflicts retried "
        "| Lambda throttled | nearest its concurrency limit (peak/limit) "
        "| counts right after close (s) | emulator's functions process, cores: mean / busiest 5 s "
        "| emulated s per real s: mean / slowest |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in reports:
        lines.append(
            f"| {name} | {r.joined}/{r.listeners} | {r.percentile(0.5):.2f} / {r.percentile(0.95):.2f} / "
            f"{r.percentile(0.99):.2f} | {r.frames_sent} | {r.lost} | {r.refreshes_min} | {r.handshake_retries} "
            f"| {r.rate_limited} | {r.internal_errors} | {r.conflicts_retried} | {r.lambda_throttled} "
            f"| {r.lambda_closest} | {r.seconds_until_counts_right:.1f} "
            f"| {r.functions_cores_mean:.2f} / {r.functions_cores_peak:.2f} "
            f"| {r.clock_rate_mean:.0f} / {r.clock_rate_slowest:.0f} |"
        )
    return "\n".join(lines)
