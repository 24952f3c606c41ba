"""Cold start: each handler module's import time in a fresh interpreter, as a ratio to `import boto3`."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HANDLERS = sorted(p.stem for p in (ROOT / "src/broadcast/handlers").glob("*.py") if p.stem != "__init__")
# The probe imports the module as Lambda's init phase does: the decorators (tracer included) run at import.
PROBE = "import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"


def _function_env() -> dict[str, dict[str, str]]:
    """Handler module -> the literal environment variables template.yaml gives its function."""
    from local_stack import template as cfn

    template = cfn.load()
    shared = template.get("Globals", {}).get("Function", {}).get("Environment", {}).get("Variables", {})
    found = {}
    for props in cfn.resources_of(template, "AWS::Serverless::Function").values():
        variables = {**shared, **props.get("Environment", {}).get("Variables", {})}
        module = props["Handler"].rsplit(".", 1)[0]
        found[module] = {k: v for k, v in variables.items() if isinstance(v, str)}
    return found


def _once(module: str, extra: dict[str, str] | None = None) -> float:
    env = {**os.environ, **(extra or {}), "PYTHONPATH": str(ROOT / "src"), "PYTHONDONTWRITEBYTECODE": "0"}
    out = subprocess.run(
        [sys.executable, "-c", PROBE.format(module=module)], env=env, capture_output=True, text=True, check=True
    )
    return float(out.stdout.strip())


def measure(runs: int = 5, progress=print) -> list[tuple[str, float, float]]:
    """(module, median seconds, ratio to import boto3), baseline first.

    Each module's runs alternate with runs of `import boto3`, and its ratio is to the baseline
    measured alongside it: a machine that slows down for a while (another process, a burst of
    I/O) slows both sides of the ratio, not one module's figure.
    """
    _once("boto3")  # warm the file system cache and .pyc files before timing anything
    environments = _function_env()
    baselines: list[float] = []
    rows: list[tuple[str, float, float]] = []
    for name in HANDLERS:
        module = f"broadcast.handlers.{name}"
        env = environments.get(module, {})  # as deployed: e.g. tracing off where the template says so
        _once(module, env)
        mine, theirs = [], []
        for _ in range(runs):
            theirs.append(_once("boto3"))
            mine.append(_once(module, env))
        median, base = statistics.median(mine), statistics.median(theirs)
        baselines += theirs
        rows.append((name, median, median / base))
        progress(f"  cold start: {name:<20} {median * 1000:6.0f} ms  ({median / base:.2f}x boto3 beside it)")
    return [("boto3 (baseline)", statistics.median(baselines), 1.0), *rows]


def table(rows: list[tuple[str, float, float]]) -> str:
    lines = ["| handler module | import (median) | ratio to `import boto3` (measured beside it) |", "|---|---|---|"]
    lines += [f"| {name} | {seconds * 1000:.0f} ms | {ratio:.2f} |" for name, seconds, ratio in rows]
    return "\n".join(lines)
