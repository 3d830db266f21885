"""The only code that writes products, stock levels and prices.

Webhooks, CSV imports and reconciliation all call these functions. Every write is versioned
by the ERP's `updated_at` (CONTRACT §2): a value is written only when strictly newer than the
stored one, so re-delivery, duplicates and out-of-order arrival converge to the newest value.

Each call is set-based and runs inside the caller's transaction (as a savepoint): one SELECT
that maps skus to products and locks them, one versioned upsert, and for stock and prices one
UPDATE of Product.changed_at. On PostgreSQL each is one statement with array parameters,
whatever the size; on SQLite calls over 1,000 distinct keys or skus run them once per 1,000
(see upsert.ROWS_PER_STATEMENT).

The SELECT locks the products in id order before anything is written (PostgreSQL; SQLite has
one writer anyway): concurrent calls for the same products queue in one order instead of
deadlocking, and product_upsert merges partial items into a row nobody else can change
before the caller commits.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from .models import (
    AMOUNT_DECIMAL_PLACES,
    AMOUNT_MAX_DIGITS,
    NAME_MAX_LENGTH,
    QUANTITY_MAX,
    SKU_MAX_LENGTH,
    WAREHOUSE_MAX_LENGTH,
    Price,
    Product,
    StockLevel,
)
from .upsert import chunked, execute_with_arrays, versioned_upsert


@dataclass(frozen=True)
class StockItem:
    sku: str
    warehouse: str
    quantity: int
    updated_at: datetime  # tz-aware


@dataclass(frozen=True)
class PriceItem:
    sku: str
    currency: str
    amount: Decimal
    updated_at: datetime  # tz-aware


@dataclass(frozen=True)
class ProductItem:
    sku: str
    name: str | None  # None: leave as is (an unknown sku then fails)
    active: bool | None  # None: leave as is (True for a new product)
    updated_at: datetime  # tz-aware


class Outcome(StrEnum):
    APPLIED = "applied"
    STALE = "stale"
    FAILED = "failed"


@dataclass(frozen=True)
class ItemResult:
    index: int
    outcome: Outcome
    code: str = ""
    message: str = ""


# Item error codes (ItemResult.code for FAILED). unknown_sku is permanent for the item but
# may succeed when retried by hand after the product exists.
UNKNOWN_SKU = "unknown_sku"
INVALID = "invalid"

# Inside catalog_write_clock: a list holding the block's changed_at once the first write took it.
_write_clock: ContextVar[list[datetime] | None] = ContextVar("catalog_write_clock", default=None)


@contextmanager
def catalog_write_clock() -> Iterator[None]:
    """Stamp every product changed inside the block with one changed_at, in one transaction.

    For callers that make several catalog calls in one transaction (an import batch writes
    products, then prices, then stock): each product row is then rewritten once, not once per
    call. The time is taken at the first write, after the first locks.
    """
    token = _write_clock.set([])
    try:
        with transaction.atomic():
            yield
    finally:
        _write_clock.reset(token)


def _now() -> datetime:
    """The changed_at for a write: the block's clock inside catalog_write_clock, else now."""
    clock = _write_clock.get()
    if clock is None:
        return timezone.now()
    if not clock:
        clock.append(timezone.now())
    return clock[0]


_CURRENCY_RE = re.compile(r"[A-Z]{3}")
_AMOUNT_STEP = Decimal(1).scaleb(-AMOUNT_DECIMAL_PLACES)
_AMOUNT_LIMIT = Decimal(10) ** (AMOUNT_MAX_DIGITS - AMOUNT_DECIMAL_PLACES)


def stock_apply(*, items: Sequence[StockItem]) -> list[ItemResult]:
    """Write each stock level (sku, warehouse) whose updated_at is newer than the stored one.

    Returns one result per item, in order. Newer wins; an equal or older item is STALE; within
    the call the newest item per key wins and the last one on a tie. Idempotent: applying the
    same items again writes nothing and reports them STALE.
    """
    return _apply_levels(
        items,
        model=StockLevel,
        key_field="warehouse",
        value_field="quantity",
        check=_check_stock,
    )


def price_apply(*, items: Sequence[PriceItem]) -> list[ItemResult]:
    """Write each price (sku, currency) whose updated_at is newer than the stored one.

    Returns one result per item, in order. Newer wins; an equal or older item is STALE; within
    the call the newest item per key wins and the last one on a tie. Idempotent: applying the
    same items again writes nothing and reports them STALE.
    """
    return _apply_levels(
        items,
        model=Price,
        key_field="currency",
        value_field="amount",
        check=_check_price,
    )


