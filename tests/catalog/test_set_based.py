"""Each service call is a fixed handful of statements, however many items it carries."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from catalog.models import Price, Product, StockLevel
from catalog.services import (
    Outcome,
    PriceItem,
    ProductItem,
    StockItem,
    catalog_write_clock,
    price_apply,
    product_upsert,
    products_lock,
    stock_apply,
)

from .helpers import at

pytestmark = pytest.mark.django_db


def statements(context: CaptureQueriesContext) -> list[str]:
    """Return the first word of each statement, savepoints left out."""
    words = [query["sql"].split(None, 1)[0].upper() for query in context.captured_queries]
    return [word for word in words if word not in {"SAVEPOINT", "RELEASE"}]


def test_a_batch_of_a_thousand_items_takes_one_select_one_upsert_one_update() -> None:
    skus = [f"SKU-{n}" for n in range(500)]
    with CaptureQueriesContext(connection) as products:
        product_upsert(items=[ProductItem(sku, "Widget", None, at(0)) for sku in skus])
    stock = [StockItem(sku, wh, 1, at(0)) for sku in skus for wh in ("main", "north")]
    prices = [PriceItem(sku, cur, Decimal("1.5"), at(0)) for sku in skus for cur in ("EUR", "USD")]

    with CaptureQueriesContext(connection) as stock_queries:
        stock_apply(items=stock)
    with CaptureQueriesContext(connection) as price_queries:
        price_apply(items=prices)

    assert statements(products) == ["SELECT", "INSERT"]
    assert statements(stock_queries) == ["SELECT", "INSERT", "UPDATE"]
    assert statements(price_queries) == ["SELECT", "INSERT", "UPDATE"]


def test_calls_in_one_write_block_lock_and_read_each_product_once() -> None:
    # Given 500 new skus written as one import batch does: products, then stock and prices
    skus = [f"NEW-{n}" for n in range(500)]
    with CaptureQueriesContext(connection) as queries, catalog_write_clock():
        products_lock(skus=skus)
        created = product_upsert(items=[ProductItem(sku, "Widget", None, at(0)) for sku in skus])
        stocked = stock_apply(items=[StockItem(sku, "main", 1, at(0)) for sku in skus])
        priced = price_apply(items=[PriceItem(sku, "EUR", Decimal("1.5"), at(0)) for sku in skus])
    # Then the products are locked once, and the products it created need no lookup
    assert statements(queries) == ["SELECT", "INSERT", "INSERT", "INSERT"]
    for results in (created, stocked, priced):
        assert {result.outcome for result in results} == {Outcome.APPLIED}
    assert StockLevel.objects.count() == Price.objects.count() == 500


def test_a_write_block_stamps_products_changed_only_by_their_prices() -> None:
    # Given products whose own version is newer than the batch, but whose prices are older
    for sku in ("A", "B"):
        product_upsert(items=[ProductItem(sku, "Widget", None, at(10))])
    price_apply(items=[PriceItem("A", "EUR", Decimal("1"), at(0))])
    before = dict(Product.objects.values_list("sku", "changed_at"))
    # When a batch brings an older product version and a newer price for A only
    with CaptureQueriesContext(connection) as queries, catalog_write_clock():
        products_lock(skus=["A", "B"])
        named = product_upsert(
            items=[ProductItem("A", "Old", None, at(5)), ProductItem("B", "Old", None, at(5))]
        )
        priced = price_apply(items=[PriceItem("A", "EUR", Decimal("2"), at(5))])
    # Then the products stay as they were, the price is written and only A is stamped
    assert [r.outcome for r in named] == [Outcome.STALE, Outcome.STALE]
    assert [r.outcome for r in priced] == [Outcome.APPLIED]
    assert statements(queries) == ["SELECT", "INSERT", "UPDATE"]
    after = dict(Product.objects.values_list("sku", "changed_at"))
    assert after["A"] > before["A"]
    assert after["B"] == before["B"]
    assert set(Product.objects.values_list("name", flat=True)) == {"Widget"}
