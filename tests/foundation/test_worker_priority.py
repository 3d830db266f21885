"""A worker that consumes only `low` yields the CPU to the web and `high` (lower priority)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from tests.support.processes import Worker

BASE_DIR = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.integration]

_AUTOGROUP_SWITCH = Path("/proc/sys/kernel/sched_autogroup_enabled")
# Kernels that share the CPU between sessions first (Debian's and Ubuntu's by default).
AUTOGROUPS = _AUTOGROUP_SWITCH.exists() and _AUTOGROUP_SWITCH.read_text().strip() == "1"
_PRINT_OWN_AUTOGROUP = "import syncplatform; print(open('/proc/self/autogroup').read())"


def autogroup_niceness(pid: int) -> int:
    return int(Path(f"/proc/{pid}/autogroup").read_text().split()[-1])  # "/autogroup-9 nice 7"


def session_niceness_of_platform_process(*, leader_niced: bool) -> str:
    """Start a platform process at niceness +7 as the child of a shell that leads a new
    session (as gunicorn's workers are children of its master); return the niceness of
    that session's group. The session is always a new one: the test run's own session
    may be the kernel's default group, which has no niceness to read."""
    if not AUTOGROUPS:
        pytest.skip("this kernel does not group processes by session (no autogroups)")
    platform_process = f'{sys.executable} -c "{_PRINT_OWN_AUTOGROUP}"'
    if leader_niced:  # the whole session started niced, as honcho starts a niced process
        command = ["nice", "-n", "7", "sh", "-c", f"{platform_process}; exit $?"]
    else:  # an operator's `nice -n 7 …` typed in a terminal: the leader is not niced
        command = ["sh", "-c", f"nice -n 7 {platform_process}; exit $?"]
    # `; exit $?` keeps sh alive as the leader (no exec) and passes the child's status on
    started = subprocess.run(
        command, capture_output=True, text=True, start_new_session=True, cwd=BASE_DIR
    )
    assert started.returncode == 0, started.stderr
    return started.stdout.split()[-1]


def test_a_niced_session_of_platform_processes_gets_that_niceness_as_a_group() -> None:
    # When a platform process starts as make run starts it: in a session of its own, niced
    niceness = session_niceness_of_platform_process(leader_niced=True)
    # Then its session runs at that niceness too, so the scheduler lets it count
    assert niceness == str(min(os.nice(0) + 7, 19))


def test_a_niced_process_in_someone_elses_session_leaves_that_session_alone() -> None:
    # When an operator types `nice -n 7 …` in a terminal (the process is not its session's leader)
    niceness = session_niceness_of_platform_process(leader_niced=False)
    # Then the terminal's session keeps the niceness a new session starts with
    assert niceness == "0"


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
    # And where the kernel shares the CPU by session first (autogroups), the low worker's
    # session has the same niceness, or the scheduler would not let it count
    if AUTOGROUPS:
        assert autogroup_niceness(low.pid) == min(base + 7, 19)
        assert autogroup_niceness(mixed.pid) == base


def test_niceness_zero_leaves_the_low_worker_as_everyone_else(
    start_worker: Callable[..., Worker],
) -> None:
    low = start_worker("low", WORKER_LOW_NICENESS="0")
    assert {p.nice() for p in [psutil.Process(low.pid), *low.pool_children()]} == {os.nice(0)}
