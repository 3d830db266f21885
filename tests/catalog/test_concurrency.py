"""Concurrent writers with overlapping keys neither deadlock nor lose the newest value."""

from __future__ import annotations

import random
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection, transaction

from catalog.models import Product, StockLevel
from catalog.services import Outcome, StockItem, stock_apply

from .helpers import at

WORKERS = 4
SKUS = [f"SKU-{n}" for n in range(40)]
WAREHOUSES = ("main", "north", "south")


@pytest.mark.django_db(transaction=True)
def test_concurrent_overlapping_batches_converge() -> None:
    # Given products and many versions of every (sku, warehouse)
    Product.objects.bulk_create(Product(sku=sku, name=sku) for sku in SKUS)
    updates = [
        StockItem(sku, warehouse, quantity=version * 10, updated_at=at(version))
        for sku in SKUS
        for warehouse in WAREHOUSES
        for version in range(6)
    ]
    start = threading.Barrier(WORKERS)

    def deliver(seed: int) -> list[Outcome]:
        # Each worker sends all updates in its own order, 50 per transaction.
        mine = random.Random(seed).sample(updates, len(updates))
        outcomes: list[Outcome] = []
        try:
            start.wait()
            for offset in range(0, len(mine), 50):
                with transaction.atomic():
                    outcomes += [r.outcome for r in stock_apply(items=mine[offset : offset + 50])]
        finally:
            connection.close()
        return outcomes

    # When the workers deliver at the same time
    with ThreadPoolExecutor(WORKERS) as pool:
        results = list(pool.map(deliver, range(WORKERS)))

    # Then nothing failed and every key holds its newest version
    assert all(Outcome.FAILED not in outcomes for outcomes in results)
    assert set(StockLevel.objects.values_list("product__sku", "warehouse", "quantity")) == {
        (sku, warehouse, 50) for sku in SKUS for warehouse in WAREHOUSES
    }
