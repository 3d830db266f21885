"""event_apply: the worker's side of an event, on the real database (CONTRACT §2 apply rules)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from django.db import OperationalError

from catalog.models import Price, Product, StockLevel
from erp_connectors.apply import event_apply
from erp_connectors.models import InboundEvent
from erp_connectors.schemas import payload_parse
from erp_connectors.services import Intake, event_record, event_retry_failed
from erp_connectors.tasks import apply_event
from syncplatform.outbox.models import OutboxMessage
from tests.support.db_faults import writes_fail

from .conftest import price_body, stock_body

pytestmark = pytest.mark.django_db

T0 = "2026-11-22T10:00:00Z"
T1 = "2026-11-22T11:00:00Z"


def at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def stock(sku: str, quantity: int, updated_at: str = T1, warehouse: str = "main") -> dict[str, Any]:
    return {"sku": sku, "warehouse": warehouse, "quantity": quantity, "updated_at": updated_at}


def record(connector, body: dict[str, Any], webhook_id: str = "evt_1") -> InboundEvent:
    import json

    result = event_record(
        connector=connector.connector,
        webhook_id=webhook_id,
        body_sha256=webhook_id,
        payload=payload_parse(json.dumps(body)),
    )
    assert result.outcome is Intake.ACCEPTED
    return InboundEvent.objects.get(pk=result.event_id)


def product(sku: str) -> Product:
    return Product.objects.create(sku=sku, name=sku.title())


def test_applied_stale_and_unknown_sku_are_counted(connector) -> None:
    # Given two products, one with a newer stored level than the event brings
    product("A")
    b = product("B")
    StockLevel.objects.create(product=b, warehouse="main", quantity=7, updated_at=at(T1))
    event = record(connector, stock_body(stock("A", 5), stock("B", 1, T0), stock("GHOST", 3)))

    # When the worker applies it
    event_apply(event_id=event.pk)

    # Then A is written, B is stale (not an error) and GHOST fails as unknown_sku
    event.refresh_from_db()
    assert event.status == InboundEvent.Status.PARTIALLY_APPLIED
    assert (event.total_items, event.applied_items, event.stale_items, event.failed_items) == (
        3,
        1,
        1,
        1,
    )
    assert event.errors == [
        {
            "index": 2,
            "sku": "GHOST",
            "code": "unknown_sku",
            "message": "no product with sku 'GHOST'",
        }
    ]
    assert event.attempts == 1
    assert event.completed_at is not None
    assert StockLevel.objects.get(product__sku="A").quantity == 5
    assert StockLevel.objects.get(product__sku="B").quantity == 7


def test_all_applied_is_applied(connector) -> None:
    product("A")
    event = record(connector, stock_body(stock("A", 5), stock("A", 6, warehouse="east")))
    event_apply(event_id=event.pk)
    event.refresh_from_db()
    assert event.status == InboundEvent.Status.APPLIED
    assert event.errors == []
    assert event.applied_items == 2


def test_all_stale_is_applied_not_failed(connector) -> None:
    a = product("A")
    StockLevel.objects.create(product=a, warehouse="main", quantity=7, updated_at=at(T1))
    event = record(connector, stock_body(stock("A", 1, T0)))
    event_apply(event_id=event.pk)
    event.refresh_from_db()
    assert event.status == InboundEvent.Status.APPLIED
    assert (event.applied_items, event.stale_items) == (0, 1)


def test_all_failed_is_failed(connector) -> None:
    event = record(connector, stock_body(stock("X", 1), stock("Y", 1)))
    event_apply(event_id=event.pk)
    event.refresh_from_db()
    assert event.status == InboundEvent.Status.FAILED
    assert [e["index"] for e in event.errors] == [0, 1]


def test_prices_are_applied_exactly(connector) -> None:
    product("A")
    item = {"sku": "A", "currency": "EUR", "amount": "19.9999", "updated_at": T1}
    event = record(connector, price_body(item))
    event_apply(event_id=event.pk)
    event.refresh_from_db()
    assert event.status == InboundEvent.Status.APPLIED
    assert Price.objects.get().amount == Decimal("19.9999")


def test_the_last_item_for_a_key_wins_on_a_tie(connector) -> None:
    product("A")
    event = record(connector, stock_body(stock("A", 1), stock("A", 2)))
    event_apply(event_id=event.pk)
    event.refresh_from_db()
    assert StockLevel.objects.get().quantity == 2
    assert (event.applied_items, event.stale_items) == (1, 1)


def test_a_completed_event_is_not_applied_again(connector) -> None:
    # Given an applied event
    product("A")
    event = record(connector, stock_body(stock("A", 5)))
    event_apply(event_id=event.pk)
    event.refresh_from_db()
    before = (event.status, event.attempts, event.applied_items, event.completed_at)
    # And a newer value written since
    StockLevel.objects.update(quantity=99)

    # When the same message is delivered again
    apply_event(event_id=event.pk)

    # Then nothing changes
    event.refresh_from_db()
    assert (event.status, event.attempts, event.applied_items, event.completed_at) == before
    assert StockLevel.objects.get().quantity == 99


def test_a_missing_event_is_a_no_op(db: None) -> None:
    event_apply(event_id=123456)


def test_an_event_left_processing_by_a_killed_worker_is_finished(connector) -> None:
    product("A")
    event = record(connector, stock_body(stock("A", 5)))
    InboundEvent.objects.filter(pk=event.pk).update(status="processing", attempts=1)

    event_apply(event_id=event.pk)

    event.refresh_from_db()
    assert event.status == InboundEvent.Status.APPLIED
    assert event.attempts == 2
    assert StockLevel.objects.get().quantity == 5


def test_a_database_fault_rolls_back_the_apply_but_counts_the_attempt(connector) -> None:
    product("A")
    event = record(connector, stock_body(stock("A", 5)))
    with writes_fail("catalog_stocklevel"), pytest.raises(OperationalError):
        event_apply(event_id=event.pk)
    event.refresh_from_db()
    assert event.status == InboundEvent.Status.PROCESSING
    assert event.attempts == 1
    assert StockLevel.objects.count() == 0

    # And the retry finishes it
    event_apply(event_id=event.pk)
    event.refresh_from_db()
    assert event.status == InboundEvent.Status.APPLIED
    assert event.attempts == 2


def test_retry_applies_only_the_failed_items_once_the_product_exists(connector) -> None:
    # Given an event whose second item failed for an unknown sku
    product("A")
    event = record(
        connector, stock_body(stock("A", 5), stock("LATE", 3), stock("A", 6, T0, "east"))
    )
    event_apply(event_id=event.pk)
    event.refresh_from_db()
    assert event.failed_items == 1
    # And A's level changed since (a newer webhook)
    StockLevel.objects.filter(warehouse="main").update(
        quantity=50, updated_at=at("2026-11-23T00:00:00Z")
    )

    # When the product is imported and the failed items are retried
    product("LATE")
    event_retry_failed(event_id=event.pk)
    event.refresh_from_db()
    assert event.status == InboundEvent.Status.ACCEPTED
    assert event.pending_indexes() == [1]
    assert OutboxMessage.objects.filter(dedup_key=f"event:{event.pk}:retry:2").exists()
    event_apply(event_id=event.pk)

    # Then only that item was applied, and the counters add up to the total
    event.refresh_from_db()
    assert event.status == InboundEvent.Status.APPLIED
    assert (event.applied_items, event.stale_items, event.failed_items) == (3, 0, 0)
    assert event.errors == []
    assert event.attempts == 2
    assert StockLevel.objects.get(product__sku="LATE").quantity == 3
    assert StockLevel.objects.get(product__sku="A", warehouse="main").quantity == 50


def test_a_retry_that_fails_again_keeps_the_failures(connector) -> None:
    product("A")
    event = record(connector, stock_body(stock("A", 5), stock("X", 1), stock("Y", 1)))
    event_apply(event_id=event.pk)
    product("X")
    event_retry_failed(event_id=event.pk)
    event_apply(event_id=event.pk)
    event.refresh_from_db()
    assert event.status == InboundEvent.Status.PARTIALLY_APPLIED
    assert (event.applied_items, event.stale_items, event.failed_items) == (2, 0, 1)
    assert [e["sku"] for e in event.errors] == ["Y"]


def test_the_task_is_named_and_routed_to_high() -> None:
    from syncplatform.outbox.publisher import route_for

    assert apply_event.name == "erp_connectors.apply_event"
    assert route_for(apply_event.name) == "high"


def test_timestamps_keep_their_instant(connector) -> None:
    product("A")
    event = record(connector, stock_body(stock("A", 5, "2026-11-22T12:00:00+02:00")))
    event_apply(event_id=event.pk)
    assert StockLevel.objects.get().updated_at == datetime(2026, 11, 22, 10, tzinfo=UTC)
