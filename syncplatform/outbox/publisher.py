"""Publish outbox rows to the broker (shared by the on_commit fast path and the relay)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

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


@dataclass(frozen=True)
class BatchForm:
    """How many messages of one task travel as one message of another.

    A row of `task_name` whose kwargs are exactly {kwarg: value} may be published together
    with others as one `batch_task` message with kwargs {batch_kwarg: [value, …]}.
    """

    task_name: str
    batch_task: str
    kwarg: str
    batch_kwarg: str


_BATCH_FORMS: dict[str, BatchForm] = {}


def outbox_batch_form_register(
    task_name: str, *, batch_task: str, kwarg: str, batch_kwarg: str
) -> None:
    """Let the relay publish runs of `task_name` rows as `batch_task` messages.

    Written here because Celery batches nothing on the publishing side, and batching at
    the consumer (celery-batches) comes after each message has paid the broker's
    per-message cost: on Redis that is ~3 ms of the worker's main process (fetch, unacked
    bookkeeping, ack), more than applying a small webhook. The batch task must accept
    the list in any order and repeat safely, as every task here does.
    """
    _BATCH_FORMS[task_name] = BatchForm(task_name, batch_task, kwarg, batch_kwarg)


def batch_form_for(message: OutboxMessage) -> BatchForm | None:
    form = _BATCH_FORMS.get(message.task_name)
    if form is None or set(message.kwargs) != {form.kwarg}:
        return None
    return form


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
        },
        # Fail fast: the row stays in the outbox and the relay tries again later.
        retry=False,
    )


def publish_batch(
    form: BatchForm, messages: list[OutboxMessage], *, connection: Connection | None = None
) -> None:
    """Send rows of `form.task_name` as one `form.batch_task` message (see BatchForm).

    The task id names the first row and the count, so a re-publish of the same run is
    recognisable; the retry deadline counts from the oldest row.
    """
    first = messages[0]
    celery_app.send_task(
        form.batch_task,
        connection=connection,
        kwargs={form.batch_kwarg: [message.kwargs[form.kwarg] for message in messages]},
        task_id=f"outbox-{first.pk}+{len(messages) - 1}",
        queue=first.queue,
        headers={
            "dedup_key": ",".join(message.dedup_key for message in messages)[:1000],
            "outbox_id": first.pk,
            "outbox_ids": [message.pk for message in messages],
            FIRST_ATTEMPT_HEADER: min(message.created_at for message in messages).timestamp(),
        },
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
