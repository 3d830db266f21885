"""One-row statements for the hottest paths, built from a model's own fields.

INSERT … ON CONFLICT DO NOTHING RETURNING, SELECT … FOR UPDATE by primary key, UPDATE by
primary key.

Written by hand because the ORM cannot express the first (`create()` needs a savepoint to
survive a unique violation, and `bulk_create(ignore_conflicts=True)` does not say which rows
went in), and because they serve the webhook intake and apply, where compiling ORM queries
and `save()` cost more CPU than the statements themselves. Each statement's text is made
once per process; columns, defaults and value adaptation all come from the model, so a
migration needs no change here.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connection, connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.utils import CursorWrapper
from django.db.models import CharField, Field, Model


def insert_row(
    model: type[Model],
    values: Mapping[str, Any],
    *,
    conflict_fields: tuple[str, ...] = (),
    returning: tuple[str, ...] = ("pk",),
    guard: Guard | None = None,
) -> tuple | None:
    """Insert one row of `model`; return its `returning` values, or None on a conflict.

    `values` are by field name, foreign keys by id. Fields not in `values` get their model
    default. With `conflict_fields`, a row that would violate their unique constraint is
    skipped (nothing is written, None is returned) instead of raising. With a `guard`, the
    row is inserted only where the guard's condition holds (else None, nothing written).
    """
    sql, params = insert_statement(
        model, values, conflict_fields=conflict_fields, returning=returning, guard=guard
    )
    with statement_cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()


@dataclass(frozen=True)
class Guard:
    """A condition (SQL, with its parameters) that must hold for an insert to happen."""

    sql: str
    params: tuple[Any, ...] = ()


def statement_cursor() -> CursorWrapper:
    """A cursor for the statements a process runs over and over, with few parameters each.

    On PostgreSQL it binds parameters server-side and prepares each statement on its first
    run on a connection: later runs skip the server's parse and plan, and psycopg no longer
    renders every value into the SQL text in Python (together about a sixth of a webhook
    intake's CPU here). Django's own cursors bind client-side and never prepare. Elsewhere,
    or with DB_PREPARED_STATEMENTS off: Django's cursor.
    """
    db = _database()
    if db.vendor != "postgresql" or not settings.DB_PREPARED_STATEMENTS:
        return db.cursor()
    db.close_if_health_check_failed()
    db.ensure_connection()
    db.validate_thread_sharing()
    # Django logs a statement's text as psycopg last sent it, and psycopg sends none for a
    # prepared statement: with query logging on, bind server-side but do not prepare.
    cursor_class = psycopg.Cursor if db.queries_logged else _PreparingCursor
    return _wrapped(db, cursor_class(db.connection))


def execute_with_arrays(
    sql: str, params: list[Any], *, returns_rows: bool = True
) -> list[tuple[Any, ...]]:
    """Run `sql` (PostgreSQL) with parameters bound server-side; return its rows.

    For set-based statements whose rows travel as one array per column. Placeholders are
    `%b` (binary): arrays then go as they are, element by element in C; Django's default
    cursor binds client-side, rendering each array as a literal in Python (a regex per
    element). The values must already be the Python types of the columns: Django's
    per-value conversion is skipped. Same connection, so the caller's transaction holds.
    """
    db = _database()
    db.ensure_connection()
    raw = psycopg.Cursor(db.connection)
    # Binary results too: a returned timestamp is then loaded in C, not parsed from text in
    # Python (a fifth of a 1,000-row lock SELECT's time).
    raw.format = psycopg.pq.Format.BINARY
    with _wrapped(db, raw) as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall() if returns_rows else []  # tuples: the default row factory


def _wrapped(db: BaseDatabaseWrapper, raw: psycopg.Cursor) -> CursorWrapper:
    """A psycopg cursor of our own, wrapped as Django wraps its cursors: query logging,
    execute wrappers and error translation apply as to every other statement."""
    with db.wrap_database_errors:
        return db.make_debug_cursor(raw) if db.queries_logged else db.make_cursor(raw)


def _database() -> BaseDatabaseWrapper:
    """This thread's connection itself, not `connection`, the proxy that looks it up again
    (through asgiref's Local, several microseconds) on every attribute: the hot paths here
    and the model fields they call touch a dozen attributes per statement."""
    return connections[DEFAULT_DB_ALIAS]


class _PreparingCursor(psycopg.Cursor):
    """Server-side binding; every statement prepared (psycopg keeps the last 100 per
    connection). Django opens its connections with automatic preparing turned off."""

    def execute(
        self, query: Any, params: Any = None, *, prepare: bool | None = None, **kwargs: Any
    ) -> Any:
        return super().execute(
            query, params, prepare=True if prepare is None else prepare, **kwargs
        )


def insert_statement(
    model: type[Model],
    values: Mapping[str, Any],
    *,
    conflict_fields: tuple[str, ...] = (),
    returning: tuple[str, ...] = ("pk",),
    guard: Guard | None = None,
) -> tuple[str, list[Any]]:
    """The SQL and parameters insert_row executes, for use inside a larger statement."""
    sql, fields = _insert_statement(
        model, conflict_fields, returning, guard.sql if guard else "", _database().vendor
    )
    return sql, [*prepared_values(fields, values), *(guard.params if guard else ())]


def prepared_values(fields: Sequence[Field], values: Mapping[str, Any]) -> list[Any]:
    """Database parameters for these fields: the given value, else the field's default."""
    db = _database()
    return [
        field.get_db_prep_save(values[field.name], db)
        if field.name in values
        else _prepared_default(field, db)
        for field in fields
    ]


# (field, vendor) -> the field's constant default as prepared for that database.
_constant_defaults: dict[tuple[Field, str], Any] = {}


def _prepared_default(field: Field, db: BaseDatabaseWrapper) -> Any:
    """The field's default as a parameter; prepared once per process where it is a constant
    (most of an inbound event's columns start at their defaults)."""
    if field.has_default() and callable(field.default):  # list, timezone.now …: new each time
        return field.get_db_prep_save(field.get_default(), db)
    key = (field, db.vendor)
    if key not in _constant_defaults:
        _constant_defaults[key] = field.get_db_prep_save(field.get_default(), db)
    return _constant_defaults[key]


@functools.cache
def _insert_statement(
    model: type[Model],
    conflict_fields: tuple[str, ...],
    returning: tuple[str, ...],
    guard_sql: str,
    vendor: str,
) -> tuple[str, list[Field]]:
    """The statement's text and the fields its parameters fill, made once per shape."""
    meta = model._meta
    quote = connection.ops.quote_name
    fields = [field for field in meta.concrete_fields if not field.primary_key]
    columns = ", ".join(quote(field.column) for field in fields)
    placeholders = ", ".join(["%s"] * len(fields))
    sql = f"INSERT INTO {quote(meta.db_table)} ({columns})"
    if guard_sql:
        # Each value cast to its column's type: a SELECT list, unlike VALUES, does not take
        # the types of the columns it goes into.
        typed = ", ".join(f"CAST(%s AS {_value_type(field)})" for field in fields)
        sql += f" SELECT {typed} WHERE {guard_sql}"
    else:
        sql += f" VALUES ({placeholders})"
    if conflict_fields:
        targets = ", ".join(quote(meta.get_field(name).column) for name in conflict_fields)
        sql += f" ON CONFLICT ({targets}) DO NOTHING"
    returned = [meta.pk if name == "pk" else meta.get_field(name) for name in returning]
    sql += " RETURNING " + ", ".join(quote(field.column) for field in returned)
    return sql, fields


def _value_type(field: Field) -> str:
    """The column's type for a CAST, without a length: a cast to varchar(n) would cut a
    longer value short, where an insert refuses it."""
    if isinstance(field, CharField):
        return connection.ops.cast_char_field_without_max_length
    return field.cast_db_type(connection)  # type: ignore[return-value]


def select_row_for_update(model: type[Model], pk: Any) -> Model | None:
    """Return the row with this primary key, locked until the transaction ends, or None.

    The same as `select_for_update().filter(pk=pk).first()` without compiling a query on
    every call: a webhook's apply runs this once per event.
    """
    sql = _select_statement(model, connection.vendor)
    with statement_cursor() as cursor:
        cursor.execute(sql, [pk])
        row = cursor.fetchone()
    return model_from_row(model, row) if row else None


def model_from_row(model: type[Model], row: Sequence[Any]) -> Model:
    """Build an instance from a row of all its concrete columns, in field order.

    Applies the field's and the backend's converters (JSON text to values, SQLite's naive
    datetimes to aware ones …) as the ORM does.
    """
    db = _database()
    converted = list(row)
    for index, converters in _converters(model, db.vendor):
        for convert in converters:
            converted[index] = convert(converted[index], None, db)
    columns = [field.attname for field in model._meta.concrete_fields]
    return model.from_db(db.alias, columns, converted)


def update_row(model: type[Model], pk: Any, values: Mapping[str, Any]) -> None:
    """UPDATE these fields (by name) of the row with this primary key."""
    db = _database()
    sql, fields = _update_statement(model, tuple(values), db.vendor)
    params = [field.get_db_prep_save(values[field.name], db) for field in fields]
    with statement_cursor() as cursor:
        cursor.execute(sql, [*params, pk])


def update_rows(model: type[Model], rows: Mapping[Any, Mapping[str, Any]]) -> None:
    """update_row for several rows, {pk: values}, the same fields in every row.

    On PostgreSQL one statement for all of them (UPDATE … FROM unnest(one array per
    column)): a relay batch's events have their outcomes recorded in one round trip instead
    of twenty. Elsewhere, one UPDATE per row.
    """
    if not rows:
        return
    db = _database()
    names = tuple(next(iter(rows.values())))
    if db.vendor != "postgresql":
        for pk, values in rows.items():
            update_row(model, pk, values)
        return
    sql, fields = _update_rows_statement(model, names)
    columns = [list(rows)]
    for field in fields:
        columns.append([field.get_db_prep_save(values[field.name], db) for values in rows.values()])
    execute_with_arrays(sql, columns, returns_rows=False)


def select_columns(model: type[Model]) -> str:
    """The column list that model_from_row expects, quoted."""
    quote = connection.ops.quote_name
    return ", ".join(quote(field.column) for field in model._meta.concrete_fields)


@functools.cache
def _select_statement(model: type[Model], vendor: str) -> str:
    meta = model._meta
    quote = connection.ops.quote_name
    sql = (
        f"SELECT {select_columns(model)} FROM {quote(meta.db_table)}"  # noqa: S608
        f" WHERE {quote(meta.pk.column)} = %s"
    )
    if connection.features.has_select_for_update:
        sql += " FOR UPDATE"
    return sql


@functools.cache
def _converters(model: type[Model], vendor: str) -> list[tuple[int, list[Callable]]]:
    found = []
    for index, field in enumerate(model._meta.concrete_fields):
        column = field.get_col(model._meta.db_table)
        converters = connection.ops.get_db_converters(column) + field.get_db_converters(connection)
        if converters:
            found.append((index, converters))
    return found


@functools.cache
def _update_statement(
    model: type[Model], names: tuple[str, ...], vendor: str
) -> tuple[str, list[Field]]:
    meta = model._meta
    quote = connection.ops.quote_name
    fields = [meta.get_field(name) for name in names]
    assignments = ", ".join(f"{quote(field.column)} = %s" for field in fields)
    sql = f"UPDATE {quote(meta.db_table)} SET {assignments} WHERE {quote(meta.pk.column)} = %s"  # noqa: S608
    return sql, fields


@functools.cache
def _update_rows_statement(model: type[Model], names: tuple[str, ...]) -> tuple[str, list[Field]]:
    """UPDATE … FROM unnest(pks, then one array per field) (PostgreSQL), made once per shape."""
    meta = model._meta
    quote = connection.ops.quote_name
    fields = [meta.get_field(name) for name in names]
    aliases = [f"v{index}" for index in range(len(fields))]
    arrays = ", ".join(
        f"%b::{field.db_type(connection)}[]"
        for field in [meta.pk, *fields]  # type: ignore[union-attr]
    )
    assignments = ", ".join(
        f"{quote(field.column)} = v.{alias}"  # type: ignore[union-attr]
        for field, alias in zip(fields, aliases, strict=True)
    )
    sql = (
        f"UPDATE {quote(meta.db_table)} SET {assignments}"  # noqa: S608 (names from metadata)
        f" FROM unnest({arrays}) AS v(pk, {', '.join(aliases)})"
        f" WHERE {quote(meta.db_table)}.{quote(meta.pk.column)} = v.pk"
    )
    return sql, fields  # type: ignore[return-value]
