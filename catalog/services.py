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

import operator
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any, NamedTuple

from django.db import connection, transaction
from django.utils import timezone

from syncplatform.sql import execute_with_arrays

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
from .upsert import chunked, versioned_upsert


# Items and results are immutable NamedTuples rather than frozen dataclasses: an import makes
# several per row, and a frozen dataclass's __init__ costs more than twice as much.
class StockItem(NamedTuple):
    sku: str
    warehouse: str
    quantity: int
    updated_at: datetime  # tz-aware


class PriceItem(NamedTuple):
    sku: str
    currency: str
    amount: Decimal
    updated_at: datetime  # tz-aware


class ProductItem(NamedTuple):
    sku: str
    name: str | None  # None: leave as is (an unknown sku then fails)
    active: bool | None  # None: leave as is (True for a new product)
    updated_at: datetime  # tz-aware


class Outcome(StrEnum):
    APPLIED = "applied"
    STALE = "stale"
    FAILED = "failed"


class ItemResult(NamedTuple):
    index: int
    outcome: Outcome
    code: str = ""
    message: str = ""


# Item error codes (ItemResult.code for FAILED). unknown_sku is permanent for the item but
# may succeed when retried by hand after the product exists.
UNKNOWN_SKU = "unknown_sku"
INVALID = "invalid"

# What a product row looks like to the services: the columns the lock SELECT reads.
_LOCK_FIELDS = ("sku", "id", "name", "active", "updated_at")
ProductRow = tuple[str, int, str, bool, datetime]


@dataclass
class _WriteBlock:
    """What one catalog_write_clock block has learnt, valid until its transaction ends.

    The products it locked cannot change under it before the commit except through this
    block, which records its own writes here: so the later calls of the block read them
    from here instead of locking and reading the same rows again.
    """

    now: datetime | None = None
    products: dict[str, ProductRow] = field(default_factory=dict)  # locked, as written
    missing: set[str] = field(default_factory=set)  # looked up, not found
    stamped: set[int] = field(default_factory=set)  # ids whose changed_at is `now`

    def lock(self, skus: Iterable[str]) -> None:
        unknown = sorted(s for s in skus if s not in self.products and s not in self.missing)
        found = {row[0]: row for row in _select_for_update(unknown, _LOCK_FIELDS)}
        self.products.update(found)
        self.missing.update(s for s in unknown if s not in found)


_write_block: ContextVar[_WriteBlock | None] = ContextVar("catalog_write_block", default=None)


@contextmanager
def catalog_write_clock() -> Iterator[None]:
    """Stamp every product changed inside the block with one changed_at, in one transaction.

    For callers that make several catalog calls in one transaction (an import batch writes
    products, then prices, then stock): each product row is then rewritten once, not once per
    call, and locked and read once. The time is taken at the first write, after the first
    locks.
    """
    token = _write_block.set(_WriteBlock())
    try:
        with transaction.atomic():
            yield
    finally:
        _write_block.reset(token)


def _now() -> datetime:
    """The changed_at for a write: the block's clock inside catalog_write_clock, else now."""
    block = _write_block.get()
    if block is None:
        return timezone.now()
    if block.now is None:
        block.now = timezone.now()
    return block.now


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

    with transaction.atomic(savepoint=False):  # as in _apply_levels
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
            plan = _plan_product(sku, indexes, items, stored.get(sku), results)
            if plan is not None:
                name, active, updated_at, contributors = plan
                rows.append((sku, name, active, now, updated_at, now))
                plans[sku] = (contributors, [i for i in indexes if results[i] is None])

        written = dict(
            versioned_upsert(
                model=Product,
                columns=("sku", "name", "active", "created_at", "updated_at", "changed_at"),
                conflict=("sku",),
                update=("name", "active", "updated_at", "changed_at"),
                rows=rows,
                returning=("sku", "id"),
            )
        )
        _remember_products(rows, written)
    for sku, (contributors, newer) in plans.items():
        for i in newer:
            applied = sku in written and i in contributors
            results[i] = ItemResult(i, Outcome.APPLIED if applied else Outcome.STALE)
    return _complete(results)


