"""events_apply: a relay batch of events applied together, on the real database (CONTRACT §2)."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from django.db import OperationalError, connection
from django.test.utils import CaptureQueriesContext

from catalog.models import Price, StockLevel
from erp_connectors.apply import event_apply, events_apply
from erp_connectors.models import InboundEvent
from erp_connectors.services import event_retry_failed
from tests.support.db_faults import writes_fail

from .conftest import price_body, stock_body
from .test_apply import T0, T1, at, product, record, stock

pytestmark = pytest.mark.django_db

T2 = "2026-11-22T12:00:00Z"


def price(sku: str, amount: str, updated_at: str = T1, currency: str = "EUR") -> dict[str, Any]:
    return {"sku": sku, "currency": currency, "amount": amount, "updated_at": updated_at}


def counters(event: InboundEvent) -> tuple[str, int, int, int, int]:
    event.refresh_from_db()
    return (
        event.status,
        event.applied_items,
        event.stale_items,
        event.failed_items,
        event.attempts,
    )


def quantities() -> dict[tuple[str, str], int]:
    return {
        (level.product.sku, level.warehouse): level.quantity
        for level in StockLevel.objects.select_related("product")
    }


def amounts() -> dict[tuple[str, str], Decimal]:
    return {(p.product.sku, p.currency): p.amount for p in Price.objects.select_related("product")}


def test_a_batch_writes_the_newest_value_per_key_and_counts_each_event(connector) -> None:
    # Given stored values and four events, stock and prices, naming the same keys
    a = product("A")
    product("B")
    StockLevel.objects.create(product=a, warehouse="main", quantity=1, updated_at=at(T0))
    events = [
        record(connector, stock_body(stock("A", 5), stock("B", 7)), "evt_1"),
        record(connector, price_body(price("A", "10"), price("B", "20")), "evt_2"),
        record(connector, stock_body(stock("A", 6, T2), stock("B", 8, T0)), "evt_3"),
        record(connector, price_body(price("A", "11", T0), price("B", "21", T2)), "evt_4"),
    ]

    # When they are applied in one call
    events_apply(event_ids=[event.pk for event in events])

    # Then each key holds its newest value
    assert quantities() == {("A", "main"): 6, ("B", "main"): 7}
    assert amounts() == {("A", "EUR"): Decimal("10"), ("B", "EUR"): Decimal("21")}
    # And an item beaten by a newer one of another event counts as stale, older ones too
    applied = InboundEvent.Status.APPLIED
    assert [counters(event) for event in events] == [
        (applied, 1, 1, 0, 1),  # A lost to evt_3's newer level
        (applied, 1, 1, 0, 1),  # B lost to evt_4's newer price
        (applied, 1, 1, 0, 1),  # B is older than evt_1's
        (applied, 1, 1, 0, 1),  # A is older than evt_2's
    ]
    for event in events:
        assert event.errors == []
        assert event.completed_at is not None


def _apply_tied_events(
    connector, sku: str, apply: Callable[[list[InboundEvent]], None]
) -> tuple[Any, ...]:
    """Record events that tie on updated_at for `sku`, apply them, return what came of it."""
    product(sku)
    events = [
        record(
            connector,
            stock_body(stock(sku, 5), stock(sku, 6)),  # a tie inside one event: 6 wins
            f"{sku}-1",
        ),
        record(connector, price_body(price(sku, "1.5")), f"{sku}-2"),
        record(connector, stock_body(stock(sku, 9)), f"{sku}-3"),
        record(connector, price_body(price(sku, "2.5")), f"{sku}-4"),
    ]
    apply(events)
    level = StockLevel.objects.get(product__sku=sku)
    return (
        level.quantity,
        Price.objects.get(product__sku=sku).amount,
        [counters(event) for event in events],
    )


def test_a_tie_across_events_keeps_the_earlier_event_as_one_by_one_does(connector) -> None:
    # When the same tied events are applied in one batch, and (other skus) one by one
    together = _apply_tied_events(
        connector, "TOGETHER", lambda events: events_apply(event_ids=[e.pk for e in events])
    )
    one_by_one = _apply_tied_events(
        connector, "ONE-BY-ONE", lambda events: [event_apply(event_id=e.pk) for e in events]
    )

    # Then the earlier event's values stay, the later event's items are stale, in both ways
    applied = InboundEvent.Status.APPLIED
    assert together == (
        6,
        Decimal("1.5"),
        [
            (applied, 1, 1, 0, 1),
            (applied, 1, 0, 0, 1),
            (applied, 0, 1, 0, 1),
            (applied, 0, 1, 0, 1),
        ],
    )
    assert together == one_by_one


def test_unknown_skus_fail_at_their_indexes_and_completed_events_are_left_alone(
    connector,
) -> None:
    # Given an event already applied, then a newer level written since
    product("A")
    done = record(connector, stock_body(stock("A", 1, T0)), "evt_done")
    event_apply(event_id=done.pk)
    done.refresh_from_db()
    before = (counters(done), done.completed_at)
    # And events naming skus that do not exist
    partly = record(
        connector,
        stock_body(stock("A", 5), stock("GHOST", 3), stock("A", 2, warehouse="east")),
        "evt_partly",
    )
    failing = record(connector, price_body(price("X", "1"), price("Y", "2")), "evt_failing")

    # When they are applied in one batch with the completed one and an id that is gone
    events_apply(event_ids=[done.pk, partly.pk, failing.pk, 999_999])

    # Then the unknown skus fail at their own indexes
    assert counters(partly) == (InboundEvent.Status.PARTIALLY_APPLIED, 2, 0, 1, 1)
    assert partly.errors == [
        {
            "index": 1,
            "sku": "GHOST",
            "code": "unknown_sku",
            "message": "no product with sku 'GHOST'",
        }
    ]
    assert counters(failing) == (InboundEvent.Status.FAILED, 0, 0, 2, 1)
    assert [(e["index"], e["sku"], e["code"]) for e in failing.errors] == [
        (0, "X", "unknown_sku"),
        (1, "Y", "unknown_sku"),
    ]
    assert quantities() == {("A", "main"): 5, ("A", "east"): 2}
    # And the completed event is untouched
    assert (counters(done), done.completed_at) == before

    # When the products arrive and the failed items are retried, in one batch again
    product("GHOST")
    product("X")
    event_retry_failed(event_id=partly.pk)
    event_retry_failed(event_id=failing.pk)
    events_apply(event_ids=[partly.pk, failing.pk])

    # Then only those items are applied, and the counters add up to the totals
    assert counters(partly) == (InboundEvent.Status.APPLIED, 3, 0, 0, 2)
    assert counters(failing) == (InboundEvent.Status.PARTIALLY_APPLIED, 1, 0, 1, 2)
    assert [e["sku"] for e in failing.errors] == ["Y"]
    assert quantities()[("GHOST", "main")] == 3


def _record_ten_events(connector, prefix: str) -> list[int]:
    """Ten events of three items each, stock and prices alternating, on shared products."""
    skus = [f"{prefix}-{n}" for n in range(5)]
    for sku in skus:
        product(sku)
    ids = []
    for n in range(10):
        updated_at = f"2026-11-22T10:00:{n:02}Z"
        named = [skus[(n + k) % len(skus)] for k in range(3)]
        if n % 2:
            body = price_body(*(price(sku, f"{n}.5", updated_at) for sku in named))
        else:
            body = stock_body(*(stock(sku, n, updated_at) for sku in named))
        ids.append(record(connector, body, f"{prefix}-{n}").pk)
    return ids


def test_a_batch_takes_a_few_statements_for_all_its_events(connector) -> None:
    # Given two sets of ten events on their own products
    together, one_by_one = _record_ten_events(connector, "T"), _record_ten_events(connector, "S")

    # When one set is applied as a batch and the other event by event
    with CaptureQueriesContext(connection) as batch_queries:
        events_apply(event_ids=together)
    with CaptureQueriesContext(connection) as single_queries:
        for event_id in one_by_one:
            event_apply(event_id=event_id)

    # Then the batch records the events' outcomes in one UPDATE on PostgreSQL (one per event
    # elsewhere) plus a fixed few (lock the events, lock the products, write stock, write
    # prices, stamp the products), the single path five per event
    batch, single = statements(batch_queries), statements(single_queries)
    event_updates = 1 if connection.vendor == "postgresql" else 10
    assert sum(sql.startswith('UPDATE "erp_connectors_inboundevent"') for sql in batch) == (
        event_updates
    )
    assert len(batch) <= event_updates + 5
    assert len(single) >= 5 * 10
    assert InboundEvent.objects.filter(status=InboundEvent.Status.APPLIED).count() == 20


def statements(queries: CaptureQueriesContext) -> list[str]:
    """The statements run, without the savepoints of the test's own transaction."""
    return [q["sql"] for q in queries if "SAVEPOINT" not in q["sql"]]


