"""The hall scenario (local_stack/hall.py) on the template's production defaults and AWS's failure modes."""

from __future__ import annotations

import asyncio

import pytest

from local_stack import hall
from local_stack.hall import run_hall
from local_stack.process import LocalStackProcess

pytestmark = pytest.mark.integration

# A smaller hall than make bench's 500, as issue 11 allows: 100 listeners on one IP.
LISTENERS = 100
TIME_SCALE = 300  # 100 minutes in 20 s


@pytest.mark.timeout(480)  # one run is about a minute and a half: joins, then three refresh cycles
@pytest.mark.parametrize(
    "faults",
    [
        {},
        {"LOCAL_STACK_LOST_DISCONNECTS": "0.05", "LOCAL_STACK_FAULT_RATE": "0.01"},
    ],
    ids=["defaults", "lost-disconnects-and-throttling"],
)
def test_hall_one_ip_joins_lives_through_three_refreshes_and_loses_nothing(faults: dict[str, str]) -> None:
    # GIVEN the template's defaults (no PARAMS: rate limits on, grace period on), one source IP,
    # transaction conflicts and throttling emulated (and, in the second run, lost $disconnects
    # and 1% injected faults)
    stack = LocalStackProcess(time_scale=TIME_SCALE, extra_env={**hall.ENVIRONMENT, **faults})
    try:
        report = asyncio.run(run_hall(stack, LISTENERS, cycles=3, time_scale=TIME_SCALE, join_over=20))
    finally:
        stack.stop()
    # THEN everyone got in within the minute, refreshed three times, every refresh handshake at
    # its first attempt, nothing answered INTERNAL_ERROR, and no frame was lost
    assert report.joined == LISTENERS
    assert report.percentile(1.0) < 60
    assert report.refreshes_min >= 3
    assert report.handshake_retries == 0
    assert report.rate_limited == 0
    assert report.internal_errors == 0
    assert report.lambda_throttled == 0  # every function within its reserved concurrency
    assert (report.lost, report.duplicated) == (0, 0), report.lost_detail
    # AND after everyone left, the counts converged to the live records: none
    assert (report.listener_count, report.listener_records) == (0, 0), report.left_behind
    # AND the speaker was still on the air to end the session
    assert report.speaker_end_error == ""
    assert report.seconds_until_counts_right >= 0
