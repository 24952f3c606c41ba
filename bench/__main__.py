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


def hall_table(sizes: list[int], progress: Any) -> str:
    """The hall at each size, on production defaults, then with lost $disconnects and faults (local_stack/hall.py)."""
    import asyncio

    from local_stack.hall import run_hall, table
    from local_stack.process import LocalStackProcess

    reports = []
    for listeners in sizes:
        for name, faults in (
            ("defaults", {}),
            (
                "5% $disconnect lost, 1% faults",
                {"LOCAL_STACK_LOST_DISCONNECTS": "0.05", "LOCAL_STACK_FAULT_RATE": "0.01"},
            ),
        ):
            progress(f"  hall of {listeners}: {name}")
            stack = LocalStackProcess(time_scale=300, extra_env={"POWERTOOLS_LOG_LEVEL": "ERROR", **faults})
            try:
                report = asyncio.run(run_hall(stack, listeners, cycles=3, time_scale=300, join_over=20))
                reports.append((f"{listeners}, {name}", report))
            finally:
                stack.stop()
    return table(reports)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--listeners", type=int, default=500)
    parser.add_argument("--sessions", type=int, default=100)
    parser.add_argument("--runs", type=int, default=5, help="cold-start runs per module (median)")
    # 100 is what make test asserts; 500 is the hall the issue asks for (docs/performance.md section 5).
    parser.add_argument("--hall", default="100,500", help="listeners in the hall scenario, comma-separated sizes")
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
    sizes = [int(size) for size in str(args.hall).split(",") if size.strip()]
    progress(f"5/6 the hall: {args.hall} listeners from one IP on the template's defaults")
    sections.append(("The hall", hall_table(sizes, progress)))
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
