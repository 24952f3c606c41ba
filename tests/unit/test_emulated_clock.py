"""The local stack's shared clock: one time for every process, slowed only while the emulator is behind."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from broadcast_client import Timing
from local_stack.emulated_clock import Governor, SharedClock


@pytest.fixture
def clock(tmp_path: Path) -> SharedClock:
    return SharedClock.create(str(tmp_path / "clock"), started_at=time.time(), scale=300)


def test_every_reader_of_the_file_reads_the_same_clock(clock: SharedClock) -> None:
    other = SharedClock(clock.path)  # what another process maps
    assert abs(other.now() - clock.now()) < 0.5  # 300 emulated s per real s: a few ms apart at most
    clock.set_rate(30)
    assert other.rate() == 30


def test_a_new_rate_changes_the_pace_not_the_time(clock: SharedClock) -> None:
    before = clock.now()
    clock.set_rate(3)
    after = clock.now()
    assert before <= after < before + 1  # no jump either way
    time.sleep(0.1)
    assert 0.25 < clock.now() - after < 0.6  # three seconds a second now
    assert (clock.rate(), clock.slowest(), clock.fastest()) == (3, 3, 300)


def test_the_clock_never_runs_faster_than_its_scale(clock: SharedClock) -> None:
    clock.set_rate(10_000)
    assert clock.rate() == 300


def test_a_wait_worked_out_at_a_slow_pace_does_not_outlast_its_speeding_up(clock: SharedClock) -> None:
    clock.set_rate(15)
    # 100 emulated minutes at 15 a second are 400 s: the step is a quarter of a second at most
    assert clock.real_step(6000) == pytest.approx(6000 / 300)  # never past the end at the fastest pace
    assert clock.real_step(60) == 0.25
    clock.set_rate(300)
    assert clock.real_step(60) == pytest.approx(0.2)


def test_sleep_until_ends_on_the_clock_while_it_slows_and_speeds_up(clock: SharedClock) -> None:
    target = clock.now() + 60  # 0.2 real s at 300
    clock.set_rate(100)
    threading.Timer(0.2, clock.set_rate, args=(300,)).start()
    started = time.monotonic()
    clock.sleep_until(target)
    waited = time.monotonic() - started
    assert clock.now() >= target
    assert 0.2 <= waited < 0.6  # longer than at 300 (0.2 s), not what 100 alone would take (0.6 s)


def test_sleep_until_stops_when_its_wait_says_so(clock: SharedClock) -> None:
    stopped = threading.Event()
    stopped.set()  # an execution stopped meanwhile: moto's Wait state ends there
    started = time.monotonic()
    clock.sleep_until(clock.now() + 6000, wait=stopped.wait)
    assert time.monotonic() - started < 0.1


def test_the_governor_slows_the_clock_while_behind_and_gives_the_pace_back(clock: SharedClock) -> None:
    governor = Governor(clock, 300, lambda: 0.0)
    assert governor.step(late=1.0) == pytest.approx(240)
    assert governor.step(late=0.0, busy=0.95) == pytest.approx(192)  # a full machine is behind too
    assert governor.step(late=0.2) == pytest.approx(192)  # between the bounds: hold
    assert governor.step(late=0.0, busy=0.85) == pytest.approx(192)
    for _ in range(50):
        governor.step(late=2.0)
    assert clock.rate() == pytest.approx(30)  # the floor: a tenth of TIME_SCALE
    for _ in range(100):
        governor.step(late=0.0, busy=0.5)
    assert clock.rate() == 300
    assert clock.slowest() == pytest.approx(30)


def test_backlogs_reported_by_other_processes_reach_the_governor(clock: SharedClock) -> None:
    SharedClock(clock.path).report_backlog("front door", 1.5)
    assert clock.backlog("front door") == 1.5


class _SlowingClock:
    """A service clock at `rate` emulated seconds per real second from `start`, set by the test."""

    def __init__(self, rate: float) -> None:
        self.value, self.pace = 1_000_000.0, rate

    def now(self) -> float:
        return self.value

    def rate(self) -> float:
        return self.pace


def test_client_timing_steps_never_outlast_the_service_clock_speeding_up() -> None:
    service = _SlowingClock(15)
    timing = Timing(time_scale=300, clock=service)
    assert timing.real(6000) == 20  # durations ahead: the soonest they can end (heartbeats, first fallback)
    assert timing.real_step(60) == 0.5  # at 15 that is 4 s; the clock is looked at again after 0.5 s
    assert timing.real_step(6000) == 20
    assert Timing(time_scale=300).real_step(60) == 0.2
