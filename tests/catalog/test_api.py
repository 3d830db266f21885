"""Storefront read API: product by sku, and the keyset-paginated listing."""

from __future__ import annotations

import base64
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from django.test import Client

from catalog.models import Product
from catalog.services import PriceItem, StockItem, price_apply, stock_apply

from .helpers import at, make_product

pytestmark = pytest.mark.django_db

LIST_URL = "/api/v1/products"
T0_JSON = "2026-11-22T10:00:00.000000Z"


@pytest.fixture
def client() -> Client:
    return Client()


def seed(count: int, *, changed_at: Any = None) -> list[str]:
    """Create `count` products, each with two stock levels and two prices."""
    skus = [f"SKU-{n:03}" for n in range(count)]
    Product.objects.bulk_create(Product(sku=sku, name=f"Product {sku}") for sku in skus)
    stock_apply(items=[StockItem(s, w, 2, at(0)) for s in skus for w in ("main", "north")])
    price_apply(items=[PriceItem(s, c, Decimal(5), at(0)) for s in skus for c in ("EUR", "USD")])
    if changed_at:
        Product.objects.update(changed_at=changed_at)
    return skus


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode()


def walk(client: Client, url: str) -> list[dict]:
    pages = []
    while url:
        response = client.get(url)
        assert response.status_code == 200, response.content
        pages.append(response.json())
        url = response.json()["next"]
    return pages


class TestProductDetail:
    def test_returns_the_product_with_stock_prices_and_availability(self, client: Client) -> None:
        make_product("SKU-1", "Widget")
        stock_apply(
            items=[
                StockItem("SKU-1", "north", 5, at(1.5)),
                StockItem("SKU-1", "main", 12, at(0)),
            ]
        )
        price_apply(
            items=[
                PriceItem("SKU-1", "EUR", Decimal("19.99"), at(0)),
                PriceItem("SKU-1", "USD", Decimal("20"), at(0)),
                PriceItem("SKU-1", "JPY", Decimal("0.1234"), at(0)),
                PriceItem("SKU-1", "GBP", Decimal("7.5"), at(0)),
            ]
        )
        changed_at = Product.objects.get().changed_at

        response = client.get("/api/v1/products/SKU-1")

        assert response.status_code == 200
        assert response["Content-Type"] == "application/json"
        assert response.json() == {
            "sku": "SKU-1",
            "name": "Widget",
            "active": True,
            "available": 17,
            "updated_at": changed_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "stock": [
                {"warehouse": "main", "quantity": 12, "updated_at": T0_JSON},
                {"warehouse": "north", "quantity": 5, "updated_at": "2026-11-22T10:00:01.500000Z"},
            ],
            "prices": [
                {"currency": "EUR", "amount": "19.99", "updated_at": T0_JSON},
                {"currency": "GBP", "amount": "7.50", "updated_at": T0_JSON},
                {"currency": "JPY", "amount": "0.1234", "updated_at": T0_JSON},
                {"currency": "USD", "amount": "20.00", "updated_at": T0_JSON},
            ],
        }

    def test_says_the_same_as_the_listing(self, client: Client) -> None:
        # The detail is one query of its own; the listing reads the same rows differently.
        make_product("SKU-1", "Widget")
        stock_apply(items=[StockItem("SKU-1", w, 3, at(0.123456)) for w in ("b", "a", "c")])
        price_apply(
            items=[
                PriceItem("SKU-1", "USD", Decimal("99999999.9999"), at(2)),
                PriceItem("SKU-1", "EUR", Decimal("0.0001"), at(1)),
            ]
        )

        detail = client.get("/api/v1/products/SKU-1").json()

        assert [detail] == client.get(LIST_URL).json()["results"]
        assert [level["warehouse"] for level in detail["stock"]] == ["a", "b", "c"]
        assert [price["amount"] for price in detail["prices"]] == ["0.0001", "99999999.9999"]

    def test_a_product_without_stock_or_prices_has_nothing_available(self, client: Client) -> None:
        make_product("SKU-1", "Widget", active=False)

        body = client.get("/api/v1/products/SKU-1").json()

        assert (body["active"], body["available"], body["stock"], body["prices"]) == (
            False,
            0,
            [],
            [],
        )

    def test_a_sku_with_a_slash_or_space_is_found(self, client: Client) -> None:
        make_product("SKU 1/BLUE", "Widget")

        response = client.get("/api/v1/products/SKU%201%2FBLUE")

        assert response.status_code == 200
        assert response.json()["sku"] == "SKU 1/BLUE"

    def test_unknown_sku_is_404_json(self, client: Client) -> None:
        response = client.get("/api/v1/products/NOPE")

        assert response.status_code == 404
        assert response.json() == {
            "errors": [{"path": "sku", "message": "no product with this sku"}]
        }

    def test_a_sku_with_a_nul_character_is_404_not_a_server_error(self, client: Client) -> None:
        # PostgreSQL text cannot hold NUL, so no sku has one; the driver refuses to send it
        make_product("SKU-1", "Widget")

        response = client.get("/api/v1/products/SKU-1%00")

        assert response.status_code == 404
        assert response.json()["errors"][0]["path"] == "sku"

    def test_constant_queries(self, client: Client, django_assert_max_num_queries: Any) -> None:
        seed(1)

        with django_assert_max_num_queries(3):
            assert client.get("/api/v1/products/SKU-000").status_code == 200


