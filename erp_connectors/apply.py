"""Worker-side writes: apply an inbound event's items to the catalog."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.db import DatabaseError, transaction
from django.db.models import F
from django.utils import timezone

from catalog.services import ItemResult, Outcome, PriceItem, StockItem, price_apply, stock_apply
from syncplatform.sql import select_row_for_update, update_row

from .models import InboundEvent

logger = logging.getLogger(__name__)


def event_apply(*, event_id: int) -> None:
    """Apply the event's pending items: all of them at first, only the failed ones on retry.

    Safe to repeat: a completed event is left as it is, and the catalog writes are
    newer-wins, so a re-delivered message converges instead of double-applying.
    The catalog writes, the item outcomes, the counters, the attempt and the status commit
    together, in one transaction. Database faults propagate for the task's retry policy to
    handle, after the failed attempt is counted and the event shown as "processing".
    """
    try:
        _apply(event_id)
    except Exception:
        _count_failed_attempt(event_id)
        raise


def events_apply(*, event_ids: Sequence[int]) -> None:
    """Apply each event as event_apply does, each in its own transaction.

    One event's fault does not hold back the others: they are all tried, then the first
    fault is raised for the retry policy, and the retry finds the others done.
    """
    first_fault: Exception | None = None
    for event_id in event_ids:
        try:
            event_apply(event_id=event_id)
        except Exception as exc:
            logger.warning("inbound event %s failed to apply: %r", event_id, exc)
            first_fault = first_fault or exc
    if first_fault is not None:
        raise first_fault


def _apply(event_id: int) -> None:
    with transaction.atomic():
        event = select_row_for_update(InboundEvent, event_id)
        if event is None:
            logger.warning("inbound event %s no longer exists; nothing to apply", event_id)
            return
        if event.status in InboundEvent.COMPLETED_STATUSES:
            logger.info("inbound event %s already %s; nothing to apply", event_id, event.status)
            return
        indexes = event.pending_indexes()
        results = _apply_items(event.type, [event.payload[i] for i in indexes])
        event.attempts += 1
        _record_outcomes(event, indexes, results)


def _count_failed_attempt(event_id: int) -> None:
    """Record a run that rolled back: one more attempt, and "processing" until it succeeds.

    Its own transaction, after the failed one. If the database is what failed, this may
    fail too; the error that matters is the one being raised, so this one is only logged.
    """
    try:
        InboundEvent.objects.filter(pk=event_id).exclude(
            status__in=InboundEvent.COMPLETED_STATUSES
        ).update(status=InboundEvent.Status.PROCESSING, attempts=F("attempts") + 1)
    except DatabaseError:
        logger.warning("could not count the failed attempt of event %s", event_id, exc_info=True)


def _apply_items(event_type: str, items: Sequence[dict[str, Any]]) -> list[ItemResult]:
    if event_type == InboundEvent.Type.STOCK_UPDATED:
        return stock_apply(
            items=[
                StockItem(
                    sku=item["sku"],
                    warehouse=item["warehouse"],
                    quantity=item["quantity"],
                    updated_at=datetime.fromisoformat(item["updated_at"]),
                )
                for item in items
            ]
        )
    return price_apply(
        items=[
            PriceItem(
                sku=item["sku"],
                currency=item["currency"],
                amount=Decimal(item["amount"]),
                updated_at=datetime.fromisoformat(item["updated_at"]),
            )
            for item in items
        ]
    )


def _record_outcomes(
    event: InboundEvent, indexes: list[int], results: Sequence[ItemResult]
) -> None:
    if len(results) != len(indexes):
        raise RuntimeError(f"catalog answered {len(results)} results for {len(indexes)} items")
    applied = stale = 0
    errors: list[dict[str, Any]] = []
    for result in results:
        index = indexes[result.index]
        if result.outcome == Outcome.APPLIED:
            applied += 1
        elif result.outcome == Outcome.STALE:
            stale += 1
        else:
            errors.append(
                {
                    "index": index,
                    "sku": event.payload[index]["sku"],
                    "code": result.code,
                    "message": result.message,
                }
            )
    # On a retry the earlier applied/stale items keep their counts; the failed count is
    # replaced, since exactly the previously failed items were tried again.
    event.applied_items += applied
    event.stale_items += stale
    event.failed_items = len(errors)
    event.errors = sorted(errors, key=lambda error: error["index"])
    if not errors:
        event.status = InboundEvent.Status.APPLIED
    elif len(errors) == event.total_items:
        event.status = InboundEvent.Status.FAILED
    else:
        event.status = InboundEvent.Status.PARTIALLY_APPLIED
    event.completed_at = timezone.now()
    update_row(
        InboundEvent,
        event.pk,
        {
            "applied_items": event.applied_items,
            "stale_items": event.stale_items,
            "failed_items": event.failed_items,
            "errors": event.errors,
            "status": event.status,
            "completed_at": event.completed_at,
            "attempts": event.attempts,
        },
    )