def _plan_product(
    sku: str,
    indexes: list[int],
    items: Sequence[ProductItem],
    current: tuple[str, bool, datetime] | None,
    results: list[ItemResult | None],
) -> tuple[str, bool, datetime, set[int]] | None:
    """Merge one sku's items newer than `current` (name, active, updated_at) into its row.

    Sets the results of the items that cannot apply (unknown sku, stale) and returns the
    row's (name, active, updated_at) with the items that reach it, or None if nothing is new.
    """
    if len(indexes) == 1:  # the common case, without the sorting and merging below
        i = indexes[0]
        item = items[i]
        if current is None and item.name is None:
            results[i] = _unknown_sku(i, sku)
            return None
        if current is not None and item.updated_at <= current[2]:
            results[i] = ItemResult(i, Outcome.STALE)
            return None
        name = item.name if item.name is not None else current[0]  # type: ignore[index]
        active = item.active if item.active is not None else (current[1] if current else True)
        return name, active, item.updated_at, {i}
    if current is None and all(items[i].name is None for i in indexes):
        for i in indexes:
            results[i] = _unknown_sku(i, sku)
        return None
    newer = [i for i in indexes if current is None or items[i].updated_at > current[2]]
    for i in set(indexes) - set(newer):
        results[i] = ItemResult(i, Outcome.STALE)
    if not newer:
        return None
    name, active = (current[0], current[1]) if current else (None, True)
    sources: dict[str, int] = {}
    newer.sort(key=lambda i: (items[i].updated_at, i))
    for i in newer:
        if items[i].name is not None:
            name, sources["name"] = items[i].name, i
        if items[i].active is not None:
            active, sources["active"] = items[i].active, i
    return name, active, items[newer[-1]].updated_at, {newer[-1], *sources.values()}  # type: ignore[return-value]


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
    # Inside a caller's transaction no savepoint: any error here aborts the caller's too,
    # and the savepoint's two round trips were a tenth of a webhook's apply.
    with transaction.atomic(savepoint=False):
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

    Inside catalog_write_clock, products the block already locked come from the block.
    """
    block = _write_block.get()
    if block is None:
        return _select_for_update(sorted(skus), fields)
    skus = list(skus)
    block.lock(skus)
    pick = operator.itemgetter(*(_LOCK_FIELDS.index(name) for name in fields))
    products = block.products
    return [pick(products[sku]) for sku in skus if sku in products]


def _select_for_update(skus: Sequence[str], fields: tuple[str, ...]) -> list[tuple[Any, ...]]:
    """SELECT `fields` of the products with these (sorted) skus FOR NO KEY UPDATE, by id.

    The lock is the one an UPDATE of changed_at takes anyway (FOR NO KEY UPDATE): rows that
    merely reference the product (foreign keys) are not blocked by it.
    """
    if not skus:
        return []
    if connection.vendor == "postgresql":
        # One array parameter instead of an IN list of up to 1,000 placeholders.
        columns = ", ".join(_product_column(name) for name in fields)
        return execute_with_arrays(
            f"SELECT {columns} FROM {_PRODUCT_TABLE} WHERE sku = ANY(%b)"  # noqa: S608
            " ORDER BY id FOR NO KEY UPDATE",
            [list(skus)],
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


def _remember_products(rows: Sequence[tuple[Any, ...]], written: dict[str, int]) -> None:
    """Record product_upsert's rows (sku, name, active, created_at, updated_at, changed_at)
    in the write block: those written as they now are, the others as unknown again."""
    block = _write_block.get()
    if block is None:
        return
    for sku, name, active, _created, updated_at, _changed in rows:
        block.missing.discard(sku)
        product_id = written.get(sku)
        if product_id is None:
            # Lost to a version stored meanwhile by someone else: read it again if needed.
            block.products.pop(sku, None)
            continue
        block.products[sku] = (sku, product_id, name, active, updated_at)
        block.stamped.add(product_id)


def _touch_products(product_ids: Sequence[int], now: datetime) -> None:
    """Mark these products as changed now, for the listing's updated_since.

    A product already stamped with this `now` (see catalog_write_clock) is not rewritten.
    """
    block = _write_block.get()
    if block is not None and now == block.now:
        product_ids = [i for i in product_ids if i not in block.stamped]
        block.stamped.update(product_ids)
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
