"""Out-of-order, duplicated, arbitrarily batched delivery converges to the newest values."""

from __future__ import annotations

import itertools

import pytest
from django.db import transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from catalog.models import Price, Product, StockLevel
from catalog.services import (
    Outcome,
    PriceItem,
    ProductItem,
    StockItem,
    price_apply,
    product_upsert,
    stock_apply,
)

from .helpers import at

SKUS = ("A", "B", "C")

# Each ERP version of a key carries its own time: two different values with the same
# updated_at for one key have no "newest" to converge to.
stock_updates = st.lists(
    st.builds(
        StockItem,
        sku=st.sampled_from(SKUS),
        warehouse=st.sampled_from(("main", "north")),
        quantity=st.integers(0, 2_147_483_647),
        updated_at=st.integers(0, 40).map(at),
    ),
    min_size=1,
    max_size=20,
    unique_by=lambda item: (item.sku, item.warehouse, item.updated_at),
)
price_updates = st.lists(
    st.builds(
        PriceItem,
        sku=st.sampled_from(SKUS),
        currency=st.sampled_from(("EUR", "USD")),
        amount=st.decimals(0, 10_000, places=2),
        updated_at=st.integers(0, 40).map(at),
    ),
    min_size=1,
    max_size=20,
    unique_by=lambda item: (item.sku, item.currency, item.updated_at),
)
product_updates = st.lists(
    st.builds(
        ProductItem,
        sku=st.sampled_from(SKUS),
        name=st.text("abcxyz", min_size=1, max_size=5),
        active=st.booleans(),
        updated_at=st.integers(0, 40).map(at),
    ),
    min_size=1,
    max_size=20,
    unique_by=lambda item: (item.sku, item.updated_at),
)


def deliver(data: st.DataObject, updates: list) -> list[list]:
    """Draw a delivery: every update at least once, some twice, any order, any batching."""
    repeats = data.draw(st.lists(st.sampled_from(updates), max_size=len(updates)))
    stream = data.draw(st.permutations(updates + repeats))
    cuts = sorted(data.draw(st.sets(st.integers(1, len(stream) - 1))) if len(stream) > 1 else [])
    bounds = [0, *cuts, len(stream)]
    return [stream[start:end] for start, end in itertools.pairwise(bounds)]


def newest(updates: list, key: object) -> dict:
    best: dict = {}
    for update in updates:
        k = key(update)
        if k not in best or update.updated_at > best[k].updated_at:
            best[k] = update
    return best


# Each example runs in a savepoint that is rolled back, so the function-scoped database
# fixture is safe to share between examples.
convergence = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.mark.django_db
@convergence
@given(stock=stock_updates, prices=price_updates, data=st.data())
def test_stock_and_prices_converge_to_the_newest_value_per_key(
    stock: list[StockItem], prices: list[PriceItem], data: st.DataObject
) -> None:
    with transaction.atomic():
        # Given the products
        Product.objects.bulk_create(Product(sku=sku, name=sku) for sku in SKUS)

        # When every update arrives, in any order, duplicated, in any batches
        outcomes = [r.outcome for b in deliver(data, stock) for r in stock_apply(items=b)]
        outcomes += [r.outcome for b in deliver(data, prices) for r in price_apply(items=b)]

        # Then each key holds its newest value, and nothing failed
        assert Outcome.FAILED not in outcomes
        expected_stock = {
            key: (u.quantity, u.updated_at)
            for key, u in newest(stock, lambda u: (u.sku, u.warehouse)).items()
        }
        assert {
            (sku, warehouse): (quantity, updated_at)
            for sku, warehouse, quantity, updated_at in StockLevel.objects.values_list(
                "product__sku", "warehouse", "quantity", "updated_at"
            )
        } == expected_stock
        expected_prices = {
            key: (u.amount, u.updated_at)
            for key, u in newest(prices, lambda u: (u.sku, u.currency)).items()
        }
        assert {
            (sku, currency): (amount, updated_at)
            for sku, currency, amount, updated_at in Price.objects.values_list(
                "product__sku", "currency", "amount", "updated_at"
            )
        } == expected_prices
        transaction.set_rollback(True)


@pytest.mark.django_db
@convergence
@given(updates=product_updates, data=st.data())
def test_full_product_updates_converge_to_the_newest_version(
    updates: list[ProductItem], data: st.DataObject
) -> None:
    with transaction.atomic():
        # When every full update (name and active) arrives in any order and batching
        for batch in deliver(data, updates):
            assert Outcome.FAILED not in [r.outcome for r in product_upsert(items=batch)]

        # Then each product holds its newest name and flag
        expected = {
            sku: (u.name, u.active, u.updated_at)
            for sku, u in newest(updates, lambda u: u.sku).items()
        }
        assert {
            sku: (name, active, updated_at)
            for sku, name, active, updated_at in Product.objects.values_list(
                "sku", "name", "active", "updated_at"
            )
        } == expected
        transaction.set_rollback(True)


@pytest.mark.django_db
@convergence
@given(stock=stock_updates, data=st.data())
def test_once_converged_redelivery_is_all_stale(
    stock: list[StockItem], data: st.DataObject
) -> None:
    with transaction.atomic():
        # Given every update applied once
        Product.objects.bulk_create(Product(sku=sku, name=sku) for sku in SKUS)
        stock_apply(items=stock)
        before = set(StockLevel.objects.values_list("product_id", "warehouse", "quantity"))

        # When all of them arrive again in any order and batching
        outcomes = [r.outcome for b in deliver(data, stock) for r in stock_apply(items=b)]

        # Then nothing is written
        assert set(outcomes) == {Outcome.STALE}
        assert set(StockLevel.objects.values_list("product_id", "warehouse", "quantity")) == before
        transaction.set_rollback(True)
