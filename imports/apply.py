"""Apply a batch of validated CSV rows to the catalog, set-based, and judge each row.

A row carries up to three facts (CONTRACT §4): the product (name/active), a price
(price+currency) and a stock level (quantity+warehouse). Each kind goes to its catalog
service in one call for the whole batch; the catalog's per-item results are then folded back
into one outcome per row:

- failed    if any part failed (the first failure is the row's error),
- skipped   if every part was stale (older than or as old as what is stored),
- succeeded otherwise.

A row with nothing but a sku is skipped when the product exists and fails `unknown_sku`
when it does not, like every other row that names an unknown product without a name.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from catalog.models import Product
from catalog.services import (
    UNKNOWN_SKU,
    ItemResult,
    Outcome,
    PriceItem,
    ProductItem,
    StockItem,
    price_apply,
    product_upsert,
    stock_apply,
)

from .parsing import CatalogRow, RowError


class RowOutcome(enum.StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"


@dataclass(frozen=True)
class RowResult:
    line: int
    outcome: RowOutcome
    error: RowError | None = None  # set when the outcome is FAILED


# The column a failed part is reported under when the catalog refuses the value itself.
_PART_COLUMNS = {"product": "name", "price": "price", "stock": "quantity"}


def rows_apply(rows: Sequence[CatalogRow], *, default_updated_at: datetime) -> list[RowResult]:
    """Apply the rows in the caller's transaction and return one result per row, in order.

    Products are written first, so a row that names a new product makes it exist for the
    price and stock of every row in the same call.
    """
    products: list[ProductItem] = []
    prices: list[PriceItem] = []
    stock: list[StockItem] = []
    # row index -> [(part, index into that part's items)], in reporting order
    parts: list[list[tuple[str, int]]] = [[] for _ in rows]
    bare: list[int] = []
    for index, row in enumerate(rows):
        at = row.updated_at or default_updated_at
        if row.name is not None or row.active is not None:
            parts[index].append(("product", len(products)))
            products.append(
                ProductItem(sku=row.sku, name=row.name, active=row.active, updated_at=at)
            )
        if row.price is not None and row.currency is not None:
            parts[index].append(("price", len(prices)))
            prices.append(
                PriceItem(sku=row.sku, currency=row.currency, amount=row.price, updated_at=at)
            )
        if row.quantity is not None and row.warehouse is not None:
            parts[index].append(("stock", len(stock)))
            stock.append(
                StockItem(
                    sku=row.sku, warehouse=row.warehouse, quantity=row.quantity, updated_at=at
                )
            )
        if not parts[index]:
            bare.append(index)

    _lock_products({row.sku for row in rows})
    results: dict[str, list[ItemResult]] = {
        "product": product_upsert(items=products) if products else [],
        "stock": stock_apply(items=stock) if stock else [],
        "price": price_apply(items=prices) if prices else [],
    }
    known = _existing_skus({rows[i].sku for i in bare})
    return [_judge(row, parts[index], results, known) for index, row in enumerate(rows)]


def _judge(
    row: CatalogRow,
    parts: list[tuple[str, int]],
    results: dict[str, list[ItemResult]],
    known: set[str],
) -> RowResult:
    if not parts:
        if row.sku in known:
            return RowResult(row.line, RowOutcome.SKIPPED)
        return _failed(row, "sku", UNKNOWN_SKU, f"no product with sku {row.sku!r}")
    outcomes = [results[part][position] for part, position in parts]
    for (part, _), result in zip(parts, outcomes, strict=True):
        if result.outcome == Outcome.FAILED:
            column = "sku" if result.code == UNKNOWN_SKU else _PART_COLUMNS[part]
            return _failed(row, column, result.code, result.message)
    if all(result.outcome == Outcome.STALE for result in outcomes):
        return RowResult(row.line, RowOutcome.SKIPPED)
    return RowResult(row.line, RowOutcome.SUCCEEDED)


def _failed(row: CatalogRow, column: str, code: str, message: str) -> RowResult:
    return RowResult(
        row.line, RowOutcome.FAILED, RowError(row.line, row.sku, column, code, message)
    )


def _lock_products(skus: set[str]) -> None:
    """Lock the batch's existing products in id order before any catalog call.

    The three catalog calls each lock their own products in id order; taking the union first
    keeps that one order across the calls too, so concurrent batches queue instead of
    deadlocking. (No effect on SQLite, which has one writer anyway.)
    """
    if skus:
        list(
            Product.objects.filter(sku__in=sorted(skus))
            .order_by("id")
            .select_for_update(no_key=True)
            .values_list("id", flat=True)
        )


def _existing_skus(skus: set[str]) -> set[str]:
    if not skus:
        return set()
    return set(Product.objects.filter(sku__in=sorted(skus)).values_list("sku", flat=True))
