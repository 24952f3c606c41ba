"""Starts `python -m local_stack` on a free port, the way `make local` does, and reads its READY line."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

# Every client of a demo, benchmark or test connects from 127.0.0.1, so per-IP limits are lifted.
NO_IP_LIMITS = {"RateLimitJoinsPerIpPerMinute": "0", "RateLimitConnectsPerIpPerMinute": "0"}


def local_api(base: str, path: str, *, method: str = "GET", timeout: float = 30) -> Any:
    """A local-only endpoint (`/_local/...`, server.py) of the stack at `base` (http://host:port): its JSON or None."""
    import json
    import urllib.request

    request = urllib.request.Request(f"{base}{path}", method=method)  # noqa: S310 - our own stack on loopback
    with urllib.request.urlopen(request, timeout=timeout) as answer:  # noqa: S310 - our own stack on loopback
        body = answer.read()
    return json.loads(body) if body.strip() else None


class LocalStackProcess:
    """A running local stack; `url` is what it printed after READY."""

    def __init__(
        self,
        *,
        time_scale: float = 1.0,
        template: Path | None = None,
        extra_env: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
        seed: bool = False,
        env_file: Path | None = None,
    ) -> None:
        cmd = [sys.executable, "-m", "local_stack", "--port", "0", "--time-scale", str(time_scale)]
        if seed:
            cmd.append("--seed")
        if env_file is not None:
            cmd += ["--env-file", str(env_file)]
        for name, value in (params or {}).items():
            cmd += ["--param", f"{name}={value}"]
        if template is not None:
            cmd += ["--template", str(template)]
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **(extra_env or {})}
        # The log goes to a file, not a pipe: a pipe that this (busy) process drains late fills
        # up, and the emulator's every print, on its event loop too, would wait for it.
        self._log = tempfile.NamedTemporaryFile(prefix="local-stack-", suffix=".log", delete=False)  # noqa: SIM115
        self.process = subprocess.Popen(  # noqa: S603 - our own module
            cmd, cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT
        )
        self._kept: list[str] | None = None  # the log's lines once stopped
        self.url = self._wait_ready()

    @property
    def lines(self) -> list[str]:
        """Every line the emulator has printed so far."""
        if self._kept is not None:
            return self._kept
        with open(self._log.name, encoding="utf-8", errors="replace") as log:
            return log.readlines()

    def _wait_ready(self, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.lines:
                if line.startswith("READY "):
                    return line.split(" ", 1)[1].strip()
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("local stack did not become ready:\n" + "".join(self.lines[-40:]))

    @property
    def management_endpoint(self) -> str:
        return self.url.replace("ws://", "http://")

    def management_client(self) -> Any:
        """A boto3 apigatewaymanagementapi client for this stack's @connections API."""
        import boto3

        return boto3.client(
            "apigatewaymanagementapi",
            endpoint_url=self.management_endpoint,
            region_name="us-east-1",
            aws_access_key_id="local",
            aws_secret_access_key="local",  # noqa: S106 - the emulator checks no credentials
        )

    def local_api(self, path: str, *, method: str = "GET") -> Any:
        """A local-only endpoint of this stack (`/_local/...`, server.py): its JSON or None."""
        return local_api(self.url.replace("ws://", "http://").rsplit("/", 1)[0], path, method=method)

    def table_items(self, logical_id: str) -> list[dict[str, Any]]:
        """Every item of a template table (`/_local/tables`), as plain JSON."""
        return self.local_api(f"/_local/tables/{logical_id}")["items"]

    def cpu_seconds(self) -> dict[str, float]:
        """CPU seconds used so far by the front door and by the functions process (Linux's /proc; {} elsewhere)."""
        found: dict[str, float] = {}
        pids = {"front": self.process.pid}
        children = f"/proc/{self.process.pid}/task/{self.process.pid}/children"
        with contextlib.suppress(OSError), open(children) as listed:
            for child in listed.read().split()[:1]:
                pids["functions"] = int(child)
        for name, pid in pids.items():
            with contextlib.suppress(OSError, IndexError, ValueError):
                with open(f"/proc/{pid}/stat") as stat:
                    fields = stat.read().rsplit(")", 1)[1].split()
                found[name] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return found

    def log_lines(self, needle: str) -> list[str]:
        """The emulator's own log lines (route, connection, outcome) that contain `needle`."""
        return [line for line in list(self.lines) if needle in line and not line.startswith("ACCESS ")]

    def access_log(self) -> list[dict[str, str]]:
        """The stage access-log lines the emulator wrote, parsed."""
        import json

        return [json.loads(line.split(" ", 1)[1]) for line in list(self.lines) if line.startswith("ACCESS ")]

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._kept is None:
            self._kept = self.lines
            self._log.close()
            with contextlib.suppress(OSError):
                os.unlink(self._log.name)
        return self.process.returncode
