"""Delivers each audio `seq` once and in order, whatever order and however often frames arrive."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass
class ReorderStats:
    """What the buffer saw: delivered frames, dropped duplicates, reordered arrivals, and gaps given up on."""

    delivered: int = 0
    duplicates: int = 0
    reordered: int = 0
    gaps: list[tuple[int, int]] = field(default_factory=list)

    @property
    def lost(self) -> int:
        """Frames given up on (the sum of the gaps' lengths)."""
        return sum(last - first + 1 for first, last in self.gaps)


class ReorderBuffer(Generic[T]):
    """A bounded reorder buffer keyed by sequence number.

    `push` returns the frames that became deliverable, in order. A missing frame holds later
    ones back until it arrives, until `skip_gap` is called (the owner's timeout), or until
    more than `capacity` frames wait; then the gap is recorded in `stats.gaps`, never hidden.
    The first frame seen sets where delivery starts (a listener may join mid-broadcast); with
    `hold_start`, frames are held until `begin()` and delivery starts at the lowest one held, so
    a first frame overtaken by the next one (concurrent deliveries) is not dropped as old.
    """

    def __init__(self, capacity: int = 512, first_seq: int | None = None, *, hold_start: bool = False) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self.next_seq = first_seq
        self.holding = hold_start and first_seq is None
        self.pending: dict[int, T] = {}
        self.stats = ReorderStats()

    def begin(self) -> list[tuple[int, T]]:
        """End the hold: delivery starts at the lowest frame held; returns what that releases."""
        self.holding = False
        if self.next_seq is None and self.pending:
            self.next_seq = min(self.pending)
            self.stats.reordered += sum(1 for seq in self.pending if seq != self.next_seq)
            return self._drain()
        return []

    def push(self, seq: int, item: T) -> list[tuple[int, T]]:
        """Accept one arrival; returns what can now be delivered, in sequence order."""
        if self.next_seq is None and self.holding:
            if seq in self.pending:
                self.stats.duplicates += 1
            self.pending[seq] = item
            return self.begin() if len(self.pending) > self.capacity else []
        if self.next_seq is None:
            self.next_seq = seq
        if seq < self.next_seq or seq in self.pending:
            self.stats.duplicates += 1
            return []
        if seq != self.next_seq:
            self.stats.reordered += 1
        self.pending[seq] = item
        ready = self._drain()
        while len(self.pending) > self.capacity:
            ready += self.skip_gap()
        return ready

    def skip_gap(self) -> list[tuple[int, T]]:
        """Give up on the missing frames before the oldest waiting one; returns what that releases."""
        if not self.pending or self.next_seq is None:
            return []
        oldest = min(self.pending)
        if oldest > self.next_seq:
            self.stats.gaps.append((self.next_seq, oldest - 1))
            self.next_seq = oldest
        return self._drain()

    def _drain(self) -> list[tuple[int, T]]:
        ready: list[tuple[int, T]] = []
        assert self.next_seq is not None
        while self.next_seq in self.pending:
            ready.append((self.next_seq, self.pending.pop(self.next_seq)))
            self.next_seq += 1
        self.stats.delivered += len(ready)
        return ready

    @property
    def waiting(self) -> int:
        """Frames held back behind a gap."""
        return len(self.pending)
