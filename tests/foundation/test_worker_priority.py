"""A worker that consumes only `low` yields the CPU to the web and `high` (lower priority)."""

from __future__ import annotations

import os
from collections.abc import Callable

import psutil
import pytest

from tests.support.processes import Worker

pytestmark = [pytest.mark.integration]


def test_a_low_only_worker_and_its_pool_run_at_the_configured_niceness(
    start_worker: Callable[..., Worker],
) -> None:
    base = os.nice(0)  # workers start at the test run's own niceness
    # Given a worker for `low` alone and one for every queue
    low = start_worker("low", concurrency=2, WORKER_LOW_NICENESS="7")
    mixed = start_worker("high,default,low")

    # Then the low worker and all its pool processes are niced, the other worker is not
    low_processes = [psutil.Process(low.pid), *low.pool_children()]
    assert len(low_processes) == 3
    assert {process.nice() for process in low_processes} == {min(base + 7, 19)}
    mixed_processes = [psutil.Process(mixed.pid), *mixed.pool_children()]
    assert {process.nice() for process in mixed_processes} == {base}


def test_niceness_zero_leaves_the_low_worker_as_everyone_else(
    start_worker: Callable[..., Worker],
) -> None:
    low = start_worker("low", WORKER_LOW_NICENESS="0")
    assert {p.nice() for p in [psutil.Process(low.pid), *low.pool_children()]} == {os.nice(0)}
