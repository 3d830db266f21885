"""NUL characters in an uploaded file, imported by real relay and worker processes.

PostgreSQL text and jsonb cannot hold NUL. Whatever the import stores from the file (a row
error's sku, column and message, the header warnings) must still be storable, or the batch's
transaction fails as a whole and the run never finishes. CONTRACT §4: a bad row is a row error
on its line, and the run completes with processed = succeeded + failed + skipped = total.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from catalog.models import Product, StockLevel
from imports.models import ImportRowError, ImportRun
from syncplatform.deadletters.models import DeadLetter
from tests.support.processes import Worker
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration


@pytest.fixture
def platform(
    media: Path, settings: Any, start_worker: Callable[..., Worker], start_relay: Callable
) -> None:
    """Start a relay and a `default,low` worker reading uploads from the test's media root."""
    settings.OUTBOX_FAST_PATH = False  # the relay publishes, as in production
    env = {"MEDIA_ROOT": str(media), "IMPORT_BATCH_SIZE": "2"}  # three batches
    start_worker("default,low", **env)
    start_relay(**env)


def test_nul_in_a_sku_a_name_and_a_header_makes_row_errors_and_the_run_completes(
    platform: None, upload: Callable
) -> None:
    # Given a file with NUL in an unknown column's name, in a sku, in a name, and in a cell of
    # the unknown column (ignored, so harmless)
    data = (
        b"sku,name,quantity,warehouse,Col\x00our\n"
        b"SKU-1,Widget,1,main,red\n"
        b"SKU\x002,Gadget,2,main,blue\n"
        b"SKU-3,Gad\x00get,3,main,green\n"
        b"SKU-4,Thing,4,main,x\x00y\n"
        b"SKU-5,Other,5,main,\n"
    )
    # When it is uploaded and the workers import it
    run = upload(data).run

    def finished() -> ImportRun | None:
        current = ImportRun.objects.get(pk=run.pk)
        return current if current.status in ImportRun.FINISHED_STATUSES else None

    run = wait_until(finished, timeout=60, what=f"import {run.pk} finished")

    # Then the run completes with errors, and its counters add up to the file's rows
    assert run.status == ImportRun.Status.COMPLETED_WITH_ERRORS, run.error
    assert (run.total_rows, run.processed_rows) == (5, 5)
    assert (run.succeeded_rows, run.failed_rows, run.skipped_rows) == (3, 2, 0)
    assert run.batches_done == run.batch_count == 3
    # And the warning names the unknown column, NUL shown as U+FFFD
    assert run.warnings == ["unknown column 'Col\ufffdour' is ignored"]
    # And each bad row is an error on its own line
    errors = list(
        ImportRowError.objects.filter(run=run)
        .order_by("line")
        .values_list("line", "sku", "column", "code")
    )
    assert errors == [
        (3, "SKU\ufffd2", "sku", "invalid_value"),
        (4, "SKU-3", "name", "invalid_value"),
    ]
    assert not DeadLetter.objects.exists()
    # And neither bad row reached the catalog; the others did
    assert sorted(Product.objects.values_list("sku", flat=True)) == ["SKU-1", "SKU-4", "SKU-5"]
    assert StockLevel.objects.get(product__sku="SKU-4", warehouse="main").quantity == 4
