"""The only way work leaves a request or a task: record it in the caller's transaction."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from syncplatform.sql import insert_row

from .models import OutboxMessage
from .publisher import BROKER_ERRORS, broker_connection, publish, route_for

logger = logging.getLogger(__name__)

# After a failed fast-path publish, leave new rows to the relay for this long, so a broker
# outage does not add a connect timeout to every request that records work.
FAST_PATH_PAUSE_SECONDS = 10.0
# One connect attempt, this long at most, before leaving the rows to the relay.
FAST_PATH_CONNECT_TIMEOUT = 0.5
_fast_path_paused_until = 0.0
_RECORDED_FIELDS = ("task_name", "queue", "kwargs", "dedup_key", "created_at")


def outbox_enqueue(
    *,
    task_name: str,
    kwargs: dict,
    dedup_key: str = "",
    queue: str | None = None,
) -> OutboxMessage:
    """Record a task to run once the caller's transaction commits.

    Call it inside the transaction that writes the data the task is about: if that
    transaction rolls back, the task is never published. Publishing happens after commit
    (fast path) or, failing that, by the relay; a message may be published more than once,
    so tasks must be idempotent.
    """
    message = OutboxMessage(
        task_name=task_name,
        queue=queue or route_for(task_name),
        kwargs=kwargs,
        dedup_key=dedup_key,
        created_at=timezone.now(),
    )
    # insert_row rather than save(): this runs in every webhook's request.
    (message.pk,) = insert_row(
        OutboxMessage,
        {name: getattr(message, name) for name in _RECORDED_FIELDS},
    )
    if settings.OUTBOX_FAST_PATH:
        transaction.on_commit(lambda: outbox_publish_now([message]), robust=True)
    return message


def outbox_enqueue_many(
    *, task_name: str, kwargs_list: Iterable[dict], dedup_keys: Iterable[str] | None = None
) -> list[OutboxMessage]:
    """Record many messages for one task in one INSERT (an import's batches, say).

    Same guarantees as `outbox_enqueue`; after commit they are published over one broker
    connection instead of one each.
    """
    queue = route_for(task_name)
    kwargs_list = list(kwargs_list)
    keys = list(dedup_keys) if dedup_keys is not None else [""] * len(kwargs_list)
    messages = OutboxMessage.objects.bulk_create(
        [
            OutboxMessage(task_name=task_name, queue=queue, kwargs=kwargs, dedup_key=key)
            for kwargs, key in zip(kwargs_list, keys, strict=True)
        ]
    )
    if settings.OUTBOX_FAST_PATH and messages:
        transaction.on_commit(lambda: outbox_publish_now(messages), robust=True)
    return messages


def outbox_publish_now(messages: Iterable[OutboxMessage]) -> int:
    """Publish committed rows right away and mark them; leave failures to the relay."""
    global _fast_path_paused_until
    if time.monotonic() < _fast_path_paused_until:
        return 0
    published: list[int] = []
    try:
        with broker_connection(connect_timeout=FAST_PATH_CONNECT_TIMEOUT) as conn:
            for message in messages:
                publish(message, connection=conn)
                published.append(message.pk)
    except BROKER_ERRORS as exc:
        _fast_path_paused_until = time.monotonic() + FAST_PATH_PAUSE_SECONDS
        logger.warning("broker unavailable, outbox relay will publish: %s", exc)
    if published:
        OutboxMessage.objects.filter(pk__in=published, published_at__isnull=True).update(
            published_at=timezone.now()
        )
    return len(published)
