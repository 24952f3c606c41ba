"""`make demo`: a time-compressed multi-hour broadcast on the local stack, through many refreshes.

One speaker and 20 listeners over three languages; 6 emulated hours pass in 72 seconds,
so every connection is told to refresh (and does) at least three times. At the end a table
says what was sent, what each language received, and whether anything was lost or
duplicated; the exit status is non-zero if anything was.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import struct
import sys
import time
from dataclasses import dataclass, field

from broadcast_client import Event, Frame, Listener, Speaker, Timing
from local_stack import tokens
from local_stack.process import LocalStackProcess

LANGUAGES = ("es", "fr", "de")


def tone(seq: int, rate: int = 16000, millis: int = 200, hz: float = 440.0) -> bytes:
    """200 ms of the protocol's audio format (pcm_s16le/16000/1): a sine tone, continuous across frames."""
    samples = rate * millis // 1000
    start = seq * samples
    return b"".join(
        struct.pack("<h", int(8000 * math.sin(2 * math.pi * hz * (start + i) / rate))) for i in range(samples)
    )


@dataclass
class ListenerLog:
    """What one listener's application received."""

    language: str
    seqs: list[int] = field(default_factory=list)
    events: list[str] = field(default_factory=list)

    @property
    def unique(self) -> int:
        return len(set(self.seqs))

    @property
    def duplicated(self) -> int:
        return len(self.seqs) - self.unique

    @property
    def out_of_order(self) -> int:
        return sum(1 for a, b in zip(self.seqs, self.seqs[1:], strict=False) if b <= a)


async def consume(listener: Listener, log: ListenerLog) -> None:
    async for item in listener:
        if isinstance(item, Frame):
            log.seqs.append(item.seq)
        elif isinstance(item, Event):
            log.events.append(item.type)


async def broadcast(url: str, hours: float, time_scale: float, listeners: int, fps: float) -> int:
    # A listener's old connection stays open until the new one has caught up (no timed drain);
    # a frame still missing after 5 s counts as lost.
    timing = Timing(time_scale=time_scale, gap_timeout=5.0)
    speaker = Speaker(url, lambda: tokens.issue("demo-speaker"), source_language="en", timing=timing)
    await speaker.connect()
    assert speaker.session_id
    print(f"session {speaker.session_id}: 1 speaker, {listeners} listeners ({', '.join(LANGUAGES)})", flush=True)
    audience = [
        Listener(url, speaker.session_id, LANGUAGES[i % len(LANGUAGES)], timing=timing) for i in range(listeners)
    ]
    await asyncio.gather(*(listener.connect() for listener in audience))
    logs = [ListenerLog(listener.target_language) for listener in audience]
    consumers = [asyncio.create_task(consume(listener, log)) for listener, log in zip(audience, logs, strict=True)]

    real_duration = hours * 3600 / time_scale
    started = time.monotonic()
    next_progress = started
    sent = 0
    while (elapsed := time.monotonic() - started) < real_duration:
        await speaker.send_audio(tone(sent))
        sent += 1
        if time.monotonic() >= next_progress:
            emulated = elapsed * time_scale
            refreshes = sum(listener.stats.refreshes for listener in audience)
            print(
                f"  [{elapsed:5.1f}s real | {int(emulated // 3600)}h{int(emulated % 3600 // 60):02d}m emulated]"
                f" frames sent {sent:5d}  refreshes: speaker {speaker.stats.refreshes}, listeners {refreshes}",
                flush=True,
            )
            next_progress += 5
        await asyncio.sleep(max(0.0, started + sent / fps - time.monotonic()))

    await asyncio.sleep(2.0)  # let the last frames land
    await speaker.end()
    await asyncio.wait(consumers, timeout=10)
    for listener in audience:
        await listener.close()
    return report(sent, speaker, audience, logs, time.monotonic() - started)