def product_upsert(*, items: Sequence[ProductItem]) -> list[ItemResult]:
    """Create products and update name/active where the item is newer than the stored version.

    Returns one result per item, in order. An unknown sku is created when some item for it in
    the call has a name, else it fails with unknown_sku. Per sku the call behaves like applying
    its items newer than the stored version one by one in updated_at order (the later one on a
    tie), each setting only the fields it gives: name and active share one version. An item
    whose fields were all overridden by a later one in the call is STALE. Idempotent.
    """
    results: list[ItemResult | None] = [
        _invalid(i, _check_product(item)) for i, item in enumerate(items)
    ]
    by_sku: dict[str, list[int]] = {}
    for index, item in enumerate(items):
        if results[index] is None:
            by_sku.setdefault(item.sku, []).append(index)

    with transaction.atomic():
        stored = {
            sku: (name, active, updated_at)
            for sku, name, active, updated_at in _lock_products(
                by_sku, ("sku", "name", "active", "updated_at")
            )
        }
        # Taken after the locks: changed_at should be as close to the commit as it can be.
        now = _now()
        rows: list[tuple[Any, ...]] = []
        # sku -> (items that reach the final row, items newer than the stored version)
        plans: dict[str, tuple[set[int], list[int]]] = {}
        for sku, indexes in sorted(by_sku.items()):
            current = stored.get(sku)
            if current is None and all(items[i].name is None for i in indexes):
                for i in indexes:
                    results[i] = _unknown_sku(i, sku)
                continue
            newer = [i for i in indexes if current is None or items[i].updated_at > current[2]]
            for i in set(indexes) - set(newer):
                results[i] = ItemResult(i, Outcome.STALE)
            if not newer:
                continue
            name, active = (current[0], current[1]) if current else (None, True)
            sources: dict[str, int] = {}
            newer.sort(key=lambda i: (items[i].updated_at, i))
            for i in newer:
                if items[i].name is not None:
                    name, sources["name"] = items[i].name, i
                if items[i].active is not None:
                    active, sources["active"] = items[i].active, i
            last = newer[-1]
            rows.append((sku, name, active, now, items[last].updated_at, now))
            plans[sku] = ({last, *sources.values()}, newer)

        written = {
            sku
            for (sku,) in versioned_upsert(
                model=Product,
                columns=("sku", "name", "active", "created_at", "updated_at", "changed_at"),
                conflict=("sku",),
                update=("name", "active", "updated_at", "changed_at"),
                rows=rows,
                returning=("sku",),
            )
        }
    for sku, (contributors, newer) in plans.items():
        for i in newer:
            applied = sku in written and i in contributors
            results[i] = ItemResult(i, Outcome.APPLIED if applied else Outcome.STALE)
    return _complete(results)


# -- stock and prices ---------------------------------------------------------------------


def _apply_levels(
    items: Sequence[StockItem] | Sequence[PriceItem],
    *,
    model: type[StockLevel] | type[Price],
    key_field: str,
    value_field: str,
    check: Callable[[Any], str],
) -> list[ItemResult]:
    results: list[ItemResult | None] = [_invalid(i, check(item)) for i, item in enumerate(items)]
    skus = {item.sku for i, item in enumerate(items) if results[i] is None}
    with transaction.atomic():
        product_ids = dict(_lock_products(skus, ("sku", "id")))
        # (product id, warehouse/currency) -> index of the item that wins within this call
        winners: dict[tuple[int, str], int] = {}
        for index, item in enumerate(items):
            if results[index] is not None:
                continue
            product_id = product_ids.get(item.sku)
            if product_id is None:
                results[index] = _unknown_sku(index, item.sku)
                continue
            key = (product_id, getattr(item, key_field))
            best = winners.get(key)
            # `>=`: on a tie the later item wins.
            if best is None or item.updated_at >= items[best].updated_at:
                if best is not None:
                    results[best] = ItemResult(best, Outcome.STALE)
                winners[key] = index
            else:
                results[index] = ItemResult(index, Outcome.STALE)

        rows = [
            (key[0], key[1], getattr(items[i], value_field), items[i].updated_at)
            for key, i in sorted(winners.items())
        ]
        written = {
            (product_id, key)
            for product_id, key in versioned_upsert(
                model=model,
                columns=("product", key_field, value_field, "updated_at"),
                conflict=("product", key_field),
                update=(value_field, "updated_at"),
                rows=rows,
                returning=("product", key_field),
            )
        }
        _touch_products(sorted({product_id for product_id, _ in written}), _now())
    for key, index in winners.items():
        results[index] = ItemResult(index, Outcome.APPLIED if key in written else Outcome.STALE)
    return _complete(results)


def products_lock(*, skus: Iterable[str]) -> dict[str, int]:
    """Lock the existing products with these skus in id order; return sku -> id.

    For a caller that makes several catalog calls in one transaction (an import batch): taking
    the union first keeps one lock order across the calls, so concurrent callers queue instead
    of deadlocking. The skus missing from the answer do not exist.
    """
    return dict(_lock_products(skus, ("sku", "id")))


