"""One versioned `INSERT … ON CONFLICT … DO UPDATE … WHERE newer … RETURNING` per batch.

On PostgreSQL the rows travel as one array per column (`SELECT * FROM unnest(…)`): the
statement text and its parameter count stay the same whatever the batch size, so psycopg
neither re-parses a 6,000-placeholder query on every call nor adapts 6,000 values one by
one, and the server can reuse the plan. SQLite has no arrays and gets a multi-row VALUES
list (>= 3.35 for RETURNING).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, TypeVar

from django.db import connection, models

from syncplatform.sql import execute_with_arrays

T = TypeVar("T")

# Rows per statement. A 1,000-item batch is one statement; larger calls are split so the
# parameter count (at most 6 per row) stays far below SQLite's 32,766 and PostgreSQL's 65,535.
ROWS_PER_STATEMENT = 1000

VERSION_FIELD = "updated_at"


def chunked(values: Sequence[T], size: int = ROWS_PER_STATEMENT) -> Iterator[Sequence[T]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def versioned_upsert(
    *,
    model: type[models.Model],
    columns: Sequence[str],
    conflict: Sequence[str],
    update: Sequence[str],
    rows: Sequence[Sequence[Any]],
    returning: Sequence[str],
) -> list[tuple[Any, ...]]:
    """Insert `rows`, overwriting a conflicting row only where its `updated_at` is older.

    Returns the `returning` fields of every row inserted or overwritten; a row that lost to a
    stored version equal or newer is not returned. Rows must have distinct `conflict` keys
    (PostgreSQL refuses to touch one row twice in a statement). Runs in the caller's
    transaction; sort rows by key so concurrent writers lock in the same order.
    """
    if not rows:
        return []
    meta = model._meta
    fields = [meta.get_field(name) for name in columns]
    quote = connection.ops.quote_name
    table = quote(meta.db_table)

    def column(name: str) -> str:
        return quote(meta.get_field(name).column)  # type: ignore[union-attr]

    version = column(VERSION_FIELD)
    if connection.vendor == "postgresql":
        arrays = ", ".join(f"%b::{field.db_type(connection)}[]" for field in fields)  # type: ignore[union-attr]
        source = f"SELECT * FROM unnest({arrays})"  # noqa: S608 (types from model metadata)
    else:
        source = ""
    # Identifiers come from model metadata and values are parameters, never interpolated.
    head = f"INSERT INTO {table} ({', '.join(column(name) for name in columns)}) "
    tail = (
        f" ON CONFLICT ({', '.join(column(name) for name in conflict)}) DO UPDATE SET "
        + ", ".join(f"{column(name)} = excluded.{column(name)}" for name in update)
        + f" WHERE excluded.{version} > {table}.{version}"
        + f" RETURNING {', '.join(column(name) for name in returning)}"
    )
    if source:
        columns_of_rows = zip(*rows, strict=True)
        params = [
            _numeric_literal(values) if isinstance(field, models.DecimalField) else list(values)
            for field, values in zip(fields, columns_of_rows, strict=True)
        ]
        return execute_with_arrays(head + source + tail, params)
    placeholder = "(" + ", ".join(["%s"] * len(columns)) + ")"
    written: list[tuple[Any, ...]] = []
    with connection.cursor() as cursor:
        for chunk in chunked(rows):
            params = [
                field.get_db_prep_save(value, connection)  # type: ignore[union-attr]
                for row in chunk
                for field, value in zip(fields, row, strict=True)
            ]
            sql = head + "VALUES " + ", ".join([placeholder] * len(chunk)) + tail
            cursor.execute(sql, params)
            written.extend(tuple(row) for row in cursor.fetchall())
    return written


def _numeric_literal(values: Sequence[Any]) -> str:
    """A numeric column as one array literal: psycopg dumps Decimals one by one in Python,
    ten times slower than str(); the server casts the text to the column's array type."""
    return "{" + ",".join("NULL" if v is None else str(v) for v in values) + "}"
