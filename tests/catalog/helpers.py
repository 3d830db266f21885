"""Shared test helpers: a fixed clock so versions read as offsets in seconds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from catalog.models import Price, Product, StockLevel

T0 = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    """Return the ERP version `seconds` after T0."""
    return T0 + timedelta(seconds=seconds)


def make_product(sku: str = "SKU-1", name: str = "Widget", **fields: object) -> Product:
    return Product.objects.create(sku=sku, name=name, **fields)


def stock_of(sku: str, warehouse: str) -> tuple[int, datetime]:
    level = StockLevel.objects.get(product__sku=sku, warehouse=warehouse)
    return level.quantity, level.updated_at


def price_of(sku: str, currency: str) -> tuple[str, datetime]:
    price = Price.objects.get(product__sku=sku, currency=currency)
    return str(price.amount.normalize()), price.updated_at
