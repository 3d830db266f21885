"""The outbox: work recorded in a transaction is published exactly when, and only if, it commits.

Real database, real broker, real relay and worker processes.
"""

from __future__ import annotations

import json

import pytest
from django.db import connection, transaction
from django_celery_results.models import TaskResult

from syncplatform.outbox.models import OutboxMessage
from syncplatform.outbox.relay import Relay, relay_once
from syncplatform.outbox.services import outbox_enqueue
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration


def enqueue_pings(count: int, queue: str = "default", prefix: str = "ping") -> list[str]:
    with transaction.atomic():
        return [
            outbox_enqueue(
                task_name="platform.ping_queue",
                kwargs={"token": f"{prefix}-{i}"},
                queue=queue,
                dedup_key=f"{prefix}:{i}",
            ).task_id
            for i in range(count)
        ]


def queued_task_ids(broker, queue: str = "default") -> list[str]:
    return [json.loads(raw)["headers"]["id"] for raw in broker.lrange(queue, 0, -1)]


def unpublished() -> int:
    return OutboxMessage.objects.filter(published_at__isnull=True).count()


def test_rolled_back_work_is_never_published(transactional_db, broker, settings):
    # Given the fast path on, and a transaction that records work and then fails
    settings.OUTBOX_FAST_PATH = True
    settings.OUTBOX_RELAY_GRACE_SECONDS = 0

    def record_then_fail() -> None:
        with transaction.atomic():
            outbox_enqueue(task_name="platform.ping_queue", kwargs={"token": "x"})
            raise RuntimeError("the business write failed")

    with pytest.raises(RuntimeError):
        record_then_fail()
    # When the relay runs too
    relay_once()
    # Then no row survives and nothing reached the broker
    assert OutboxMessage.objects.count() == 0
    assert broker.llen("default") == 0


def test_committed_work_is_published_after_commit_and_marked(transactional_db, broker, settings):
    # Given the fast path on
    settings.OUTBOX_FAST_PATH = True
    # When work is recorded in a transaction
    with transaction.atomic():
        message = outbox_enqueue(task_name="platform.ping_queue", kwargs={"token": "x"})
        # Then nothing is published before the commit
        assert broker.llen("default") == 0
    # And right after it, the message is on its routed queue, with the row marked
    assert queued_task_ids(broker) == [message.task_id]
    message.refresh_from_db()
    assert message.published_at is not None


@pytest.mark.default_outbox
def test_committed_work_reaches_the_broker_at_once_with_the_default_settings(broker, start_relay):
    # Given the default settings, and a relay that would poll only once a minute
    relay = start_relay(OUTBOX_RELAY_POLL_SECONDS="60")
    wait_until(lambda: "outbox relay started" in relay.log(), timeout=30, what="relay up")
    # When work is committed, twice (the second time surely after the relay's first pass)
    for round_ in ("first", "second"):
        task_ids = enqueue_pings(3, prefix=round_)
        # Then it is on the broker within seconds: published by the request itself after
        # the commit (SQLite), or by the relay, which each commit wakes (PostgreSQL NOTIFY)
        wait_until(
            lambda ids=set(task_ids): ids <= set(queued_task_ids(broker)),
            timeout=10,
            what=f"the {round_} messages published",
        )
    wait_until(lambda: unpublished() == 0, timeout=10, what="the rows marked")


def test_a_burst_of_commits_wakes_the_relay_once(transactional_db, broker, settings):
    if connection.vendor != "postgresql":
        pytest.skip("commits wake the relay by NOTIFY on PostgreSQL; elsewhere it polls")
    settings.OUTBOX_FAST_PATH = False
    settings.OUTBOX_RELAY_GRACE_SECONDS = 0
    # Given a relay listening on this session (a session hears its own commits at once)
    relay = Relay()
    relay._listen()
    # When 50 requests commit work one after another while the relay is busy elsewhere
    for i in range(50):
        enqueue_pings(1, prefix=f"burst-{i}")
    # Then the relay's wait ends at once, and leaves no notification behind: one pass
    # publishes all 50 rows, and no empty pass follows for each other commit
    relay._wait_for_work(60)
    assert list(connection.connection.notifies(timeout=0)) == []
    assert relay_once() == 50