def report(sent: int, speaker: Speaker, audience: list[Listener], logs: list[ListenerLog], took: float) -> int:
    print()
    print(f"| {'':<28} | {'value':>10} |")
    print(f"|{'-' * 30}|{'-' * 12}|")

    def row(label: str, value: object) -> None:
        print(f"| {label:<28} | {value!s:>10} |")

    row("frames sent", sent)
    for language in LANGUAGES:
        mine = [log for log in logs if log.language == language]
        row(
            f"delivered per listener [{language}]",
            f"{min(log.unique for log in mine)}-{max(log.unique for log in mine)}",
        )
    lost = sum(sent - log.unique for log in logs)
    duplicated = sum(log.duplicated for log in logs)
    row("lost (all listeners)", lost)
    row("duplicated (all listeners)", duplicated)
    row("out of order (delivered)", sum(log.out_of_order for log in logs))
    row("wire: arrivals out of order", sum(listener.buffer.stats.reordered for listener in audience))
    row("wire: duplicates dropped", sum(listener.buffer.stats.duplicates for listener in audience))
    row("handovers: frames on both", sum(x.stats.handover_both for x in audience))
    row("handovers: only old conn.", sum(x.stats.handover_only_old for x in audience))
    row("handovers: only new conn.", sum(x.stats.handover_only_new for x in audience))
    row("handovers not caught up", sum(x.stats.handovers_timed_out for x in audience))
    row("refreshes: speaker", speaker.stats.refreshes)
    row(
        "refreshes per listener",
        f"{min(x.stats.refreshes for x in audience)}-{max(x.stats.refreshes for x in audience)}",
    )
    row("refresh notices received", speaker.stats.refresh_notices + sum(x.stats.refresh_notices for x in audience))
    latest = max([speaker.stats.latest_notice] + [x.stats.latest_notice for x in audience])
    row("latest notice (s after open)", f"{latest:.2f}")
    row("fallback refreshes", speaker.stats.fallback_refreshes + sum(x.stats.fallback_refreshes for x in audience))
    row("reconnects", speaker.stats.reconnects + sum(x.stats.reconnects for x in audience))
    handover = max([speaker.stats.longest_handover] + [x.stats.longest_handover for x in audience])
    row("longest handover (s)", f"{handover:.2f}")
    row("real time (s)", f"{took:.1f}")
    print()
    refreshes = [speaker.stats.refreshes] + [x.stats.refreshes for x in audience]
    out_of_order = sum(log.out_of_order for log in logs)
    if lost or duplicated or out_of_order:
        print(f"FAILED: {lost} frames lost, {duplicated} duplicated, {out_of_order} out of order", flush=True)
        return 1
    if min(refreshes) < 3:
        print(f"FAILED: a connection refreshed only {min(refreshes)} times (expected at least 3)", flush=True)
        return 1
    print("OK: nothing lost, nothing duplicated, every connection refreshed at least 3 times", flush=True)
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--hours", type=float, default=6.0, help="emulated hours of broadcast (default 6)")
    parser.add_argument(
        "--time-scale", type=float, default=300.0, help="emulated seconds per real second (300: 6 h in 72 s)"
    )
    parser.add_argument("--listeners", type=int, default=20)
    parser.add_argument(
        "--fps",
        type=float,
        default=3.0,
        help="audio frames per real second (3 leaves the emulator headroom on a busy two-core machine)",
    )
    parser.add_argument("--url", help="use a running stack instead of starting one")
    args = parser.parse_args()
    stack = None
    if args.url is None:
        print(f"starting the local stack (TIME_SCALE={args.time_scale:g})...", flush=True)
        stack = LocalStackProcess(time_scale=args.time_scale)  # the template's own limits
        url = stack.url
    else:
        url = args.url
    print(f"READY {url}", flush=True)
    try:
        status = asyncio.run(broadcast(url, args.hours, args.time_scale, args.listeners, args.fps))
    finally:
        if stack:
            stack.stop()
    sys.exit(status)


if __name__ == "__main__":
    main()
