"""A million-row file through a real worker in bounded memory (CONTRACT §4: files are streamed).

The worker for `default,low` plans the run (one pass over the file) and applies its 1,000
batches; the test samples the resident memory of the worker's main process and its pool
processes the whole time. Memory that grew with the row count would show here: the file
alone is ~40 MB, its rows as Python objects several hundred.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import pytest
from django.db import connection

from catalog.models import Price, Product, StockLevel
from imports.models import ImportRowError, ImportRun
from imports.services import import_create
from tests.support.processes import Worker
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(3600)]

ROWS = 1_000_000
# The target for the worker, main and pool processes together.
RSS_LIMIT_MB = 300
# What the worker may grow by while it works, over what it held when idle: a fraction of
# what the rows would take if anything kept them.
RSS_GROWTH_LIMIT_MB = 80
MB = 1024 * 1024
_ROW = b"SKU-%07d,Product %d,%d.%02d,EUR,%d,main\n"


def write_catalog(path: Path, rows: int) -> int:
    """Write `rows` new products with a name, a price and stock, block by block."""
    with path.open("wb") as out:
        out.write(b"sku,name,price,currency,quantity,warehouse\n")
        for start in range(0, rows, 10_000):
            block = range(start, min(start + 10_000, rows))
            out.write(b"".join(_ROW % (n, n, n % 1000, n % 100, n % 500) for n in block))
    return path.stat().st_size


def worker_rss(worker: Worker) -> int:
    """Resident memory of the worker's main process and its pool processes, in bytes."""
    main = psutil.Process(worker.pid)
    total = 0
    for process in [main, *main.children(recursive=True)]:
        try:
            total += process.memory_info().rss
        except psutil.NoSuchProcess:
            continue
    return total


def test_a_million_rows_import_in_bounded_memory(
    media: Path,
    settings: Any,
    tmp_path: Path,
    start_worker: Callable[..., Worker],
    start_relay: Callable,
    record_property: Callable[[str, object], None],
) -> None:
    # Given a worker for default,low and a relay, reading uploads from the test's media root
    settings.OUTBOX_FAST_PATH = False
    env = {"MEDIA_ROOT": str(media)}
    worker = start_worker("default,low", **env)
    start_relay(**env)
    idle = worker_rss(worker)
    # And a file of a million new products with prices and stock
    source = tmp_path / "million.csv"
    size = write_catalog(source, ROWS)
    assert size > 35 * MB
    # When it is uploaded
    started = time.monotonic()
    with source.open("rb") as stream:
        run = import_create(source=stream, filename="million.csv").run
    source.unlink()
    peak = idle

    def finished() -> bool:
        nonlocal peak
        peak = max(peak, worker_rss(worker))
        status = ImportRun.objects.values_list("status", flat=True).get(pk=run.pk)
        return status in ImportRun.FINISHED_STATUSES

    wait_until(finished, timeout=3300, interval=0.25, what="a million rows imported")
    elapsed = time.monotonic() - started
    # Then every row is imported
    run.refresh_from_db()
    assert run.status == ImportRun.Status.COMPLETED, (run.status, run.error)
    assert (run.total_rows, run.processed_rows, run.succeeded_rows) == (ROWS, ROWS, ROWS)
    assert run.batch_count == 1000
    assert not ImportRowError.objects.filter(run=run).exists()
    assert Product.objects.count() == StockLevel.objects.count() == Price.objects.count() == ROWS
    last = Product.objects.get(sku=f"SKU-{ROWS - 1:07d}")
    assert last.name == f"Product {ROWS - 1}"
    # And the worker's memory stayed bounded the whole time
    figures = {
        "backend": connection.vendor,
        "rows": ROWS,
        "file_mb": round(size / MB, 1),
        "seconds": round(elapsed, 1),
        "rows_per_second": round(ROWS / elapsed),
        "worker_idle_rss_mb": round(idle / MB, 1),
        "worker_peak_rss_mb": round(peak / MB, 1),
    }
    for key, value in figures.items():
        record_property(key, value)
    print(f"\nimport of {ROWS} rows: {figures}")
    assert peak < RSS_LIMIT_MB * MB, figures
    assert peak - idle < RSS_GROWTH_LIMIT_MB * MB, figures
