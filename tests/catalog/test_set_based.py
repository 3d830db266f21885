"""Each service call is a fixed handful of statements, however many items it carries."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from catalog.services import (
    PriceItem,
    ProductItem,
    StockItem,
    price_apply,
    product_upsert,
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
