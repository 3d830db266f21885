"""Imports on real processes (CONTRACT §4 guarantees): relay and worker, and a worker killed.

A relay and a Celery worker for `default,low` run on the test database and read the uploaded
files from the same media root. The test watches the run's counters while it goes: they never
move backwards and `processed = succeeded + failed + skipped` holds at every instant. Then a
pool process is SIGKILLed in the middle of a batch: the batch is redelivered
(reject_on_worker_lost), and no row is lost or counted twice.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from django.db import connection

from catalog.models import StockLevel
from catalog.services import ProductItem, StockItem, product_upsert, stock_apply
from imports.models import ImportBatch, ImportRowError, ImportRun
from syncplatform.celery import app as celery_app
from syncplatform.deadletters.models import DeadLetter
from tests.support.processes import Worker
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.chaos]

STORED_AT = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
COUNTER_FIELDS = (
    "status",
    "total_rows",
    "processed_rows",
    "succeeded_rows",
    "failed_rows",
    "skipped_rows",
)
Snapshot = tuple[str, int, int, int, int, int]


@pytest.fixture
def platform(
    media: Path, settings: Any, start_worker: Callable[..., Worker], start_relay: Callable
) -> Callable[..., Worker]:
    """Start a relay and a `default,low` worker that read uploads from the test's media root."""
    # The relay publishes the start message, as after a web process that died.
    settings.OUTBOX_FAST_PATH = False

    def start(batch_size: int, **env: str) -> Worker:
        env.update(MEDIA_ROOT=str(media), IMPORT_BATCH_SIZE=str(batch_size))
        worker = start_worker("default,low", **env)
        start_relay(**env)
        return worker

    return start


def seed(count: int, *, stock_for: Callable[[int], bool] = lambda n: False) -> None:
    """Create SKU-0 … SKU-(count-1); those `stock_for` picks get stock stored at STORED_AT."""
    for start in range(0, count, 1000):
        numbers = range(start, min(start + 1000, count))
        product_upsert(
            items=[ProductItem(f"SKU-{n}", f"Product {n}", True, STORED_AT) for n in numbers]
        )
        stock_apply(
            items=[StockItem(f"SKU-{n}", "main", 0, STORED_AT) for n in numbers if stock_for(n)]
        )


def watch(run_id: int, *, timeout: float) -> list[Snapshot]:
    """Poll the run's counters (one row, one consistent read) until it finishes."""
    seen: list[Snapshot] = []

    def finished() -> bool:
        snapshot = ImportRun.objects.filter(pk=run_id).values_list(*COUNTER_FIELDS).get()
        seen.append(snapshot)
        return snapshot[0] in ImportRun.FINISHED_STATUSES

    wait_until(finished, timeout=timeout, interval=0.02, what=f"import {run_id} finished")
    return seen


def assert_consistent(seen: list[Snapshot]) -> None:
    """Counters add up in every snapshot and no counter ever moves backwards."""
    for status, total, processed, succeeded, failed, skipped in seen:
        assert processed == succeeded + failed + skipped, (status, processed)
        assert processed <= total or total == 0
    for before, after in pairwise(seen):
        assert all(a <= b for a, b in zip(before[1:], after[1:], strict=True)), (before, after)


def assert_complete(run_id: int, total: int) -> ImportRun:
    run = ImportRun.objects.get(pk=run_id)
    assert (run.total_rows, run.processed_rows) == (total, total)
    assert run.succeeded_rows + run.failed_rows + run.skipped_rows == total
    assert run.batches_done == run.batch_count
    assert not ImportBatch.objects.filter(run=run).exclude(status="done").exists()
    assert run.failed_rows == ImportRowError.objects.filter(run=run).count()
    assert not DeadLetter.objects.exists()
    return run


def stored_stock() -> dict[str, int]:
    return dict(StockLevel.objects.values_list("product__sku", "quantity"))


# --------------------------------------------------------------------------- relay + worker


def test_an_upload_is_imported_by_relay_and_worker_with_counters_consistent_throughout(
    platform: Callable[..., Worker], upload: Callable
) -> None:
    # Given 10,000 rows in batches of 100: unknown skus, new products, stale rows, updates
    rows = 10_000
    seed(rows, stock_for=lambda n: n % 10 == 2)
    platform(batch_size=100)
    lines = ["sku,name,quantity,warehouse,updated_at"]
    expected: dict[str, int] = {}
    for n in range(rows):
        kind = n % 10
        if kind == 0:
            lines.append(f"GONE-{n},,{n},main,")  # unknown, no name: fails
        elif kind == 1:
            lines.append(f"NEW-{n},New {n},{n},main,")  # unknown with a name: created
            expected[f"NEW-{n}"] = n
        elif kind == 2:
            lines.append(f"SKU-{n},,{n},main,2026-11-22T11:00:00Z")  # older: skipped
            expected[f"SKU-{n}"] = 0
        else:
            lines.append(f"SKU-{n},,{n},main,")  # newer than nothing: applied
            expected[f"SKU-{n}"] = n
    # When it is uploaded
    run = upload("\r\n".join(lines) + "\r\n").run
    seen = watch(run.pk, timeout=300)
    # Then it completes; the counters were consistent whenever they were looked at, and
    # they were seen moving
    assert_consistent(seen)
    assert len({snapshot[2] for snapshot in seen}) > 2
    run = assert_complete(run.pk, rows)
    assert run.status == ImportRun.Status.COMPLETED_WITH_ERRORS
    assert (run.succeeded_rows, run.failed_rows, run.skipped_rows) == (8_000, 1_000, 1_000)
    assert run.batch_count == 100
    assert stored_stock() == expected


