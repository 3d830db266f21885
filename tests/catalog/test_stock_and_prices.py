"""stock_apply and price_apply: newer wins per key, everything else is stale."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from django.db import transaction

from catalog.models import Price, Product, StockLevel
from catalog.services import ItemResult, Outcome, PriceItem, StockItem, price_apply, stock_apply

from .helpers import at, make_product, price_of, stock_of

pytestmark = pytest.mark.django_db

APPLIED, STALE, FAILED = Outcome.APPLIED, Outcome.STALE, Outcome.FAILED


def outcomes(results: list[ItemResult]) -> list[Outcome]:
    return [result.outcome for result in results]


def stock(quantity: int, seconds: float, sku: str = "SKU-1", warehouse: str = "main") -> StockItem:
    return StockItem(sku=sku, warehouse=warehouse, quantity=quantity, updated_at=at(seconds))


def price(amount: str, seconds: float, sku: str = "SKU-1", currency: str = "EUR") -> PriceItem:
    return PriceItem(sku=sku, currency=currency, amount=Decimal(amount), updated_at=at(seconds))


class TestStockApply:
    def test_first_value_creates_the_level(self) -> None:
        make_product()

        results = stock_apply(items=[stock(12, 0)])

        assert results == [ItemResult(index=0, outcome=APPLIED)]
        assert stock_of("SKU-1", "main") == (12, at(0))

    def test_newer_value_overwrites(self) -> None:
        make_product()
        stock_apply(items=[stock(12, 0)])

        results = stock_apply(items=[stock(7, 1)])

        assert outcomes(results) == [APPLIED]
        assert stock_of("SKU-1", "main") == (7, at(1))

    @pytest.mark.parametrize("seconds", [0, -1], ids=["equal", "older"])
    def test_equal_or_older_value_is_stale_and_changes_nothing(self, seconds: float) -> None:
        make_product()
        stock_apply(items=[stock(12, 0)])

        results = stock_apply(items=[stock(99, seconds)])

        assert results == [ItemResult(index=0, outcome=STALE)]
        assert stock_of("SKU-1", "main") == (12, at(0))

    def test_one_microsecond_newer_wins(self) -> None:
        make_product()
        stock_apply(items=[stock(1, 0)])

        results = stock_apply(items=[stock(2, 0.000001)])

        assert outcomes(results) == [APPLIED]
        assert stock_of("SKU-1", "main") == (2, at(0.000001))

    def test_versions_compare_as_instants_whatever_their_offset(self) -> None:
        make_product()
        plus_two = timezone(timedelta(hours=2))
        stock_apply(items=[stock(1, 30 * 60)])  # 10:30Z

        # 12:00+02:00 is 10:00Z: older, although its wall clock reads later.
        older = StockItem("SKU-1", "main", 2, datetime(2026, 11, 22, 12, 0, tzinfo=plus_two))
        newer = StockItem("SKU-1", "main", 3, datetime(2026, 11, 22, 12, 45, tzinfo=plus_two))
        results = stock_apply(items=[older, newer])

        assert outcomes(results) == [STALE, APPLIED]
        assert stock_of("SKU-1", "main")[0] == 3

    def test_last_item_wins_a_tie_within_one_call(self) -> None:
        make_product()

        results = stock_apply(items=[stock(1, 5), stock(2, 5), stock(3, 5)])

        assert outcomes(results) == [STALE, STALE, APPLIED]
        assert stock_of("SKU-1", "main") == (3, at(5))

    def test_newest_item_wins_within_one_call_wherever_it_is(self) -> None:
        make_product()

        results = stock_apply(items=[stock(1, 2), stock(2, 9), stock(3, 4)])

        assert outcomes(results) == [STALE, APPLIED, STALE]
        assert stock_of("SKU-1", "main") == (2, at(9))

    def test_keys_are_independent(self) -> None:
        make_product("A")
        make_product("B")
        stock_apply(items=[stock(1, 10, "A", "main")])

        results = stock_apply(
            items=[stock(2, 5, "A", "main"), stock(3, 5, "A", "north"), stock(4, 5, "B", "main")]
        )

        assert outcomes(results) == [STALE, APPLIED, APPLIED]
        assert stock_of("A", "main") == (1, at(10))
        assert stock_of("A", "north") == (3, at(5))
        assert stock_of("B", "main") == (4, at(5))

    def test_unknown_sku_fails_that_item_only(self) -> None:
        make_product()

        results = stock_apply(items=[stock(1, 0, sku="NOPE"), stock(2, 0)])

        assert results[0].outcome == FAILED
        assert results[0].code == "unknown_sku"
        assert "NOPE" in results[0].message
        assert results[1] == ItemResult(index=1, outcome=APPLIED)
        assert not StockLevel.objects.filter(product__sku="NOPE").exists()

    def test_reapplying_the_same_batch_changes_nothing(self) -> None:
        make_product("A")
        make_product("B")
        batch = [stock(1, 0, "A"), stock(2, 1, "A", "north"), stock(3, 0, "B"), stock(4, 0, "X")]
        first = stock_apply(items=batch)
        rows = set(StockLevel.objects.values_list("product__sku", "warehouse", "quantity"))
        changed = dict(Product.objects.values_list("sku", "changed_at"))

        again = stock_apply(items=batch)

        assert outcomes(first) == [APPLIED, APPLIED, APPLIED, FAILED]
        assert outcomes(again) == [STALE, STALE, STALE, FAILED]
        assert set(StockLevel.objects.values_list("product__sku", "warehouse", "quantity")) == rows
        assert dict(Product.objects.values_list("sku", "changed_at")) == changed

    def test_a_write_marks_the_product_changed_and_a_stale_item_does_not(self) -> None:
        written = make_product("A", changed_at=at(-100))
        untouched = make_product("B", changed_at=at(-100))
        stock_apply(items=[stock(1, 10, "B")])
        Product.objects.filter(sku="B").update(changed_at=at(-100))

        stock_apply(items=[stock(1, 0, "A"), stock(2, 5, "B")])

        written.refresh_from_db()
        untouched.refresh_from_db()
        assert written.changed_at > at(-100)
        assert untouched.changed_at == at(-100)

    @pytest.mark.parametrize(
        ("item", "message"),
        [
            (StockItem("SKU-1", "main", -1, at(0)), "quantity"),
            (StockItem("SKU-1", "main", 2_147_483_648, at(0)), "quantity"),
            (StockItem("SKU-1", "main", True, at(0)), "quantity"),
            (StockItem("SKU-1", "", 1, at(0)), "warehouse"),
            (StockItem("SKU-1", "w" * 33, 1, at(0)), "warehouse"),
            (StockItem("SKU-1", "ma\x00in", 1, at(0)), "warehouse"),
            (StockItem("", "main", 1, at(0)), "sku"),
            (StockItem("S" * 65, "main", 1, at(0)), "sku"),
            (StockItem("SKU-1", "main", 1, datetime(2026, 11, 22, 10, 0)), "updated_at"),  # noqa: DTZ001
        ],
    )
    def test_an_invalid_item_fails_alone(self, item: StockItem, message: str) -> None:
        make_product()

        results = stock_apply(items=[item, stock(5, 0, warehouse="ok")])

        assert results[0].outcome == FAILED
        assert results[0].code == "invalid"
        assert message in results[0].message
        assert results[1].outcome == APPLIED
        assert list(StockLevel.objects.values_list("warehouse", flat=True)) == ["ok"]

    def test_largest_quantity_is_stored(self) -> None:
        make_product()

        stock_apply(items=[stock(2_147_483_647, 0)])

        assert stock_of("SKU-1", "main")[0] == 2_147_483_647

    def test_writes_belong_to_the_callers_transaction(self) -> None:
        make_product()

        with transaction.atomic():
            assert outcomes(stock_apply(items=[stock(1, 0)])) == [APPLIED]
            transaction.set_rollback(True)

        assert not StockLevel.objects.exists()

    def test_a_call_over_the_statement_size_applies_every_item(self) -> None:
        make_product("A")
        make_product("B")
        items = [stock(n, 1, sku, f"w{n}") for n in range(1_300) for sku in ("A", "B")]
        items.append(stock(0, 0, "A", "w0"))  # older than the first item for its key

        results = stock_apply(items=items)

        assert [r.index for r in results] == list(range(len(items)))
        assert outcomes(results) == [APPLIED] * 2_600 + [STALE]
        assert StockLevel.objects.count() == 2_600
        assert stock_of("B", "w1299") == (1299, at(1))

    def test_an_empty_call_does_nothing(self) -> None:
        assert stock_apply(items=[]) == []


class TestPriceApply:
    def test_newer_price_overwrites_and_keeps_its_places(self) -> None:
        make_product()
        price_apply(items=[price("19.99", 0)])

        results = price_apply(items=[price("18.1234", 1)])

        assert outcomes(results) == [APPLIED]
        assert price_of("SKU-1", "EUR") == ("18.1234", at(1))

    @pytest.mark.parametrize("seconds", [0, -1], ids=["equal", "older"])
    def test_equal_or_older_price_is_stale(self, seconds: float) -> None:
        make_product()
        price_apply(items=[price("19.99", 0)])

        results = price_apply(items=[price("1.00", seconds)])

        assert outcomes(results) == [STALE]
        assert price_of("SKU-1", "EUR") == ("19.99", at(0))

    def test_last_item_wins_a_tie_and_currencies_are_independent(self) -> None:
        make_product()

        results = price_apply(
            items=[price("1", 3), price("2", 3, currency="USD"), price("3", 3), price("4", 2)]
        )

        assert outcomes(results) == [STALE, APPLIED, APPLIED, STALE]
        assert price_of("SKU-1", "EUR") == ("3", at(3))
        assert price_of("SKU-1", "USD") == ("2", at(3))

    def test_unknown_sku_fails_with_unknown_sku(self) -> None:
        results = price_apply(items=[price("1.00", 0, sku="NOPE")])

        assert (results[0].outcome, results[0].code) == (FAILED, "unknown_sku")
        assert not Price.objects.exists()

    def test_reapplying_the_same_batch_changes_nothing(self) -> None:
        make_product()
        batch = [price("1.50", 0), price("2.50", 0, currency="USD")]
        price_apply(items=batch)

        again = price_apply(items=batch)

        assert outcomes(again) == [STALE, STALE]
        assert price_of("SKU-1", "EUR") == ("1.5", at(0))

    def test_an_amount_with_fifteen_digits_round_trips(self) -> None:
        make_product()

        price_apply(items=[price("99999999999.9999", 0)])

        assert price_of("SKU-1", "EUR")[0] == "99999999999.9999"

    @pytest.mark.parametrize(
        ("amount", "currency", "message"),
        [
            ("-0.01", "EUR", "amount"),
            ("1.00001", "EUR", "decimal places"),
            ("1000000000000000", "EUR", "amount"),
            ("NaN", "EUR", "amount"),
            ("1", "eur", "currency"),
            ("1", "EURO", "currency"),
        ],
    )
    def test_an_invalid_price_fails_alone(self, amount: str, currency: str, message: str) -> None:
        make_product()

        results = price_apply(items=[price(amount, 0, currency=currency), price("2", 0, "SKU-1")])

        assert (results[0].outcome, results[0].code) == (FAILED, "invalid")
        assert message in results[0].message
        assert results[1].outcome == APPLIED