class TestProductList:
    def test_walk_returns_every_product_exactly_once(self, client: Client) -> None:
        # Ties on changed_at are the hard case for keyset pagination: give half of them one.
        skus = seed(23)
        Product.objects.filter(sku__lt="SKU-012").update(changed_at=at(0))

        pages = walk(client, f"{LIST_URL}?limit=5")

        assert [len(page["results"]) for page in pages] == [5, 5, 5, 5, 3]
        seen = [product["sku"] for page in pages for product in page["results"]]
        assert sorted(seen) == skus
        assert len(seen) == len(set(seen))

    def test_results_are_in_change_order_and_next_is_absolute(self, client: Client) -> None:
        for n, seconds in enumerate([30, 10, 20]):
            make_product(f"SKU-{n}", changed_at=at(seconds))

        body = client.get(f"{LIST_URL}?limit=2").json()

        assert [p["sku"] for p in body["results"]] == ["SKU-1", "SKU-2"]
        next_url = urlsplit(body["next"])
        assert (next_url.scheme, next_url.netloc, next_url.path) == ("http", "testserver", LIST_URL)
        assert parse_qs(next_url.query)["limit"] == ["2"]

    def test_last_page_has_no_next(self, client: Client) -> None:
        seed(3)

        assert client.get(f"{LIST_URL}?limit=3").json()["next"] is None

    def test_empty_catalog(self, client: Client) -> None:
        assert client.get(LIST_URL).json() == {"results": [], "next": None}

    def test_default_limit_is_100(self, client: Client) -> None:
        seed(101)

        body = client.get(LIST_URL).json()

        assert len(body["results"]) == 100
        assert body["next"] is not None

    def test_updated_since_is_inclusive_and_carried_into_next(self, client: Client) -> None:
        for n in range(5):
            make_product(f"SKU-{n}", changed_at=at(n))

        pages = walk(client, f"{LIST_URL}?updated_since=2026-11-22T10:00:02Z&limit=2")

        assert [p["sku"] for page in pages for p in page["results"]] == ["SKU-2", "SKU-3", "SKU-4"]
        assert "updated_since" in parse_qs(urlsplit(pages[0]["next"]).query)

    @pytest.mark.parametrize(
        "since",
        [
            "2026-11-22T11:00:02%2B01:00",
            "2026-11-22T11:00:02+01:00",  # an unescaped "+" arrives as a space
            "2026-11-22t10:00:02.000z",
            "2026-11-22 10:00:02Z",
        ],
    )
    def test_updated_since_accepts_any_rfc3339_offset(self, client: Client, since: str) -> None:
        for n in range(4):
            make_product(f"SKU-{n}", changed_at=at(n))

        body = client.get(f"{LIST_URL}?updated_since={since}").json()

        assert [p["sku"] for p in body["results"]] == ["SKU-2", "SKU-3"]

    def test_a_product_changed_during_a_walk_is_seen_again(self, client: Client) -> None:
        seed(4, changed_at=at(0))
        first = client.get(f"{LIST_URL}?limit=2").json()

        stock_apply(items=[StockItem("SKU-000", "main", 9, at(1))])
        rest = walk(client, first["next"])

        assert [p["sku"] for page in rest for p in page["results"]] == [
            "SKU-002",
            "SKU-003",
            "SKU-000",
        ]

    def test_constant_queries_for_a_full_page(
        self, client: Client, django_assert_max_num_queries: Any
    ) -> None:
        seed(60)

        with django_assert_max_num_queries(3):
            body = client.get(f"{LIST_URL}?limit=50").json()
        with django_assert_max_num_queries(3):
            client.get(body["next"])

        assert all(len(p["stock"]) == 2 and len(p["prices"]) == 2 for p in body["results"])

    @pytest.mark.parametrize(
        ("query", "path"),
        [
            ("updated_since=yesterday", "updated_since"),
            ("updated_since=2026-11-22T10:00:00", "updated_since"),  # no offset
            ("updated_since=2026-11-22", "updated_since"),
            ("updated_since=2026-13-40T10:00:00Z", "updated_since"),
            ("updated_since=0001-01-01T00:00:00%2B01:00", "updated_since"),
            ("updated_since=", "updated_since"),
            ("cursor=not-a-cursor", "cursor"),
            ("cursor=" + b64(b'{"a":1}'), "cursor"),
            ("cursor=" + b64(b'["2026-11-22T10:00:00Z",-1]'), "cursor"),  # negative id
            ("cursor=" + b64(b'["2026-11-22T10:00:00Z",true]'), "cursor"),
            ("cursor=" + b64(b"[" * 150), "cursor"),  # over the length bound
            ("limit=0", "limit"),
            ("limit=501", "limit"),
            ("limit=ten", "limit"),
            ("limit=-5", "limit"),
            ("limit=", "limit"),
        ],
    )
    def test_bad_parameters_are_400_naming_the_parameter(
        self, client: Client, query: str, path: str
    ) -> None:
        response = client.get(f"{LIST_URL}?{query}")

        assert response.status_code == 400
        [error] = response.json()["errors"]
        assert error["path"] == path
        assert error["message"]

    def test_every_bad_parameter_is_reported_at_once(self, client: Client) -> None:
        response = client.get(f"{LIST_URL}?updated_since=x&cursor=y&limit=z")

        assert response.status_code == 400
        paths = [error["path"] for error in response.json()["errors"]]
        assert paths == ["updated_since", "cursor", "limit"]


@pytest.mark.parametrize("url", [LIST_URL, "/api/v1/products/SKU-1"])
@pytest.mark.parametrize("method", ["post", "put", "patch", "delete"])
def test_only_get_is_allowed(client: Client, url: str, method: str) -> None:
    make_product("SKU-1")

    response = getattr(client, method)(url)

    assert response.status_code == 405
    assert response["Allow"] == "GET, HEAD"
    assert "errors" in response.json()
