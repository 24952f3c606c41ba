"""`make bench`: runs every benchmark, prints the tables with progress, writes bench/results/latest.md."""

from __future__ import annotations

import argparse
import datetime
import platform
import sys
import time
from pathlib import Path

from bench import calls, cold_start, cost, load

RESULTS = Path(__file__).parent / "results" / "latest.md"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--listeners", type=int, default=500)
    parser.add_argument("--sessions", type=int, default=100)
    parser.add_argument("--runs", type=int, default=5, help="cold-start runs per module (median)")
    args = parser.parse_args()
    started = time.monotonic()

    def progress(line: str) -> None:
        print(f"[{time.monotonic() - started:6.1f}s] {line}", flush=True)

    sections: list[tuple[str, str]] = []
    progress("1/4 AWS calls per operation (moto)")
    sections.append(("AWS calls per operation", calls.table(calls.count())))
    print(sections[-1][1], flush=True)
    progress("2/4 cold start (fresh interpreter per import)")
    sections.append(("Cold start: import time", cold_start.table(cold_start.measure(args.runs, progress))))
    print(sections[-1][1], flush=True)
    progress("3/4 load on the local stack")
    sections.append(("Load on the local stack", load.table(load.measure(args.listeners, args.sessions, progress))))
    print(sections[-1][1], flush=True)
    progress("4/4 cost model")
    sections.append(("Cost per 1,000 connection-hours", cost.table(cost.rows())))
    print(sections[-1][1], flush=True)

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
