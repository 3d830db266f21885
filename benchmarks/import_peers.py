"""The two peers a 100,000-row catalog import is compared against, on the same tables.

(a) django-import-export, the tool a Django shop would otherwise pick: one resource per
    table (products, prices, stock), bulk mode, batches of 1,000, in one transaction each.
(b) The floor: COPY the file into a temporary table, then one `INSERT … ON CONFLICT` per
    table with the same newer-wins rule as the platform. Nothing in Python per row.

Both run in the benchmark's own process against the benchmark database (Django is set up by
the caller), and both write what the platform writes: a product, a EUR price and a stock level
per row, each versioned by updated_at.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from django.db import connection, transaction

CATALOG_TABLES = ("catalog_stocklevel", "catalog_price", "catalog_product")


def catalog_truncate() -> None:
    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {', '.join(CATALOG_TABLES)} RESTART IDENTITY CASCADE")


def catalog_counts() -> dict[str, int]:
    counts = {}
    with connection.cursor() as cursor:
        for table in CATALOG_TABLES:
            cursor.execute(f"SELECT count(*) FROM {table}")  # noqa: S608 (constant names)
            counts[table] = cursor.fetchone()[0]
    return counts


# -- (a) django-import-export ---------------------------------------------------------------
def _resources() -> list[Any]:
    """Build the resources lazily: import_export is a benchmark-only dependency."""
    from import_export import fields, resources, widgets

    from catalog.models import Price, Product, StockLevel

    def version() -> fields.Field:
        # The file's RFC 3339 UTC stamps; the widget's default formats do not read them.
        widget = widgets.DateTimeWidget(format="%Y-%m-%dT%H:%M:%S.%fZ")
        return fields.Field(attribute="updated_at", column_name="updated_at", widget=widget)

    class ProductResource(resources.ModelResource):
        updated_at = version()

        class Meta:
            model = Product
            fields = ("sku", "name", "updated_at")
            import_id_fields = ("sku",)
            use_bulk = True
            batch_size = 1000
            skip_diff = True
            skip_unchanged = False

    class PriceResource(resources.ModelResource):
        product = fields.Field(
            attribute="product", column_name="sku", widget=widgets.ForeignKeyWidget(Product, "sku")
        )
        amount = fields.Field(attribute="amount", column_name="price")
        updated_at = version()

        class Meta:
            model = Price
            fields = ("product", "currency", "amount", "updated_at")
            import_id_fields = ("product", "currency")
            use_bulk = True
            batch_size = 1000
            skip_diff = True

    class StockResource(resources.ModelResource):
        product = fields.Field(
            attribute="product", column_name="sku", widget=widgets.ForeignKeyWidget(Product, "sku")
        )
        updated_at = version()

        class Meta:
            model = StockLevel
            fields = ("product", "warehouse", "quantity", "updated_at")
            import_id_fields = ("product", "warehouse")
            use_bulk = True
            batch_size = 1000
            skip_diff = True

    return [ProductResource(), PriceResource(), StockResource()]


def import_export_run(path: Path) -> dict[str, Any]:
    """Import the file with django-import-export, table by table; return rows and seconds."""
    import tablib

    started = time.perf_counter()
    with path.open(encoding="utf-8", newline="") as handle:
        dataset = tablib.Dataset().load(handle, format="csv")
    loaded = time.perf_counter()
    for resource in _resources():
        result = resource.import_data(dataset, dry_run=False, use_transactions=True)
        if result.has_errors() or result.has_validation_errors():
            raise RuntimeError(f"django-import-export reported errors for {resource}")
    seconds = time.perf_counter() - started
    return {
        "rows": len(dataset),
        "seconds": round(seconds, 2),
        "load_seconds": round(loaded - started, 2),
        "rows_per_s": round(len(dataset) / seconds, 1),
    }


# -- (b) COPY + one upsert per table --------------------------------------------------------
_UPSERTS = (
    """
    INSERT INTO catalog_product (sku, name, active, created_at, updated_at, changed_at)
    SELECT DISTINCT ON (sku) sku, name, true, now(), updated_at, now()
      FROM bench_rows ORDER BY sku, updated_at DESC
    ON CONFLICT (sku) DO UPDATE
       SET name = excluded.name, updated_at = excluded.updated_at, changed_at = now()
     WHERE catalog_product.updated_at < excluded.updated_at
    """,
    """
    INSERT INTO catalog_price (product_id, currency, amount, updated_at)
    SELECT DISTINCT ON (p.id, r.currency) p.id, r.currency, r.price, r.updated_at
      FROM bench_rows r JOIN catalog_product p ON p.sku = r.sku
     ORDER BY p.id, r.currency, r.updated_at DESC
    ON CONFLICT (product_id, currency) DO UPDATE
       SET amount = excluded.amount, updated_at = excluded.updated_at
     WHERE catalog_price.updated_at < excluded.updated_at
    """,
    """
    INSERT INTO catalog_stocklevel (product_id, warehouse, quantity, updated_at)
    SELECT DISTINCT ON (p.id, r.warehouse) p.id, r.warehouse, r.quantity, r.updated_at
      FROM bench_rows r JOIN catalog_product p ON p.sku = r.sku
     ORDER BY p.id, r.warehouse, r.updated_at DESC
    ON CONFLICT (product_id, warehouse) DO UPDATE
       SET quantity = excluded.quantity, updated_at = excluded.updated_at
     WHERE catalog_stocklevel.updated_at < excluded.updated_at
    """,
)


def copy_floor_run(path: Path) -> dict[str, Any]:
    """COPY the file into a temp table and upsert each catalog table in one statement."""
    started = time.perf_counter()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "CREATE TEMP TABLE bench_rows (sku text, name text, price numeric, currency text,"
            " quantity integer, warehouse text, updated_at timestamptz) ON COMMIT DROP"
        )
        copy_sql = (
            "COPY bench_rows (sku, name, price, currency, quantity, warehouse, updated_at)"
            " FROM STDIN WITH (FORMAT csv, HEADER true)"
        )
        with path.open("rb") as handle, cursor.copy(copy_sql) as copy:
            while chunk := handle.read(1 << 20):
                copy.write(chunk)
        copied = time.perf_counter()
        cursor.execute("SELECT count(*) FROM bench_rows")
        rows = cursor.fetchone()[0]
        for statement in _UPSERTS:
            cursor.execute(statement)
    seconds = time.perf_counter() - started
    return {
        "rows": rows,
        "seconds": round(seconds, 2),
        "copy_seconds": round(copied - started, 2),
        "rows_per_s": round(rows / seconds, 1),
    }
