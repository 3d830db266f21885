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

A row without `updated_at` is versioned at the run's creation time less one microsecond per
line before the file's last record (`row_version`). The catalog writes only what is strictly
newer, so with one shared version the first of two such rows for a key would win whenever
they fall in different batches; this way the later row wins, in whatever order the batches
run, and no row claims to be newer than the upload. (Rows that give equal `updated_at`
values tie as in the catalog: the later one wins within a batch, the first applied across.)
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import NamedTuple

from catalog.services import (
    UNKNOWN_SKU,
    ItemResult,
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

from .parsing import CatalogRow, RowError


class RowOutcome(enum.StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"


# A NamedTuple, as the catalog's items (catalog.services): one is made per row.
class RowResult(NamedTuple):
    line: int
    outcome: RowOutcome
    error: RowError | None = None  # set when the outcome is FAILED


# The column a failed part is reported under when the catalog refuses the value itself.
_PART_COLUMNS = {"product": "name", "price": "price", "stock": "quantity"}


def row_version(row: CatalogRow, *, created_at: datetime, last_line: int) -> datetime:
    """Return the version a row is applied with: its own updated_at, else one from its line."""
    if row.updated_at is not None:
        return row.updated_at
    return created_at - timedelta(microseconds=max(last_line - row.line, 0))


def rows_apply(
    rows: Sequence[CatalogRow],
    *,
    created_at: datetime,
    last_line: int,
) -> list[RowResult]:
    """Apply the rows in the caller's transaction and return one result per row, in order.

    `created_at` and `last_line` (the run's) version the rows that give no updated_at.
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
        at = row_version(row, created_at=created_at, last_line=last_line)
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

    # One changed_at for the whole batch: each product row is rewritten once, not per call.
    with catalog_write_clock():
        if sum(1 for kind in (products, stock, prices) if kind) > 1:
            # Several catalog calls: lock the union first (one call locks in order itself).
            products_lock(skus={row.sku for row in rows})
        results: dict[str, list[ItemResult]] = {
            "product": product_upsert(items=products) if products else [],
            "stock": stock_apply(items=stock) if stock else [],
            "price": price_apply(items=prices) if prices else [],
        }
    known = set(products_lock(skus={rows[i].sku for i in bare})) if bare else set()
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
    stale = True
    for part, position in parts:  # the first failed part, in reporting order, is the error
        result = results[part][position]
        if result.outcome is Outcome.FAILED:
            column = "sku" if result.code == UNKNOWN_SKU else _PART_COLUMNS[part]
            return _failed(row, column, result.code, result.message)
        stale = stale and result.outcome is Outcome.STALE
    return RowResult(row.line, RowOutcome.SKIPPED if stale else RowOutcome.SUCCEEDED)


def _failed(row: CatalogRow, column: str, code: str, message: str) -> RowResult:
    return RowResult(
        row.line, RowOutcome.FAILED, RowError(row.line, row.sku, column, code, message)
    )
