"""What a batch waits for on PostgreSQL: its own row, then its run's turn to write.

A second connection plays another batch of the same run, mid-transaction.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from django.db import OperationalError, connection, transaction

from imports.models import ImportBatch, ImportRun
from imports.services import _WRITE_TURN_LOCK_CLASS, _lock_batch, batch_process

from .conftest import counters, run_outbox

pytestmark = pytest.mark.django_db(transaction=True)

DATA = "sku,name\n" + "".join(f"SKU-{n},Widget {n}\n" for n in range(4))


@pytest.fixture
def other() -> Iterator[psycopg.Connection]:
    """Another session on the test database, as a second worker would have."""
    if connection.vendor != "postgresql":
        pytest.skip("row and advisory locks are PostgreSQL's")
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


def test_batches_of_a_run_take_turns_to_write(
    planned: ImportRun, other: psycopg.Connection
) -> None:
    # Given another batch of the run in the middle of its writes
    other.execute("SELECT pg_advisory_xact_lock(%s, %s)", [_WRITE_TURN_LOCK_CLASS, planned.pk])
    batch = ImportBatch.objects.get(run=planned, number=1)
    # When this batch wants to write, it waits (here: until the lock timeout)
    with transaction.atomic():
        lock_timeout()
        with pytest.raises(OperationalError):
            batch_process(batch_id=batch.pk)
    assert counters(planned)[1] == 0
    # And once the other batch commits, it writes
    other.commit()
    batch_process(batch_id=batch.pk)
    assert counters(planned)[1:] == (2, 2, 0, 0)