def test_tasks_are_routed_to_their_queue(transactional_db, broker, settings):
    settings.OUTBOX_FAST_PATH = False
    with transaction.atomic():
        high = outbox_enqueue(task_name="erp_connectors.apply_event", kwargs={"event_id": 1})
        low = outbox_enqueue(task_name="imports.process_batch", kwargs={"batch_id": 1})
        default = outbox_enqueue(task_name="notifications.send_notification", kwargs={"id": 1})
    assert (high.queue, default.queue, low.queue) == ("high", "default", "low")


def test_two_relays_never_publish_the_same_row(broker, settings, start_relay):
    # Given a backlog the fast path never saw
    settings.OUTBOX_FAST_PATH = False
    task_ids = enqueue_pings(400)
    # When two relays drain it at once, in small batches so they interleave
    start_relay(OUTBOX_RELAY_BATCH_SIZE="10")
    start_relay(OUTBOX_RELAY_BATCH_SIZE="10")
    wait_until(lambda: unpublished() == 0, timeout=60, what="backlog drained")
    # Then every row reached the broker exactly once
    published = queued_task_ids(broker)
    assert len(published) == 400
    assert sorted(published) == sorted(task_ids)


def test_relay_killed_between_publish_and_mark_loses_nothing(
    broker, settings, start_relay, start_worker
):
    # Given a relay that stalls after publishing, before marking the rows
    settings.OUTBOX_FAST_PATH = False
    task_ids = enqueue_pings(5)
    relay = start_relay("--stall-after-publish", "60")
    wait_until(lambda: broker.llen("default") == 5, timeout=30, what="first publish")
    # When it is SIGKILLed there
    relay.kill()
    # Then the rows are still unpublished, and a new relay publishes them again
    assert unpublished() == 5
    start_relay()
    wait_until(lambda: unpublished() == 0, timeout=30, what="re-publish")
    assert sorted(queued_task_ids(broker)) == sorted(task_ids * 2)
    # And the consumer tolerates the duplicates: each task ran, under its one id
    start_worker("default")
    wait_until(lambda: broker.llen("default") == 0, timeout=60, what="queue drained")
    results = wait_until(
        lambda: (
            (rows := list(TaskResult.objects.filter(task_id__in=task_ids)))
            and len(rows) == 5
            and all(r.status == "SUCCESS" for r in rows)
            and rows
        ),
        timeout=30,
        what="five results",
    )
    assert {json.loads(r.result)["token"] for r in results} == {f"ping-{i}" for i in range(5)}


@pytest.mark.chaos
def test_rows_wait_while_the_broker_is_down_and_all_publish_when_it_returns(
    transactional_db, settings, private_redis, start_relay, start_worker, processes
):
    # Given a relay and a worker on a broker of our own
    settings.OUTBOX_FAST_PATH = False
    env = {"REDIS_URL": private_redis.url}
    start_worker("default", **env)
    start_relay(**env)
    # When the broker goes down and work keeps arriving
    private_redis.stop()
    task_ids = enqueue_pings(20, prefix="outage")
    # Then the rows accumulate: the relay tries, fails, and records why
    wait_until(
        lambda: OutboxMessage.objects.filter(publish_attempts__gte=1).exists(),
        timeout=30,
        what="a failed publish attempt",
    )
    assert unpublished() == 20
    assert OutboxMessage.objects.exclude(last_error="").exists()
    # And when the broker returns, everything is published and executed, with no restart
    private_redis.start()
    wait_until(lambda: unpublished() == 0, timeout=90, what="backlog published")
    wait_until(
        lambda: TaskResult.objects.filter(task_id__in=task_ids, status="SUCCESS").count() == 20,
        timeout=90,
        what="all tasks executed",
    )
    assert all(p.alive() for p in processes)
