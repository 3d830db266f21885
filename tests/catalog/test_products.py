"""product_upsert: creates named unknown products, versions name and active together."""

from __future__ import annotations

import pytest

from catalog.models import Product
from catalog.services import ItemResult, Outcome, ProductItem, product_upsert

from .helpers import at, make_product

pytestmark = pytest.mark.django_db

APPLIED, STALE, FAILED = Outcome.APPLIED, Outcome.STALE, Outcome.FAILED


def item(
    seconds: float, name: str | None = None, active: bool | None = None, sku: str = "SKU-1"
) -> ProductItem:
    return ProductItem(sku=sku, name=name, active=active, updated_at=at(seconds))


def state(sku: str = "SKU-1") -> tuple[str, bool, object]:
    product = Product.objects.get(sku=sku)
    return product.name, product.active, product.updated_at


def outcomes(results: list[ItemResult]) -> list[Outcome]:
    return [result.outcome for result in results]


def test_unknown_sku_with_a_name_is_created_active() -> None:
    results = product_upsert(items=[item(0, name="Widget")])

    assert results == [ItemResult(index=0, outcome=APPLIED)]
    assert state() == ("Widget", True, at(0))


def test_unknown_sku_with_a_name_and_active_false_is_created_inactive() -> None:
    product_upsert(items=[item(0, name="Widget", active=False)])

    assert state() == ("Widget", False, at(0))


def test_unknown_sku_without_a_name_fails_with_unknown_sku() -> None:
    results = product_upsert(items=[item(0, active=False)])

    assert (results[0].outcome, results[0].code) == (FAILED, "unknown_sku")
    assert not Product.objects.exists()


def test_newer_item_updates_the_fields_it_gives_and_leaves_the_rest() -> None:
    make_product(name="Widget", active=True, updated_at=at(0))

    results = product_upsert(items=[item(1, active=False)])

    assert outcomes(results) == [APPLIED]
    assert state() == ("Widget", False, at(1))


@pytest.mark.parametrize("seconds", [0, -1], ids=["equal", "older"])
def test_equal_or_older_item_is_stale(seconds: float) -> None:
    make_product(name="Widget", updated_at=at(0))

    results = product_upsert(items=[item(seconds, name="Gadget", active=False)])

    assert outcomes(results) == [STALE]
    assert state() == ("Widget", True, at(0))


def test_items_for_one_sku_apply_in_version_order_each_setting_its_fields() -> None:
    make_product(name="Widget", updated_at=at(0))

    results = product_upsert(
        items=[item(3, active=False), item(2, name="Gadget"), item(1, name="Old"), item(-1, "X")]
    )

    # "Old" was overridden by "Gadget"; -1 is older than the stored version.
    assert outcomes(results) == [APPLIED, APPLIED, STALE, STALE]
    assert state() == ("Gadget", False, at(3))


def test_last_item_wins_a_tie_within_one_call() -> None:
    results = product_upsert(items=[item(0, name="First"), item(0, name="Second")])

    assert outcomes(results) == [STALE, APPLIED]
    assert state() == ("Second", True, at(0))


def test_a_product_created_in_the_call_takes_nameless_items_for_it() -> None:
    results = product_upsert(items=[item(1, active=False), item(0, name="Widget")])

    assert outcomes(results) == [APPLIED, APPLIED]
    assert state() == ("Widget", False, at(1))


def test_reapplying_the_same_batch_changes_nothing() -> None:
    batch = [item(0, "A", sku="A"), item(0, "B", False, sku="B"), item(0, active=True, sku="X")]
    first = product_upsert(items=batch)
    snapshot = list(Product.objects.order_by("sku").values())

    again = product_upsert(items=batch)

    assert outcomes(first) == [APPLIED, APPLIED, FAILED]
    assert outcomes(again) == [STALE, STALE, FAILED]
    assert list(Product.objects.order_by("sku").values()) == snapshot


def test_a_write_moves_changed_at_and_keeps_created_at() -> None:
    product = make_product(updated_at=at(0), changed_at=at(-100), created_at=at(-100))

    product_upsert(items=[item(1, name="Renamed")])

    product.refresh_from_db()
    assert product.changed_at > at(-100)
    assert product.created_at == at(-100)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (ProductItem("", "Widget", None, at(0)), "sku"),
        (ProductItem("SKU-1", "", None, at(0)), "name"),
        (ProductItem("SKU-1", "n" * 256, None, at(0)), "name"),
        (ProductItem("SKU-1", "Widget", "yes", at(0)), "active"),  # type: ignore[arg-type]
    ],
)
def test_an_invalid_item_fails_alone(bad: ProductItem, message: str) -> None:
    results = product_upsert(items=[bad, item(0, name="Other", sku="OTHER")])

    assert (results[0].outcome, results[0].code) == (FAILED, "invalid")
    assert message in results[0].message
    assert results[1].outcome == APPLIED
    assert list(Product.objects.values_list("sku", flat=True)) == ["OTHER"]