# --------------------------------------------------------------------------- SIGKILL

# How long the slow point holds a batch: long enough to find it there, short enough to wait.
SLOW_POINT_SECONDS = 2.0


def _fill_sqlite_slow_rows(cursor: Any) -> None:
    """Size sp_slow_rows so that counting its cross join takes about SLOW_POINT_SECONDS here.

    SQLite has no sleep, and a trigger may not wait for anything: it burns the time instead,
    measured now because how fast that goes depends on the machine and its load.
    """
    rows = 2000
    cursor.executemany("INSERT INTO sp_slow_rows VALUES (%s)", [(n,) for n in range(rows)])
    started = time.perf_counter()
    cursor.execute("SELECT count(*) FROM sp_slow_rows a, sp_slow_rows b")
    took = max(time.perf_counter() - started, 0.001)
    wanted = min(max(int(rows * math.sqrt(SLOW_POINT_SECONDS / took)), rows), 30_000)
    cursor.executemany("INSERT INTO sp_slow_rows VALUES (%s)", [(n,) for n in range(rows, wanted)])


@contextlib.contextmanager
def slow_batch_marks() -> Iterator[None]:
    """Make every batch stall when it marks itself done: after its catalog writes, before commit.

    A trigger in the database itself, like tests/support/db_faults.py, so the code under test
    is the code that runs in production.
    """
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "CREATE OR REPLACE FUNCTION sp_slow_point() RETURNS trigger LANGUAGE plpgsql "
                f"AS $$ BEGIN PERFORM pg_sleep({SLOW_POINT_SECONDS}); RETURN NEW; END $$"
            )
            cursor.execute(
                "CREATE TRIGGER sp_slow_point BEFORE UPDATE ON imports_importbatch "
                "FOR EACH ROW EXECUTE FUNCTION sp_slow_point()"
            )
        else:
            cursor.execute("CREATE TABLE sp_slow_rows (x integer)")
            _fill_sqlite_slow_rows(cursor)
            cursor.execute(
                "CREATE TRIGGER sp_slow_point BEFORE UPDATE ON imports_importbatch "
                "BEGIN SELECT count(*) FROM sp_slow_rows a, sp_slow_rows b; END"
            )
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                cursor.execute("DROP TRIGGER sp_slow_point ON imports_importbatch")
                cursor.execute("DROP FUNCTION sp_slow_point()")
            else:
                cursor.execute("DROP TRIGGER sp_slow_point")
                cursor.execute("DROP TABLE sp_slow_rows")


def stalled_batch(worker: Worker, first_seen: dict[str, float]) -> str | None:
    """Return the id of an import batch task that has been running well past a normal batch.

    On PostgreSQL the worker's session must also be in the slow point's sleep right now.
    """
    inspector = celery_app.control.inspect(destination=[worker.hostname], timeout=2)
    active = (inspector.active() or {}).get(worker.hostname) or []
    now = time.monotonic()
    for task in active:
        if task["name"] != "imports.process_batch":
            continue
        since = first_seen.setdefault(task["id"], now)
        if now - since < SLOW_POINT_SECONDS / 4:
            continue
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND wait_event = 'PgSleep'"
                )
                if not cursor.fetchone()[0]:
                    continue
        return task["id"]
    return None


def times_received(worker: Worker, task_id: str) -> int:
    return worker.log().count(f"Task imports.process_batch[{task_id}] received")


def test_a_pool_process_killed_mid_batch_loses_and_double_counts_nothing(
    platform: Callable[..., Worker], upload: Callable
) -> None:
    # Given 3,000 rows in six batches, all for known products, published once each (relay
    # only), and a run under way
    rows, batch_size = 3000, 500
    seed(rows)
    worker = platform(batch_size=batch_size, OUTBOX_FAST_PATH="false")
    data = "sku,quantity,warehouse\n" + "".join(f"SKU-{n},{n + 1},main\n" for n in range(rows))
    with slow_batch_marks():
        run = upload(data).run
        wait_until(
            lambda: ImportRun.objects.get(pk=run.pk).batches_done >= 1,
            timeout=120,
            what="a first batch done",
        )
        # When the pool process is SIGKILLed while a batch has written to the catalog but
        # not committed
        first_seen: dict[str, float] = {}
        task_id = wait_until(
            lambda: stalled_batch(worker, first_seen),
            timeout=120,
            interval=0.1,
            what="a batch in the slow point",
        )
        done_before = ImportRun.objects.get(pk=run.pk).batches_done
        children = worker.pool_children()
        assert len(children) == 1
        children[0].kill()
        wait_until(lambda: "SIGKILL" in worker.log(), timeout=60, what="the worker saw the kill")
    # Then the killed batch is delivered again, and the run completes with every row counted
    # once and applied
    seen = watch(run.pk, timeout=300)
    assert_consistent(seen)
    assert times_received(worker, task_id) == 2
    assert 1 <= done_before < 6
    run = assert_complete(run.pk, rows)
    assert run.status == ImportRun.Status.COMPLETED
    assert run.succeeded_rows == rows
    assert stored_stock() == {f"SKU-{n}": n + 1 for n in range(rows)}
