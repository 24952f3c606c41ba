"""`make bench`: runs every benchmark, prints the tables with progress, writes bench/results/latest.md."""

from __future__ import annotations

import argparse
import datetime
import platform
import sys
import time
from pathlib import Path
from typing import Any

from bench import calls, cold_start, cost, fanout, load

RESULTS = Path(__file__).parent / "results" / "latest.md"


def hall_table(halls: list[tuple[int, float]], progress: Any) -> str:
    """Each (listeners, TIME_SCALE) hall on defaults, then with lost $disconnects and faults (local_stack/hall.py)."""
    import asyncio

    from local_stack.hall import ENVIRONMENT, run_hall, table
    from local_stack.process import LocalStackProcess

    reports = []
    for listeners, time_scale in halls:
        for name, faults in (
            ("defaults", {}),
            (
                "5% $disconnect lost, 1% faults",
                {"LOCAL_STACK_LOST_DISCONNECTS": "0.05", "LOCAL_STACK_FAULT_RATE": "0.01"},
            ),
        ):
            label = f"{listeners} at TIME_SCALE={time_scale:g}, {name}"
            progress(f"  hall of {label}")
            stack = LocalStackProcess(time_scale=time_scale, extra_env={**ENVIRONMENT, **faults})
            try:
                # Joins over 50 s: a QR code scanned over most of the minute the issue allows.
                report = asyncio.run(run_hall(stack, listeners, cycles=3, time_scale=time_scale, join_over=50))
                reports.append((label, report))
            finally:
                stack.stop()
    # Who lost what, where a row lost frames: enough to start from without running it again.
    details = [
        f"- {label}: "
        + "; ".join(report.lost_detail[:3])
        + (f" (and {len(report.lost_detail) - 3} more)" if len(report.lost_detail) > 3 else "")
        for label, report in reports
        if report.lost_detail
    ]
    return table(reports) + (
        "\n\nWho lost frames (the first three of each row):\n\n" + "\n".join(details) if details else ""
    )


def parse_halls(text: str) -> list[tuple[int, float]]:
    """ "100,500,500@60" -> [(100, 300), (500, 300), (500, 60)]: listeners, optionally @TIME_SCALE (300)."""
    halls = []
    for part in text.split(","):
        if part.strip():
            size, _, scale = part.strip().partition("@")
            halls.append((int(size), float(scale or 300)))
    return halls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--listeners", type=int, default=500)
    parser.add_argument("--sessions", type=int, default=100)
    parser.add_argument("--runs", type=int, default=5, help="cold-start runs per module (median)")
    # 100 is what make test asserts; 500 is the hall the issue asks for, which needs more cores than
    # two at TIME_SCALE=300; 500 at 60 has the refresh rate of 100 at 300, so it shows what 500
    # listeners do to joins, refreshes and counts apart from that (docs/performance.md section 5).
    parser.add_argument(
        "--hall", default="100,500,500@60", help="hall scenarios: listeners[@TIME_SCALE], comma-separated"
    )
    args = parser.parse_args()
    started = time.monotonic()

    def progress(line: str) -> None:
        print(f"[{time.monotonic() - started:6.1f}s] {line}", flush=True)

    sections: list[tuple[str, str]] = []
    progress("1/6 AWS calls per operation (moto)")
    sections.append(("AWS calls per operation", calls.table(calls.count())))
    print(sections[-1][1], flush=True)
    progress("2/6 cold start (fresh interpreter per import)")
    sections.append(("Cold start: import time", cold_start.table(cold_start.measure(args.runs, progress))))
    print(sections[-1][1], flush=True)
    progress("3/6 audio fan-out")
    fanned = fanout.measure(progress)
    sections.append(("Audio fan-out", fanout.table(fanned)))
    print(sections[-1][1], flush=True)
    progress("4/6 load on the local stack")
    sections.append(("Load on the local stack", load.table(load.measure(args.listeners, args.sessions, progress))))
    print(sections[-1][1], flush=True)
    progress(f"5/6 the hall: {args.hall} listeners from one IP on the template's defaults")
    sections.append(("The hall", hall_table(parse_halls(str(args.hall)), progress)))
    print(sections[-1][1], flush=True)
    progress("6/6 cost model")
    sections.append(("Cost per 1,000 connection-hours", cost.table(cost.rows())))
    sections.append(("Cost of audio per 1,000 listener-hours", cost.audio_table(fanout.cost_inputs(fanned))))
    print(sections[-2][1] + "\n\n" + sections[-1][1], flush=True)

    header = (
        f"# Benchmark results\n\nRun {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC on "
        f"{platform.machine()}, Python {platform.python_version()}, in {time.monotonic() - started:.0f} s. "
        "How to read these: docs/performance.md.\n"
    )
    body = "\n".join(f"\n## {title}\n\n{text}\n" for title, text in sections)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(header + body)
    progress(f"written to {RESULTS.relative_to(Path.cwd()) if RESULTS.is_relative_to(Path.cwd()) else RESULTS}")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
    main()
