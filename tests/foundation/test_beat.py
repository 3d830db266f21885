"""Periodic tasks run once per interval even with two beat processes (CONTRACT §5).

Real `celery beat` processes with the platform's scheduler, a real worker running
`tests.record_run` (which records each run's time in Redis), the test database and broker.
The leader lease is short here (2 s) so that takeovers happen quickly.
"""

from __future__ import annotations

import itertools
import json
import uuid
from collections.abc import Callable
from datetime import timedelta

import pytest
import redis
from django.conf import settings
from django.utils import timezone
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from tests.support.processes import Beat, PlatformProcess, process_env
from tests.support.redis_server import RedisServer
from tests.support.waiting import wait_until

LEASE_SECONDS = 2
LEADER = "beat: leader"
STANDBY = "beat: standby"


@pytest.fixture
def start_beat(
    transactional_db: None, broker: redis.Redis, processes: list[PlatformProcess]
) -> Callable[..., Beat]:
    """Start a real beat process on the test database and broker, with a short lease."""

    def start(scheduler: str = "", **env: str) -> Beat:
        env = {"BEAT_LEASE_SECONDS": str(LEASE_SECONDS), **env}
        beat = Beat(process_env(**env), scheduler, name=f"beat-{len(processes)}")
        processes.append(beat)
        return beat.start()

    return start


def periodic_task(every: int, *, due_now: bool = True) -> PeriodicTask:
    """A periodic `tests.record_run` every `every` seconds, recording under its own key."""
    interval, _ = IntervalSchedule.objects.get_or_create(
        every=every, period=IntervalSchedule.SECONDS
    )
    key = f"beat-runs-{uuid.uuid4().hex}"
    return PeriodicTask.objects.create(
        name=key,
        task="tests.record_run",
        interval=interval,
        args=json.dumps([key]),
        # Long ago: due at once instead of one interval after it was created.
        last_run_at=timezone.now() - timedelta(days=1) if due_now else None,
    )


def runs(task: PeriodicTask) -> list[float]:
    """When each run of `task` started, in order (seconds since the epoch)."""
    client = redis.Redis.from_url(settings.REDIS_URL)
    return [float(value) for value in client.lrange(task.name, 0, -1)]


def gaps(times: list[float]) -> list[float]:
    return [round(later - earlier, 3) for earlier, later in itertools.pairwise(times)]


def leader_of(beats: list[Beat]) -> Beat:
    [leader] = wait_until(
        lambda: [beat for beat in beats if LEADER in beat.log()], timeout=30, what="a leader"
    )
    return leader


def test_two_beats_send_each_run_once(start_worker, start_beat) -> None:
    # Given a task every second and two beat processes
    start_worker("default")
    task = periodic_task(every=1)
    beats = [start_beat(), start_beat()]

    # When it has run six times
    times = wait_until(lambda: len(runs(task)) >= 6 and runs(task), timeout=30, what="6 runs")

    # Then no two runs shared an interval, and only one beat sent them
    assert min(gaps(times)) > 0.5, gaps(times)
    leader = leader_of(beats)
    [standby] = [beat for beat in beats if beat is not leader]
    assert STANDBY in standby.log()
    assert standby.sent(task.name) == 0
    assert leader.sent(task.name) >= 6


def test_standby_takes_over_when_the_leader_dies_without_resending(
    start_worker, start_beat
) -> None:
    # Given a leader, a standby, and a task every 4 s that the leader has just sent
    start_worker("default")
    leader = start_beat()
    wait_until(lambda: LEADER in leader.log(), timeout=30, what="the first beat leads")
    standby = start_beat()
    wait_until(lambda: STANDBY in standby.log(), timeout=30, what="the second beat stands by")
    task = periodic_task(every=4)
    wait_until(lambda: runs(task), timeout=30, what="the first run")

    # When the leader is killed (no clean shutdown, its lease is left to expire)
    leader.kill()

    # Then the standby leads within about the lease time and runs go on, one per interval:
    # it starts from the run the old leader saved, and does not send that run again.
    wait_until(lambda: LEADER in standby.log(), timeout=LEASE_SECONDS + 15, what="takeover")
    times = wait_until(lambda: len(runs(task)) >= 2 and runs(task), timeout=30, what="2 runs")
    assert gaps(times)[0] > 3.0, gaps(times)
    assert standby.sent(task.name) >= 1


def test_a_stopped_leader_hands_over_at_once(start_beat) -> None:
    # Given a leader with a long lease and a standby
    leader = start_beat(BEAT_LEASE_SECONDS="60")
    wait_until(lambda: LEADER in leader.log(), timeout=30, what="the first beat leads")
    standby = start_beat(BEAT_LEASE_SECONDS="60")
    wait_until(lambda: STANDBY in standby.log(), timeout=30, what="the second beat stands by")

    # When the leader shuts down cleanly (SIGTERM)
    leader.stop()

    # Then it released the lease: the standby leads long before the lease would expire
    assert "released the leader lease" in leader.log()
    wait_until(lambda: LEADER in standby.log(), timeout=15, what="the standby leads")


def test_schedule_edits_reach_the_leader(start_worker, start_beat) -> None:
    # Given two beat processes sending a task every second
    start_worker("default")
    old = periodic_task(every=1)
    beats = [start_beat(), start_beat()]
    wait_until(lambda: len(runs(old)) >= 2, timeout=30, what="runs of the first task")
    leader = leader_of(beats)

    # When a task is added, as in the admin, it is sent too
    new = periodic_task(every=1, due_now=False)
    wait_until(lambda: len(runs(new)) >= 2, timeout=30, what="runs of the added task")

    # And when the first is disabled, the leader stops sending it
    changes = leader.log().count("Schedule changed")
    old.enabled = False
    old.save()
    wait_until(lambda: leader.log().count("Schedule changed") > changes, what="change seen")
    # Runs sent before the change have run once a later run of the other task has (one
    # worker, one queue, in order).
    after_change = len(runs(new))
    wait_until(lambda: len(runs(new)) > after_change, what="a run after the change")
    runs_of_old = len(runs(old))
    wait_until(lambda: len(runs(new)) >= after_change + 4, timeout=30, what="three more runs")
    assert len(runs(old)) == runs_of_old
    assert all(beat.sent(new.name) == 0 for beat in beats if beat is not leader)


def test_beat_survives_a_broker_outage(start_beat, private_redis: RedisServer) -> None:
    # Given a beat whose broker (and lease) is a Redis of the test's own
    task = periodic_task(every=1)
    beat = start_beat(REDIS_URL=private_redis.url)
    wait_until(lambda: beat.sent(task.name) >= 1, timeout=30, what="a first send")

    # When the broker goes away, beat says so and keeps running
    private_redis.stop()
    wait_until(lambda: "cannot reach the broker" in beat.log(), timeout=30, what="outage log")
    assert beat.alive()

    # Then it leads and sends again once the broker is back
    sent = beat.sent(task.name)
    private_redis.start()
    wait_until(lambda: "broker reachable again" in beat.log(), timeout=30, what="recovery log")
    wait_until(lambda: beat.sent(task.name) > sent, timeout=30, what="sends resume")
    assert beat.alive()