def test_a_poison_event_falls_back_to_one_by_one_and_the_others_apply(connector) -> None:
    # Given three events, the middle one with a stored item that cannot be read
    product("A")
    product("B")
    first = record(connector, stock_body(stock("A", 5)), "evt_1")
    poison = record(connector, price_body(price("A", "1")), "evt_2")
    InboundEvent.objects.filter(pk=poison.pk).update(payload=[price("A", "1", "yesterday")])
    last = record(connector, price_body(price("B", "7")), "evt_3")

    # When they are applied as a batch
    with pytest.raises(ValueError, match="yesterday"):
        events_apply(event_ids=[first.pk, poison.pk, last.pk])

    # Then the others are applied once, and the poison event waits for its retry
    assert counters(first) == (InboundEvent.Status.APPLIED, 1, 0, 0, 1)
    assert counters(last) == (InboundEvent.Status.APPLIED, 1, 0, 0, 1)
    assert counters(poison) == (InboundEvent.Status.PROCESSING, 0, 0, 0, 1)
    assert quantities() == {("A", "main"): 5}
    assert amounts() == {("B", "EUR"): Decimal("7")}


def test_a_database_fault_on_one_table_holds_back_only_the_events_that_write_it(
    connector,
) -> None:
    # Given a stock and a price event, and price writes failing in the database
    product("A")
    stock_event = record(connector, stock_body(stock("A", 5)), "evt_1")
    price_event = record(connector, price_body(price("A", "1")), "evt_2")

    # When they are applied as a batch
    with writes_fail("catalog_price"), pytest.raises(OperationalError):
        events_apply(event_ids=[stock_event.pk, price_event.pk])

    # Then the stock event is applied, and the price event's failed attempt is counted
    assert counters(stock_event) == (InboundEvent.Status.APPLIED, 1, 0, 0, 1)
    assert counters(price_event) == (InboundEvent.Status.PROCESSING, 0, 0, 0, 1)
    assert quantities() == {("A", "main"): 5}
    assert not Price.objects.exists()
