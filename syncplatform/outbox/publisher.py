"""Publish outbox rows to the broker (shared by the on_commit fast path and the relay)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import kombu.exceptions
import redis.exceptions
from kombu import Connection

from syncplatform.celery import app as celery_app
from syncplatform.retry import FIRST_ATTEMPT_HEADER

from .models import OutboxMessage

# What a publish raises while the broker is unreachable.
BROKER_ERRORS: tuple[type[BaseException], ...] = (
    kombu.exceptions.OperationalError,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    ConnectionError,
    OSError,
)


def route_for(task_name: str) -> str:
    """Return the queue a task is routed to (CELERY_TASK_ROUTES, else the default queue)."""
    route = celery_app.amqp.router.route({}, task_name)
    queue = route.get("queue")
    return getattr(queue, "name", queue) or celery_app.conf.task_default_queue


def publish(message: OutboxMessage, *, connection: Connection | None = None) -> None:
    """Send one row's task. Raises one of BROKER_ERRORS when the broker is unreachable."""
    celery_app.send_task(
        message.task_name,
        connection=connection,
        kwargs=message.kwargs,
        task_id=message.task_id,
        queue=message.queue,
        headers={
            "dedup_key": message.dedup_key,
            "outbox_id": message.pk,
            FIRST_ATTEMPT_HEADER: message.created_at.timestamp(),
            # Read by /metrics to tell how long the oldest message has waited in its queue.
            "published_at": time.time(),
        },
        # Fail fast: the row stays in the outbox and the relay tries again later.
        retry=False,
    )


@contextmanager
def broker_connection(*, connect_timeout: float) -> Iterator[Connection]:
    """A pooled broker connection, connected with one short attempt.

    Kombu's own connect retries for several seconds; a request answering an ERP must not
    wait that long for a broker that is down, since the relay will publish later anyway.
    """
    with celery_app.pool.acquire(block=True) as conn:
        conn.ensure_connection(max_retries=1, interval_start=0, timeout=connect_timeout)
        yield conn