def _lock_products(skus: Iterable[str], fields: tuple[str, ...]) -> list[tuple[Any, ...]]:
    """Return `fields` of the products with these skus, locking their rows in id order.

    The lock is the one an UPDATE of changed_at takes anyway (FOR NO KEY UPDATE): rows that
    merely reference the product (foreign keys) are not blocked by it.
    """
    skus = sorted(skus)
    if not skus:
        return []
    if connection.vendor == "postgresql":
        # One array parameter instead of an IN list of up to 1,000 placeholders.
        columns = ", ".join(_product_column(name) for name in fields)
        return execute_with_arrays(
            f"SELECT {columns} FROM {_PRODUCT_TABLE} WHERE sku = ANY(%b)"  # noqa: S608
            " ORDER BY id FOR NO KEY UPDATE",
            [skus],
        )
    found: list[tuple[Any, ...]] = []
    for chunk in chunked(skus):
        found.extend(
            Product.objects.filter(sku__in=chunk)
            .order_by("id")
            .select_for_update(no_key=True)
            .values_list(*fields)
        )
    return found


def _touch_products(product_ids: Sequence[int], now: datetime) -> None:
    """Mark these products as changed now, for the listing's updated_since.

    A product already stamped with this `now` (see catalog_write_clock) is not rewritten.
    """
    if not product_ids:
        return
    if connection.vendor == "postgresql":
        execute_with_arrays(
            f"UPDATE {_PRODUCT_TABLE} SET changed_at = %b"  # noqa: S608
            " WHERE id = ANY(%b) AND changed_at IS DISTINCT FROM %b",
            [now, list(product_ids), now],
            returns_rows=False,
        )
        return
    for chunk in chunked(product_ids):
        Product.objects.filter(pk__in=chunk).exclude(changed_at=now).update(changed_at=now)


_PRODUCT_TABLE = Product._meta.db_table


def _product_column(name: str) -> str:
    return Product._meta.get_field(name).column  # type: ignore[union-attr]


# -- validation: a bad item fails alone instead of breaking its batch ----------------------


def _check_stock(item: StockItem) -> str:
    return (
        _check_sku(item.sku)
        or _check_text("warehouse", item.warehouse, WAREHOUSE_MAX_LENGTH)
        or _check_quantity(item.quantity)
        or _check_version(item.updated_at)
    )


def _check_price(item: PriceItem) -> str:
    return (
        _check_sku(item.sku)
        or _check_currency(item.currency)
        or _check_amount(item.amount)
        or _check_version(item.updated_at)
    )


def _check_product(item: ProductItem) -> str:
    if item.name is not None and (message := _check_text("name", item.name, NAME_MAX_LENGTH)):
        return message
    if item.active is not None and not isinstance(item.active, bool):
        return "active must be true, false or absent"
    return _check_sku(item.sku) or _check_version(item.updated_at)


def _check_sku(sku: object) -> str:
    return _check_text("sku", sku, SKU_MAX_LENGTH)


def _check_text(field: str, value: object, max_length: int) -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= max_length:
        return f"{field} must be 1 to {max_length} characters"
    if "\x00" in value:
        return f"{field} must not contain NUL characters"
    return ""


def _check_quantity(quantity: object) -> str:
    if isinstance(quantity, bool) or not isinstance(quantity, int):
        return "quantity must be an integer"
    if not 0 <= quantity <= QUANTITY_MAX:
        return f"quantity must be between 0 and {QUANTITY_MAX}"
    return ""


def _check_currency(currency: object) -> str:
    if not isinstance(currency, str) or not _CURRENCY_RE.fullmatch(currency):
        return "currency must be an ISO 4217 code in upper case"
    return ""


def _check_amount(amount: object) -> str:
    if not isinstance(amount, Decimal) or not amount.is_finite():
        return "amount must be a finite decimal"
    if amount < 0 or amount >= _AMOUNT_LIMIT:
        return f"amount must be at least 0 and below {_AMOUNT_LIMIT}"
    if amount != amount.quantize(_AMOUNT_STEP):
        return f"amount must have at most {AMOUNT_DECIMAL_PLACES} decimal places"
    return ""


def _check_version(updated_at: object) -> str:
    if not isinstance(updated_at, datetime) or timezone.is_naive(updated_at):
        return "updated_at must be a datetime with a UTC offset"
    return ""


def _invalid(index: int, message: str) -> ItemResult | None:
    return ItemResult(index, Outcome.FAILED, INVALID, message) if message else None


def _unknown_sku(index: int, sku: str) -> ItemResult:
    return ItemResult(index, Outcome.FAILED, UNKNOWN_SKU, f"no product with sku {sku!r}")


def _complete(results: list[ItemResult | None]) -> list[ItemResult]:
    assert all(result is not None for result in results)
    return results  # type: ignore[return-value]
