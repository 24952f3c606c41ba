"""The client's reorder buffer: every seq once, in order, gaps reported and never hidden."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broadcast_client import ReorderBuffer, Timing


def test_reorder_in_order_frames_delivered_at_once() -> None:
    buffer: ReorderBuffer[str] = ReorderBuffer()
    assert buffer.push(0, "a") == [(0, "a")]
    assert buffer.push(1, "b") == [(1, "b")]
    assert buffer.stats.delivered == 2


def test_reorder_out_of_order_held_until_the_gap_fills() -> None:
    buffer: ReorderBuffer[str] = ReorderBuffer(first_seq=0)
    assert buffer.push(1, "b") == []
    assert buffer.push(2, "c") == []
    assert buffer.push(0, "a") == [(0, "a"), (1, "b"), (2, "c")]
    assert buffer.stats.reordered == 2


def test_reorder_duplicates_dropped_and_counted() -> None:
    buffer: ReorderBuffer[str] = ReorderBuffer()
    buffer.push(5, "x")
    assert buffer.push(5, "x") == []
    buffer.push(7, "z")
    assert buffer.push(7, "z") == []
    assert buffer.stats.duplicates == 2


def test_reorder_first_frame_sets_the_start() -> None:
    buffer: ReorderBuffer[str] = ReorderBuffer()
    assert buffer.push(40, "late joiner") == [(40, "late joiner")]
    assert buffer.push(39, "before we joined") == []


def test_reorder_skip_gap_reports_the_missing_range() -> None:
    buffer: ReorderBuffer[str] = ReorderBuffer(first_seq=0)
    buffer.push(0, "a")
    buffer.push(4, "e")
    assert buffer.skip_gap() == [(4, "e")]
    assert buffer.stats.gaps == [(1, 3)]
    assert buffer.stats.lost == 3
    assert buffer.push(2, "too late") == []


def test_reorder_overflow_gives_up_on_the_gap() -> None:
    buffer: ReorderBuffer[int] = ReorderBuffer(capacity=3, first_seq=0)
    for seq in (1, 2, 3):
        assert buffer.push(seq, seq) == []
    assert buffer.push(4, 4) == [(1, 1), (2, 2), (3, 3), (4, 4)]
    assert buffer.stats.gaps == [(0, 0)]


def test_reorder_capacity_must_be_positive() -> None:
    with pytest.raises(ValueError, match="capacity"):
        ReorderBuffer(capacity=0)


@settings(max_examples=300, deadline=None)
@given(
    frames=st.integers(min_value=1, max_value=200),
    duplicate_share=st.floats(min_value=0, max_value=1),
    window=st.integers(min_value=1, max_value=20),
    seed=st.integers(),
)
def test_reorder_property_each_seq_once_in_order(frames: int, duplicate_share: float, window: int, seed: int) -> None:
    # GIVEN every frame at least once, some twice (old and new connection), shuffled within a window
    rng = random.Random(seed)
    arrivals = [s for s in range(frames) for _ in range(2 if rng.random() < duplicate_share else 1)]
    arrivals.sort(key=lambda s: s + rng.uniform(0, window))
    buffer: ReorderBuffer[int] = ReorderBuffer(capacity=window * 4 + 2, first_seq=0)
    delivered = [seq for arrival in arrivals for seq, _ in buffer.push(arrival, arrival)]
    delivered += [seq for seq, _ in buffer.skip_gap()]
    # THEN each seq comes out exactly once, in order, and nothing is reported lost
    assert delivered == list(range(frames))
    assert buffer.stats.gaps == []
    assert buffer.stats.duplicates == len(arrivals) - frames


@settings(max_examples=200, deadline=None)
@given(received=st.sets(st.integers(min_value=0, max_value=300), min_size=1))
def test_reorder_property_gaps_account_for_every_missing_seq(received: set[int]) -> None:
    buffer: ReorderBuffer[int] = ReorderBuffer(capacity=1000, first_seq=0)
    delivered = [seq for s in sorted(received) for seq, _ in buffer.push(s, s)]
    while buffer.waiting:
        delivered += [seq for seq, _ in buffer.skip_gap()]
    assert delivered == sorted(received)
    assert buffer.stats.lost == max(received) + 1 - len(received)


def test_timing_scales_heartbeat_and_fallback() -> None:
    timing = Timing(time_scale=600)
    assert timing.heartbeat_every == pytest.approx(200 / 600)
    assert timing.fallback_after == pytest.approx(6600 / 600)
    assert Timing().fallback_after < Timing().max_connection


def test_reorder_hold_start_plays_from_the_lowest_frame_held() -> None:
    # The second frame overtakes the first (concurrent deliveries): without a hold the first would
    # be dropped as old; held, playing starts at it.
    buffer: ReorderBuffer[str] = ReorderBuffer(hold_start=True)
    assert buffer.push(8, "b") == []
    assert buffer.push(7, "a") == []
    assert buffer.push(8, "b") == []  # a duplicate while held
    assert buffer.begin() == [(7, "a"), (8, "b")]
    assert (buffer.stats.duplicates, buffer.stats.lost) == (1, 0)
    assert buffer.push(9, "c") == [(9, "c")]
    assert buffer.begin() == []  # only once


def test_reorder_hold_start_ends_when_more_than_capacity_wait() -> None:
    buffer: ReorderBuffer[int] = ReorderBuffer(capacity=2, hold_start=True)
    assert buffer.push(5, 5) == []
    assert buffer.push(6, 6) == []
    assert [seq for seq, _ in buffer.push(4, 4)] == [4, 5, 6]
    assert not buffer.holding
