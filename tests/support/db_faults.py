"""Database faults injected in the database itself, not by patching our code.

`writes_fail(table)` makes every INSERT or UPDATE on one table fail with an error the driver
reports as OperationalError, as when the server goes away mid-transaction: on PostgreSQL a
trigger raises SQLSTATE 57P01 (admin_shutdown); on SQLite the table is renamed away, so the
statement fails with "no such table".
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from django.db import connection


@contextmanager
def writes_fail(table: str) -> Iterator[None]:
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "CREATE OR REPLACE FUNCTION sp_injected_fault() RETURNS trigger "
                "LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'injected fault: server gone' "
                "USING ERRCODE = '57P01'; END $$"
            )
            cursor.execute(
                f"CREATE TRIGGER sp_injected_fault BEFORE INSERT OR UPDATE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION sp_injected_fault()"
            )
        else:
            cursor.execute(f"ALTER TABLE {table} RENAME TO {table}__away")
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                cursor.execute(f"DROP TRIGGER sp_injected_fault ON {table}")
            else:
                cursor.execute(f"ALTER TABLE {table}__away RENAME TO {table}")
