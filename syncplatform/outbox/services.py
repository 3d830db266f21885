"""The only way work leaves a request or a task: record it in the caller's transaction."""

from __future__ import annotations

import contextlib
import functools
import logging
import time
from collections.abc import Iterable, Mapping
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Model
from django.utils import timezone

from syncplatform.sql import (
    Guard,
    insert_row,
    insert_statement,
    prepared_values,
    statement_cursor,
)

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


def outbox_enqueue_with_row(
    model: type[Model],
    values: Mapping[str, Any],
    *,
    conflict_fields: tuple[str, ...],
    returning: tuple[str, ...],
    task_name: str,
    id_kwarg: str,
    dedup_prefix: str,
    guard: Guard | None = None,
) -> tuple | None:
    """Insert one `model` row and, if it went in, the task about it: kwargs {id_kwarg: pk}.

    Returns the row's pk followed by its `returning` fields, or None when `conflict_fields`
    refused the row or the `guard` did not hold (then nothing is written). The message's
    dedup_key is dedup_prefix + pk.
    On PostgreSQL the two inserts are one statement (a data-modifying CTE), atomic without
    a transaction block: the webhook intake's whole write in one round trip instead of
    four. Elsewhere they run as insert_row plus outbox_enqueue in one transaction.
    """
    if connection.vendor != "postgresql":
        with transaction.atomic():
            row = insert_row(
                model,
                values,
                conflict_fields=conflict_fields,
                returning=("pk", *returning),
                guard=guard,
            )
            if row is not None:
                outbox_enqueue(
                    task_name=task_name,
                    kwargs={id_kwarg: row[0]},
                    dedup_key=f"{dedup_prefix}{row[0]}",
                )
        return row

    row_sql, row_params = insert_statement(
        model, values, conflict_fields=conflict_fields, returning=("pk", *returning), guard=guard
    )
    message_sql, message_params = _message_for_row_statement(task_name, id_kwarg, dedup_prefix)
    sql = (
        f"WITH new_row AS ({row_sql}), message AS ({message_sql})"  # noqa: S608
        " SELECT new_row.*, message.* FROM new_row, message"
    )
    # On its own the statement is atomic; inside a caller's transaction a savepoint keeps
    # its failure from aborting the caller's work too, as the ORM's create() would.
    block = transaction.atomic() if connection.in_atomic_block else contextlib.nullcontext()
    with block, statement_cursor() as cursor:
        cursor.execute(sql, [*row_params, *message_params])
        found = cursor.fetchone()
    if found is None:
        return None
    if settings.OUTBOX_FAST_PATH:
        message = OutboxMessage.objects.get(pk=found[-1])
        transaction.on_commit(lambda: outbox_publish_now([message]), robust=True)
    return tuple(found[:-1])


def _message_for_row_statement(
    task_name: str, id_kwarg: str, dedup_prefix: str
) -> tuple[str, list[Any]]:
    """INSERT … SELECT of one outbox row per row of the CTE `new_row` (PostgreSQL)."""
    sql, params, created_at_index = _message_for_row_template(task_name, id_kwarg, dedup_prefix)
    params = list(params)
    params[created_at_index] = OutboxMessage._meta.get_field("created_at").get_db_prep_save(
        timezone.now(), connection
    )
    return sql, params


@functools.cache
def _message_for_row_template(
    task_name: str, id_kwarg: str, dedup_prefix: str
) -> tuple[str, tuple[Any, ...], int]:
    """The statement, its parameters but created_at, and created_at's position: made once."""
    quote = connection.ops.quote_name
    meta = OutboxMessage._meta
    pk = quote(meta.pk.column)
    expressions: list[str] = []
    params: list[Any] = []
    constants = {"task_name": task_name, "queue": route_for(task_name), "created_at": None}
    fields = [field for field in meta.concrete_fields if not field.primary_key]
    for field in fields:
        if field.name == "kwargs":
            expressions.append(f"jsonb_build_object(%s::text, new_row.{pk})")
            params.append(id_kwarg)
        elif field.name == "dedup_key":
            expressions.append(f"%s::text || new_row.{pk}::text")
            params.append(dedup_prefix)
        else:
            expressions.append("%s")
            params.extend(prepared_values([field], constants))
    columns = ", ".join(quote(field.column) for field in fields)
    sql = (
        f"INSERT INTO {quote(meta.db_table)} ({columns})"  # noqa: S608
        f" SELECT {', '.join(expressions)} FROM new_row RETURNING {pk}"
    )
    created_at_index = [field.name for field in fields].index("created_at")
    return sql, tuple(params), created_at_index


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
