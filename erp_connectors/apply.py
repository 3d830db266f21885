"""Worker-side writes: apply an inbound event's items to the catalog."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from functools import partial
from typing import Any

from django.db import DatabaseError, transaction
from django.db.models import F
from django.utils import timezone

from catalog.services import (
    ItemResult,
    Outcome,
    PriceItem,
    StockItem,
    catalog_write_clock,
    price_apply,
    products_lock,
    stock_apply,
)
from syncplatform.counters import EVENT_ITEMS, EVENTS_COMPLETED
from syncplatform.sql import select_row_for_update, update_row, update_rows

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
    """Apply several events (a relay batch) together: one transaction, one catalog call per type.

    The catalog ends as applying them one by one in id order would leave it: the stock items
    of all the events go to one stock_apply and the price items to one price_apply, listed
    newest event first, so on an updated_at tie across events the earlier event's item wins
    (a catalog call keeps its last item on a tie; one by one the later event's item would be
    stale), and ties within one event go as in event_apply. An item beaten by a strictly
    newer item of another event in the batch counts as stale even if its event came first:
    the outcome of applying the newer one first, an order delivery could have taken anyway.

    Safe to repeat, as event_apply. If the shared transaction fails, the events are applied
    again one by one as event_apply does, so one poison event cannot hold back the others;
    then the first fault is raised for the retry policy, whose retry finds the others done.
    """
    if len(event_ids) > 1:
        try:
            _apply_together(event_ids)
        except Exception as exc:
            logger.warning(
                "inbound events %s failed to apply together (%r); applying them one by one",
                list(event_ids),
                exc,
            )
        else:
            return
    first_fault: Exception | None = None
    for event_id in event_ids:
        try:
            event_apply(event_id=event_id)
        except Exception as exc:
            logger.warning("inbound event %s failed to apply: %r", event_id, exc)
            first_fault = first_fault or exc
    if first_fault is not None:
        raise first_fault


def _apply_together(event_ids: Sequence[int]) -> None:
    # One changed_at for the batch: a product named by several events is rewritten once.
    with catalog_write_clock():
        # One statement, rows locked in id order: batches sharing events queue, not deadlock.
        events = list(
            InboundEvent.objects.select_for_update().filter(pk__in=event_ids).order_by("pk")
        )
        missing = set(event_ids) - {event.pk for event in events}
        if missing:
            logger.warning("inbound events %s no longer exist; nothing to apply", sorted(missing))
        pending: list[tuple[InboundEvent, list[int]]] = []
        for event in events:
            if event.status in InboundEvent.COMPLETED_STATUSES:
                logger.info("inbound event %s already %s; nothing to apply", event.pk, event.status)
            else:
                pending.append((event, event.pending_indexes()))
        # All products before the first write, in one order: stock then price calls would
        # otherwise lock in two steps and could deadlock against another batch.
        products_lock(skus={event.payload[i]["sku"] for event, indexes in pending for i in indexes})
        stock_type = InboundEvent.Type.STOCK_UPDATED
        stock = [(event, indexes) for event, indexes in pending if event.type == stock_type]
        prices = [(event, indexes) for event, indexes in pending if event.type != stock_type]
        results = {**_apply_group(stock), **_apply_group(prices)}
        outcomes: dict[int, dict[str, Any]] = {}
        for event, indexes in pending:
            event.attempts += 1
            outcomes[event.pk] = _outcomes(event, indexes, results[event.pk])
        update_rows(InboundEvent, outcomes)


def _apply_group(group: list[tuple[InboundEvent, list[int]]]) -> dict[int, list[ItemResult]]:
    """Apply the pending items of events of one type in one call; return each event's results.

    Newest event first (see events_apply): a tie across events goes to the earlier one.
    """
    if not group:
        return {}
    newest_first = group[::-1]
    items = [event.payload[i] for event, indexes in newest_first for i in indexes]
    results = normalised_items_apply(group[0][0].type, items)
    by_event: dict[int, list[ItemResult]] = {}
    offset = 0
    for event, indexes in newest_first:
        by_event[event.pk] = [
            result._replace(index=result.index - offset)
            for result in results[offset : offset + len(indexes)]
        ]
        offset += len(indexes)
    return by_event


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
        results = normalised_items_apply(event.type, [event.payload[i] for i in indexes])
        event.attempts += 1
        update_row(InboundEvent, event.pk, _outcomes(event, indexes, results))


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


def normalised_items_apply(event_type: str, items: Sequence[dict[str, Any]]) -> list[ItemResult]:
    """Apply items as the schema checks normalised them (webhook payloads, ERP pages)."""
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


def _outcomes(
    event: InboundEvent, indexes: list[int], results: Sequence[ItemResult]
) -> dict[str, Any]:
    """Set the event's counters, errors and status from its items' results; return those
    fields by name, for the caller to store in its transaction. The metrics count them
    when that transaction commits."""
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
    transaction.on_commit(
        partial(_count_outcomes, event.type, event.status, applied, stale, len(errors))
    )
    return {
        "applied_items": event.applied_items,
        "stale_items": event.stale_items,
        "failed_items": event.failed_items,
        "errors": event.errors,
        "status": event.status,
        "completed_at": event.completed_at,
        "attempts": event.attempts,
    }


def _count_outcomes(event_type: str, status: str, applied: int, stale: int, failed: int) -> None:
    EVENTS_COMPLETED.inc(event_type, status)
    for outcome, count in (("applied", applied), ("stale", stale), ("failed", failed)):
        if count:
            EVENT_ITEMS.inc(event_type, outcome, amount=count)
