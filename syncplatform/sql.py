"""One-row INSERT … ON CONFLICT DO NOTHING RETURNING, built from a model's own fields.

Written by hand because the ORM cannot express it: `create()` needs a savepoint to survive
a unique violation, and `bulk_create(ignore_conflicts=True)` does not say which rows went
in. It serves the hottest request path, the webhook intake, where model construction and
`save()` cost more CPU than the statement itself. Columns, defaults and value adaptation
all come from the model, so a migration needs no change here.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from django.db import connection
from django.db.models import Field, Model


def insert_row(
    model: type[Model],
    values: Mapping[str, Any],
    *,
    conflict_fields: tuple[str, ...] = (),
    returning: tuple[str, ...] = ("pk",),
) -> tuple | None:
    """Insert one row of `model`; return its `returning` values, or None on a conflict.

    `values` are by field name, foreign keys by id. Fields not in `values` get their model
    default. With `conflict_fields`, a row that would violate their unique constraint is
    skipped (nothing is written, None is returned) instead of raising.
    """
    sql, fields = _insert_statement(model, conflict_fields, returning, connection.vendor)
    params = [
        field.get_db_prep_save(
            values[field.name] if field.name in values else field.get_default(), connection
        )
        for field in fields
    ]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()


@functools.cache
def _insert_statement(
    model: type[Model], conflict_fields: tuple[str, ...], returning: tuple[str, ...], vendor: str
) -> tuple[str, list[Field]]:
    """The statement's text and the fields its parameters fill, made once per shape."""
    meta = model._meta
    quote = connection.ops.quote_name
    fields = [field for field in meta.concrete_fields if not field.primary_key]
    columns = ", ".join(quote(field.column) for field in fields)
    placeholders = ", ".join(["%s"] * len(fields))
    sql = f"INSERT INTO {quote(meta.db_table)} ({columns}) VALUES ({placeholders})"  # noqa: S608
    if conflict_fields:
        targets = ", ".join(quote(meta.get_field(name).column) for name in conflict_fields)
        sql += f" ON CONFLICT ({targets}) DO NOTHING"
    returned = [meta.pk if name == "pk" else meta.get_field(name) for name in returning]
    sql += " RETURNING " + ", ".join(quote(field.column) for field in returned)
    return sql, fields
