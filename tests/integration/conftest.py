"""Local stacks shared by the integration tests, on the template's own limits: real time and TIME_SCALE=600."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from local_stack.process import LocalStackProcess


@pytest.fixture(scope="session")
def stack() -> Iterator[LocalStackProcess]:
    running = LocalStackProcess(time_scale=1)
    yield running
    running.stop()


@pytest.fixture(scope="session")
def fast_stack() -> Iterator[LocalStackProcess]:
    """100 minutes in 10 s, the 2-hour cut at 12 s, the idle timeout at 1 s."""
    running = LocalStackProcess(time_scale=600)
    yield running
    running.stop()
