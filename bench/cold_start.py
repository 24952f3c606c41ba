"""Cold start: each handler module's import time in a fresh interpreter, as a ratio to `import boto3`."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HANDLERS = sorted(p.stem for p in (ROOT / "src/broadcast/handlers").glob("*.py") if p.stem != "__init__")
PROBE = "import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"


def _once(module: str) -> float:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "PYTHONDONTWRITEBYTECODE": "0"}
    out = subprocess.run(
        [sys.executable, "-c", PROBE.format(module=module)], env=env, capture_output=True, text=True, check=True
    )
    return float(out.stdout.strip())


def measure(runs: int = 5, progress=print) -> list[tuple[str, float, float]]:
    """(module, median seconds, ratio to import boto3), baseline first."""
    _once("boto3")  # warm the file system cache and .pyc files before timing anything
    baseline = statistics.median(_once("boto3") for _ in range(runs))
    rows = [("boto3 (baseline)", baseline, 1.0)]
    for name in HANDLERS:
        module = f"broadcast.handlers.{name}"
        _once(module)
        median = statistics.median(_once(module) for _ in range(runs))
        rows.append((name, median, median / baseline))
        progress(f"  cold start: {name:<20} {median * 1000:6.0f} ms  ({median / baseline:.2f}x boto3)")
    return rows


def table(rows: list[tuple[str, float, float]]) -> str:
    lines = ["| handler module | import (median) | ratio to `import boto3` |", "|---|---|---|"]
    lines += [f"| {name} | {seconds * 1000:.0f} ms | {ratio:.2f} |" for name, seconds, ratio in rows]
    return "\n".join(lines)
