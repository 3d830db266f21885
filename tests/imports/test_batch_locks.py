"""What a batch waits for on PostgreSQL: its own row, not its run's.

A second connection plays another batch of the same run, mid-transaction.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from django.db import connection, transaction

from imports.models import ImportBatch, ImportRun
from imports.services import _lock_batch

from .conftest import run_outbox

pytestmark = pytest.mark.django_db(transaction=True)

DATA = "sku,name\n" + "".join(f"SKU-{n},Widget {n}\n" for n in range(4))


@pytest.fixture
def other() -> Iterator[psycopg.Connection]:
    """Another session on the test database, as a second worker would have."""
    if connection.vendor != "postgresql":
        pytest.skip("row locks are PostgreSQL's")
    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    with psycopg.connect(**params) as session:
        yield session


@pytest.fixture
def planned(upload: Any, settings: Any) -> ImportRun:
    settings.IMPORT_BATCH_SIZE = 2
    settings.OUTBOX_FAST_PATH = False  # messages wait for run_outbox
    run = upload(DATA).run
    run_outbox(1)  # the start message: two batches planned, none processed
    return run


def lock_timeout() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL lock_timeout = '500ms'")


def test_locking_a_batch_does_not_lock_its_run(
    planned: ImportRun, other: psycopg.Connection
) -> None:
    # Given another batch of the run holding the run's row (as its counter update does)
    other.execute("SELECT 1 FROM imports_importrun WHERE id = %s FOR UPDATE", [planned.pk])
    second = ImportBatch.objects.get(run=planned, number=2)
    # When a batch locks its own row
    with transaction.atomic():
        lock_timeout()
        locked = _lock_batch(second.pk)
    # Then it did not wait for the run's row
    assert locked is not None
    assert locked.pk == second.pk
