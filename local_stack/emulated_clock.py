"""The local stack's clock, shared by its processes, and (when asked) slowed while the emulator is behind.

Every process of one local stack (the front door, the functions process with moto and the
timer's engine, each function's runtime) and a client on the same machine read one clock: epoch
seconds that run `rate` times real time from an anchor. Three doubles in a small file, mapped
into each process, written by one process only (a sequence number makes a read consistent).

Why it may slow down: `TIME_SCALE=300` asks the emulator for 300 times AWS's pace on one
machine. A hall of 500 listeners refreshing every 100 emulated minutes is then 25 refreshes a
real second, a dozen AWS calls each, beside 1,000 audio posts a second: more than two cores
hold. On AWS none of that waits; in the emulator it queues, and a queue of seconds is tens of
emulated minutes there: connections reach their 2-hour cut before their refresh has run, and
frames come later than any client waits for them. With `LOCAL_STACK_TIME_DILATION=on` the
functions process's `Governor` watches its own backlog (how long requests wait for moto, how
late its own timer wakes) and lowers the rate while the backlog is above a bound, and raises it
back to `TIME_SCALE` once the backlog is gone. Emulated time then never counts the emulator's
own backlog against a connection, a timer or a client, and every duration stays what AWS
gives, in the clock's seconds. Off (the default), the clock runs at `TIME_SCALE` always, as it
always did. What a run got is in `GET /_local/clock` (`rate`, `slowest`, the emulated seconds
that went by): a run reports it beside its results.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import struct
import threading
import time
from collections.abc import Callable

ENV_VARIABLE = "LOCAL_STACK_TIME_DILATION"
_SEQUENCE = struct.Struct("<q")  # at offset 0: odd while a write is under way
_VALUES = struct.Struct("<ddddd")  # at offset 8: anchor real, anchor emulated, rate, slowest rate, fastest (TIME_SCALE)
_BACKLOG = struct.Struct("<d")  # after the values, one per reporting process: its backlog, real seconds
REPORTERS = ("front door",)  # processes that report a backlog besides the governor's own
_SIZE = _SEQUENCE.size + _VALUES.size + _BACKLOG.size * len(REPORTERS)


def dilation_by_environment() -> bool:
    """Whether the clock may slow down under load (`LOCAL_STACK_TIME_DILATION=on`; off by default)."""
    return os.environ.get(ENV_VARIABLE, "off").strip().lower() in ("on", "1", "true", "yes")


class SharedClock:
    """Emulated epoch seconds, read from (and, by one process, written to) the file at `path`."""

    def __init__(self, path: str) -> None:
        self.path = path
        with open(path, "r+b") as file:
            self._map = mmap.mmap(file.fileno(), _SIZE)
        self._write_lock = threading.Lock()

    @classmethod
    def create(cls, path: str, *, started_at: float, scale: float) -> SharedClock:
        """A new clock at `path` reading `started_at` now and running `scale` times real time."""
        with open(path, "wb") as file:
            file.write(
                _SEQUENCE.pack(0)
                + _VALUES.pack(started_at, started_at, scale, scale, scale)
                + _BACKLOG.pack(0.0) * len(REPORTERS)
            )
        return cls(path)

    def _read(self) -> tuple[float, ...]:
        while True:
            (before,) = _SEQUENCE.unpack_from(self._map)
            values = _VALUES.unpack_from(self._map, _SEQUENCE.size)
            (after,) = _SEQUENCE.unpack_from(self._map)
            if before == after and before % 2 == 0:
                return values
            time.sleep(0)  # a write is under way: it takes microseconds

    def now(self) -> float:
        """Emulated epoch seconds."""
        real, emulated, rate, _, _ = self._read()
        return emulated + (time.time() - real) * rate

    def rate(self) -> float:
        """Emulated seconds per real second, now."""
        return self._read()[2]

    def slowest(self) -> float:
        """The lowest rate the clock has run at so far."""
        return self._read()[3]

    def fastest(self) -> float:
        """The rate the clock never exceeds (the stack's TIME_SCALE)."""
        return self._read()[4]

    def real_step(self, emulated_seconds: float) -> float:
        """Real seconds to wait before looking again at a duration still to go on this clock.

        Never past its end at the fastest pace, and at most a quarter of a second past it
        otherwise: a wait worked out at a slow pace must not outlast the clock's speeding up
        again (a hundred emulated minutes at a rate of 15 are 400 real seconds, 20 at 300)."""
        _, _, rate, _, fastest = self._read()
        return max(emulated_seconds / fastest, min(emulated_seconds / rate, 0.25))

    def sleep_until(self, emulated: float, wait: Callable[[float], object] = time.sleep) -> None:
        """Wait until the clock reads `emulated`; `wait(real seconds)` returning true stops early (an event's wait)."""
        while (remaining := emulated - self.now()) > 0:
            if wait(self.real_step(remaining)):
                return

    def set_rate(self, rate: float) -> None:
        """Run at `rate` from now on; the time read does not jump (only its pace changes)."""
        with self._write_lock:
            now_real = time.time()
            (sequence,) = _SEQUENCE.unpack_from(self._map)
            real, emulated, old_rate, slowest, fastest = _VALUES.unpack_from(self._map, _SEQUENCE.size)
            rate = min(rate, fastest)
            anchor = emulated + (now_real - real) * old_rate
            _SEQUENCE.pack_into(self._map, 0, sequence + 1)
            _VALUES.pack_into(self._map, _SEQUENCE.size, now_real, anchor, rate, min(slowest, rate), fastest)
            _SEQUENCE.pack_into(self._map, 0, sequence + 2)

    def report_backlog(self, reporter: str, seconds: float) -> None:
        """How far behind `reporter` (one of REPORTERS) is now, for the governor (one aligned double: no lock)."""
        _BACKLOG.pack_into(self._map, self._backlog_offset(reporter), seconds)

    def backlog(self, reporter: str) -> float:
        return _BACKLOG.unpack_from(self._map, self._backlog_offset(reporter))[0]

    @staticmethod
    def _backlog_offset(reporter: str) -> int:
        return _SEQUENCE.size + _VALUES.size + _BACKLOG.size * REPORTERS.index(reporter)

    def close(self) -> None:
        with contextlib.suppress(BufferError, ValueError):
            self._map.close()


def machine_busy() -> Callable[[], float]:
    """A reader of the share of this machine's CPU time in use since its last call (Linux /proc/stat; 0 elsewhere)."""
    last: list[tuple[int, int]] = []

    def busy() -> float:
        try:
            with open("/proc/stat") as stat:
                fields = [int(x) for x in stat.readline().split()[1:]]
        except (OSError, ValueError):
            return 0.0
        idle, total = fields[3] + (fields[4] if len(fields) > 4 else 0), sum(fields)
        previous = last[0] if last else (idle, total)
        last[:] = [(idle, total)]
        spent = total - previous[1]
        return 1.0 - (idle - previous[0]) / spent if spent > 0 else 0.0

    return busy


class Governor:
    """Lowers the clock's rate while the emulator is behind, raises it back once it is not.

    Behind: `backlog()` (real seconds a queue has waited) above `high`, or the machine's cores
    busier than `busy_high` (smoothed): on a full machine every process queues for a core, the
    frames to the listeners included, whatever each queue says. Every `every` seconds the rate
    then goes down by `down` (at most to `scale * floor`); with the backlog below `low` and the
    cores below `busy_low` it goes back up by `up` (at most to `scale`). Its own wake-up's
    lateness counts as backlog too.
    """

    def __init__(
        self,
        clock: SharedClock,
        scale: float,
        backlog: Callable[[], float],
        *,
        every: float = 0.1,
        high: float = 0.25,
        low: float = 0.1,
        down: float = 0.8,
        up: float = 1.05,
        floor: float = 0.1,
        busy: Callable[[], float] | None = None,
        busy_high: float = 0.9,
        busy_low: float = 0.8,
    ) -> None:
        self.clock, self.scale, self.backlog = clock, scale, backlog
        self.every, self.high, self.low, self.down, self.up, self.floor = every, high, low, down, up, floor
        self.busy, self.busy_high, self.busy_low = busy, busy_high, busy_low
        self._busy = 0.0  # smoothed over about a second
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="clock-governor", daemon=True)

    def start(self) -> Governor:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopped.set()

    def step(self, late: float, busy: float = 0.0) -> float:
        """One adjustment for a backlog of `late` real seconds and cores `busy` (0 to 1); the new rate."""
        rate = self.clock.rate()
        if late > self.high or busy > self.busy_high:
            rate = max(self.scale * self.floor, rate * self.down)
        elif late < self.low and busy < self.busy_low:
            rate = min(self.scale, rate * self.up)
        else:
            return rate
        if rate != self.clock.rate():
            self.clock.set_rate(rate)
        return rate

    def _run(self) -> None:
        while True:
            planned = time.monotonic() + self.every
            if self._stopped.wait(self.every):
                return
            if self.busy is not None:
                self._busy = 0.8 * self._busy + 0.2 * self.busy()
            self.step(max(self.backlog(), time.monotonic() - planned), self._busy)
