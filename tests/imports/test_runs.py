"""Import runs end to end (CONTRACT §4): upload, plan, batches, finish, cancel, retry, dedup.

In-process on the real test database: the outbox is drained here instead of by a relay and
workers (tests/imports/conftest.py), with batches of a few rows so every file has several.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from catalog.models import Price, Product, StockLevel
from catalog.services import ProductItem, StockItem, product_upsert, stock_apply
from erp_connectors.models import Connector
from erp_connectors.services import connector_save
from imports import tasks
from imports.models import ImportBatch, ImportRowError, ImportRun
from imports.services import (
    BATCH_TASK,
    RETRY_TASK,
    START_TASK,
    ImportNotAllowed,
    import_cancel,
    import_retry_failed,
)
from notifications.models import Notification
from syncplatform.outbox.models import OutboxMessage

from .conftest import counters, drain_outbox, run_outbox

pytestmark = pytest.mark.django_db

BATCH_SIZE = 2
T0 = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _small_batches(settings: Any) -> None:
    # Messages wait in the outbox for drain_outbox; batches of two rows make every file
    # below span several batches, so batch boundaries are crossed on purpose.
    settings.OUTBOX_FAST_PATH = False
    settings.IMPORT_BATCH_SIZE = BATCH_SIZE


@pytest.fixture
def acme(db: None) -> Connector:
    return connector_save(slug="acme", name="ACME ERP", notify_email="erp-team@acme.test").connector


@pytest.fixture
def globex(db: None) -> Connector:
    return connector_save(slug="globex", name="Globex ERP").connector


def imported(upload: Any, data: str | bytes, **options: Any) -> ImportRun:
    """Upload `data`, run every message it leads to, and return the finished run."""
    created = upload(data, **options)
    assert not created.duplicate
    drain_outbox()
    created.run.refresh_from_db()
    return created.run


def products(*skus: str, at: datetime = T0) -> None:
    product_upsert(items=[ProductItem(sku, f"Product {sku}", True, at) for sku in skus])


def stock(sku: str, warehouse: str = "main") -> int:
    return StockLevel.objects.get(product__sku=sku, warehouse=warehouse).quantity


def price(sku: str, currency: str = "EUR") -> Decimal:
    return Price.objects.get(product__sku=sku, currency=currency).amount


def row_errors(run: ImportRun) -> list[tuple[int, str, str, str]]:
    return list(
        ImportRowError.objects.filter(run=run)
        .order_by("line")
        .values_list("line", "sku", "column", "code")
    )


def assert_adds_up(run: ImportRun) -> None:
    total, processed, succeeded, failed, skipped = counters(run)
    assert processed == succeeded + failed + skipped == total
    assert run.batches_done == run.batch_count
    assert failed == ImportRowError.objects.filter(run=run).count()


def pending_messages(task_name: str) -> list[OutboxMessage]:
    return list(
        OutboxMessage.objects.filter(task_name=task_name, published_at__isnull=True).order_by("pk")
    )


# --------------------------------------------------------------------------- formats


@pytest.mark.parametrize(
    ("data", "options", "expected"),
    [
        pytest.param(
            b"\xef\xbb\xbfsku,name,quantity,warehouse\r\nSKU-1,Widget,5,main\r\n"
            b"SKU-2,Gadget,6,main\r\nSKU-3,Gizmo,7,main\r\n",
            {},
            {"SKU-1": ("Widget", 5), "SKU-2": ("Gadget", 6), "SKU-3": ("Gizmo", 7)},
            id="utf8-bom-crlf",
        ),
        pytest.param(
            b"sku\tname\tquantity\twarehouse\nSKU-1\tWidget\t5\tmain\nSKU-2\tGadget\t6\tmain\n"
            b"SKU-3\tGizmo, large\t7\tmain\n",
            {},
            {"SKU-1": ("Widget", 5), "SKU-2": ("Gadget", 6), "SKU-3": ("Gizmo, large", 7)},
            id="tab",
        ),
        pytest.param(
            b" SKU ,  Name,QUANTITY , WareHouse \r SKU-1 , Widget ,5, main \r"
            b"SKU-2,Gadget,6,main\rSKU-3,Gizmo,7,main",
            {},
            {"SKU-1": ("Widget", 5), "SKU-2": ("Gadget", 6), "SKU-3": ("Gizmo", 7)},
            id="upper-case-padded-header-cr-no-final-newline",
        ),
        pytest.param(
            b'sku,name,quantity,warehouse\r\nSKU-1,"Widget, large",5,main\r\n'
            b'SKU-2,"two\r\nlines, ""quoted""",6,main\r\nSKU-3,Gizmo,7,main\r\n',
            {},
            {
                "SKU-1": ("Widget, large", 5),
                "SKU-2": ('two\r\nlines, "quoted"', 6),
                "SKU-3": ("Gizmo", 7),
            },
            id="quoted-delimiter-and-newline",
        ),
        pytest.param(
            "sku,name,quantity,warehouse\nSKU-1,Café,5,main\nSKU-2,Crème brûlée \u2013 1 €,6,main\n"
            "SKU-3,Gizmo,7,main\n".encode("cp1252"),
            {"encoding": "cp1252"},
            {"SKU-1": ("Café", 5), "SKU-2": ("Crème brûlée \u2013 1 €", 6), "SKU-3": ("Gizmo", 7)},
            id="cp1252",
        ),
    ],
)
def test_every_accepted_format_imports_the_same_catalog(
    upload: Any, data: bytes, options: dict, expected: dict[str, tuple[str, int]]
) -> None:
    # Given a file in one of the accepted formats, three rows over two batches
    # When it is imported
    run = imported(upload, data, **options)
    # Then every row is applied as written
    assert run.status == ImportRun.Status.COMPLETED
    assert counters(run) == (3, 3, 3, 0, 0)
    assert run.batch_count == 2
    assert {sku: (Product.objects.get(sku=sku).name, stock(sku)) for sku in expected} == expected
    assert run.warnings == []


def test_semicolon_file_takes_a_decimal_comma(upload: Any) -> None:
    # Given a European spreadsheet export: semicolons and decimal commas
    data = "sku;name;price;currency\nSKU-1;Widget;19,99;EUR\nSKU-2;Gadget;1.234,5;EUR\n"
    data += "SKU-3;Gizmo;0,5;EUR\n"
    # When it is imported
    run = imported(upload, data)
    # Then the decimal commas are read as such; a thousands separator is a row error
    assert run.status == ImportRun.Status.COMPLETED_WITH_ERRORS
    assert (price("SKU-1"), price("SKU-3")) == (Decimal("19.99"), Decimal("0.5"))
    assert row_errors(run) == [(3, "SKU-2", "price", "invalid_value")]
    assert not Product.objects.filter(sku="SKU-2").exists()
    assert_adds_up(run)


def test_unknown_columns_are_ignored_with_a_warning(upload: Any) -> None:
    run = imported(upload, "sku,name,colour,quantity,warehouse\nSKU-1,Widget,red,5,main\n")
    assert run.status == ImportRun.Status.COMPLETED
    assert run.warnings == ["unknown column 'colour' is ignored"]
    assert stock("SKU-1") == 5


def test_half_a_column_group_fails_the_run_before_any_write(upload: Any, acme: Connector) -> None:
    # Given a file with a price column but no currency
    data = "sku,name,price\nSKU-1,Widget,1.00\nSKU-2,Gadget,2.00\nSKU-3,Gizmo,3.00\n"
    # When it is imported
    run = imported(upload, data, connector=acme)
    # Then the run fails as a whole, says why, and nothing reached the catalog
    assert run.status == ImportRun.Status.FAILED
    assert "'price' needs 'currency'" in run.error
    assert run.error.startswith("line 1:")
    assert counters(run) == (0, 0, 0, 0, 0)
    assert not ImportBatch.objects.filter(run=run).exists()
    assert not Product.objects.exists()
    assert run.finished_at is not None
    # And the uploader is told
    [note] = Notification.objects.filter(recipient="erp-team@acme.test")
    assert "'price' needs 'currency'" in note.body
    assert note.data["status"] == "failed"


def test_an_empty_file_fails_the_run_with_a_clear_error(upload: Any) -> None:
    run = imported(upload, b"")
    assert run.status == ImportRun.Status.FAILED
    assert "empty" in run.error
    assert counters(run) == (0, 0, 0, 0, 0)


def test_a_file_that_does_not_decode_fails_before_any_batch(upload: Any) -> None:
    # Given a cp1252 file uploaded without its encoding, the bad byte far down the file
    data = "sku,name\nSKU-1,Widget\nSKU-2,Gadget\nSKU-3,Gadget\nSKU-4,Café\n".encode("cp1252")
    # When it is imported
    run = imported(upload, data)
    # Then the run fails naming the line, and not even the good first rows were applied
    assert run.status == ImportRun.Status.FAILED
    assert run.error.startswith("line 5")
    assert run.error.count("line 5") == 1
    assert "cp1252" in run.error
    assert not Product.objects.exists()


def test_a_header_only_file_completes_with_no_rows(upload: Any, acme: Connector) -> None:
    run = imported(upload, "sku,name,quantity,warehouse\r\n\r\n", connector=acme)
    assert run.status == ImportRun.Status.COMPLETED
    assert counters(run) == (0, 0, 0, 0, 0)
    assert run.batch_count == 0
    assert run.started_at is not None
    assert run.finished_at is not None
    assert Notification.objects.get(recipient="erp-team@acme.test").data["total_rows"] == 0


# --------------------------------------------------------------------------- rows


def test_row_errors_name_the_line_where_the_record_starts(upload: Any) -> None:
    # Given bad rows after a quoted field that spans lines, and a blank line
    products("SKU-1")
    data = (
        "sku,name,quantity,warehouse\n"  # line 1
        'SKU-1,"first\nsecond\nthird",1,main\n'  # lines 2-4
        "SKU-2,,5,main\n"  # line 5: unknown sku, no name
        "\n"  # line 6: blank, not a record
        "SKU-3,Gizmo,5\n"  # line 7: wrong width
        "SKU-4,Doohickey,-1,main\n"  # line 8: invalid quantity
        "SKU-5,New product,9,main\n"  # line 9: unknown sku with a name: created
        'SKU-6,"never closed,1,main\n'  # line 10: the quote runs to the end of the file
    )
    # When it is imported
    run = imported(upload, data)
    # Then each error points at the line a spreadsheet shows
    assert row_errors(run) == [
        (5, "SKU-2", "sku", "unknown_sku"),
        (7, "SKU-3", "", "wrong_width"),
        (8, "SKU-4", "quantity", "invalid_value"),
        (10, "", "", "malformed_row"),
    ]
    # And the good rows are applied, the new product created
    assert Product.objects.get(sku="SKU-1").name == "first\nsecond\nthird"
    assert (Product.objects.get(sku="SKU-5").name, stock("SKU-5")) == ("New product", 9)
    assert not Product.objects.filter(sku__in=["SKU-2", "SKU-3", "SKU-4"]).exists()
    assert run.status == ImportRun.Status.COMPLETED_WITH_ERRORS
    assert counters(run) == (6, 6, 2, 4, 0)
    assert_adds_up(run)


def test_a_file_where_every_row_fails_is_a_failed_run(upload: Any) -> None:
    run = imported(upload, "sku,quantity,warehouse\nNOPE-1,1,main\nNOPE-2,2,main\n")
    assert run.status == ImportRun.Status.FAILED
    assert counters(run) == (2, 2, 0, 2, 0)
    assert [code for *_, code in row_errors(run)] == ["unknown_sku", "unknown_sku"]


def test_duplicate_keys_in_a_file_newest_wins_and_the_last_row_on_a_tie(upload: Any) -> None:
    # Given the same keys several times, in different batches
    products("SKU-1", "SKU-2")
    data = (
        "sku,name,price,currency,quantity,warehouse,updated_at\n"
        "SKU-1,First name,1.00,EUR,1,main,\n"  # line 2
        "SKU-2,,,,10,main,2026-11-22T10:00:10Z\n"  # line 3: newer than line 6
        "SKU-1,,2.00,EUR,2,main,\n"  # line 4
        "SKU-1,Last name,3.00,EUR,3,main,\n"  # line 5: the last without updated_at
        "SKU-2,,,,5,main,2026-11-22T10:00:05Z\n"  # line 6: older than line 3
        "SKU-2,,,,20,north,2026-11-22T10:00:01Z\n"  # line 7: another warehouse
    )
    # When it is imported
    run = imported(upload, data)
    # Then rows without updated_at (all the run's creation time) go to the last row,
    # and rows with one to the newest, wherever they are in the file
    assert Product.objects.get(sku="SKU-1").name == "Last name"
    assert (price("SKU-1"), stock("SKU-1")) == (Decimal("3.00"), 3)
    assert (stock("SKU-2"), stock("SKU-2", "north")) == (10, 20)
    # And the older row is skipped, not an error
    assert run.status == ImportRun.Status.COMPLETED
    # (line 4 lost to line 5 within their batch, line 6 to line 3)
    assert counters(run) == (6, 6, 4, 0, 2)
    # And a row without updated_at is versioned at the run's creation, never later
    version = StockLevel.objects.get(product__sku="SKU-1").updated_at
    assert run.created_at - timedelta(seconds=1) < version <= run.created_at


def test_a_row_older_than_the_stored_value_is_skipped(upload: Any) -> None:
    # Given stock and a product written by the webhook path at T0 + 10 s
    products("SKU-1", "SKU-2", at=T0 + timedelta(seconds=10))
    stock_apply(
        items=[
            StockItem("SKU-1", "main", 50, T0 + timedelta(seconds=10)),
            StockItem("SKU-2", "main", 60, T0 + timedelta(seconds=10)),
        ]
    )
    # When a file brings one older and one newer row
    data = (
        "sku,quantity,warehouse,updated_at\n"
        "SKU-1,1,main,2026-11-22T10:00:09Z\n"
        "SKU-2,2,main,2026-11-22T10:00:11Z\n"
        "SKU-1,3,main,2026-11-22T10:00:10Z\n"  # as old as the stored one: stale too
    )
    run = imported(upload, data)
    # Then only the newer one is written; the others count as skipped
    assert (stock("SKU-1"), stock("SKU-2")) == (50, 2)
    assert run.status == ImportRun.Status.COMPLETED
    assert counters(run) == (3, 3, 1, 0, 2)


def test_a_sku_only_row_is_skipped_for_a_known_product_and_fails_for_an_unknown_one(
    upload: Any,
) -> None:
    products("SKU-1")
    run = imported(upload, "sku\nSKU-1\nSKU-2\n")
    assert counters(run) == (2, 2, 0, 1, 1)
    assert row_errors(run) == [(3, "SKU-2", "sku", "unknown_sku")]


def test_rows_without_updated_at_lose_to_anything_newer_than_the_upload(upload: Any) -> None:
    # Given a product whose stock is newer than the moment the file is uploaded
    products("SKU-1")
    stock_apply(items=[StockItem("SKU-1", "main", 50, timezone.now() + timedelta(hours=1))])
    # When a file without updated_at brings an older level
    run = imported(upload, "sku,quantity,warehouse\nSKU-1,1,main\n")
    # Then the stored level stays
    assert stock("SKU-1") == 50
    assert counters(run) == (1, 1, 0, 0, 1)


def test_counters_add_up_on_a_larger_mixed_file(upload: Any, settings: Any) -> None:
    # Given 1,000 rows of every kind in batches of 7
    settings.IMPORT_BATCH_SIZE = 7
    products(*(f"SKU-{n}" for n in range(0, 1000, 3)))
    lines = ["sku,name,quantity,warehouse"]
    for n in range(1000):
        if n % 3 == 0:
            lines.append(f"SKU-{n},,{n},main")  # known: succeeds
        elif n % 3 == 1:
            lines.append(f"SKU-{n},,{n},main")  # unknown, no name: fails
        else:
            lines.append(f"SKU-{n},Product {n},{n},main")  # unknown with a name: created
    # When it is imported
    run = imported(upload, "\n".join(lines))
    # Then every row is accounted for exactly once
    assert run.batch_count == 143
    assert counters(run) == (1000, 1000, 667, 333, 0)
    assert_adds_up(run)
    assert StockLevel.objects.count() == 667
    assert sorted(ImportRowError.objects.filter(run=run).values_list("line", flat=True)) == [
        n + 2 for n in range(1000) if n % 3 == 1
    ]


# --------------------------------------------------------------------------- re-delivery


def test_a_redelivered_batch_message_counts_nothing_twice(upload: Any) -> None:
    # Given a planned run
    products("SKU-1")
    run = upload("sku,quantity,warehouse\nSKU-1,1,main\nSKU-2,2,main\nSKU-1,3,main\n").run
    run_outbox(1)  # the start message
    first, second = pending_messages(BATCH_TASK)
    # When a batch message arrives twice (and the start message again)
    tasks.process_batch(**first.kwargs)
    tasks.process_batch(**first.kwargs)
    tasks.start_run(run_id=run.pk)
    drain_outbox()
    tasks.process_batch(**second.kwargs)
    tasks.finish_run(run_id=run.pk)
    # Then every row is counted once
    assert counters(run) == (3, 3, 2, 1, 0)
    assert_adds_up(run)
    assert ImportBatch.objects.filter(run=run).count() == 2
    assert stock("SKU-1") == 3


def test_a_start_message_redelivered_after_a_crash_mid_planning_plans_the_run(
    upload: Any,
) -> None:
    # Given a run whose first start attempt died after marking it running, before planning
    products("SKU-1")
    run = upload("sku,quantity,warehouse\nSKU-1,1,main\nSKU-1,2,main\nSKU-1,3,main\n").run
    OutboxMessage.objects.filter(task_name=START_TASK).update(published_at=timezone.now())
    ImportRun.objects.filter(pk=run.pk).update(
        status=ImportRun.Status.RUNNING, started_at=timezone.now()
    )
    # When the start message is redelivered
    tasks.start_run(run_id=run.pk)
    drain_outbox()
    # Then the run is planned and completes (line 2 lost to line 3 within their batch)
    run.refresh_from_db()
    assert run.status == ImportRun.Status.COMPLETED
    assert counters(run) == (3, 3, 2, 0, 1)
    assert stock("SKU-1") == 3


def test_a_finish_message_redelivered_notifies_once(upload: Any, acme: Connector) -> None:
    products("SKU-1")
    run = imported(upload, "sku,quantity,warehouse\nSKU-1,1,main\n", connector=acme)
    tasks.finish_run(run_id=run.pk)
    drain_outbox()
    assert Notification.objects.filter(data__import_id=run.pk).count() == 1


# --------------------------------------------------------------------------- dedup


CSV = "sku,quantity,warehouse\nSKU-1,1,main\n"


def test_the_same_file_from_the_same_connector_is_a_duplicate(upload: Any, acme: Connector) -> None:
    first = upload(CSV, connector=acme)
    again = upload(CSV, connector=acme, filename="renamed.csv")
    assert again.duplicate
    assert again.run.pk == first.run.pk
    assert ImportRun.objects.count() == 1
    assert OutboxMessage.objects.filter(task_name=START_TASK).count() == 1


def test_a_duplicate_is_found_whatever_state_the_first_run_is_in(
    upload: Any, acme: Connector
) -> None:
    products("SKU-1")
    first = imported(upload, CSV, connector=acme)
    assert first.status == ImportRun.Status.COMPLETED
    again = upload(CSV, connector=acme)
    assert again.duplicate
    assert again.run.pk == first.pk


def test_force_imports_the_same_file_again(upload: Any, acme: Connector) -> None:
    first = upload(CSV, connector=acme)
    forced = upload(CSV, connector=acme, force=True)
    assert not forced.duplicate
    assert forced.run.pk != first.run.pk
    assert forced.run.force


def test_the_same_file_after_the_window_is_a_new_run(
    upload: Any, acme: Connector, settings: Any
) -> None:
    first = upload(CSV, connector=acme)
    ImportRun.objects.filter(pk=first.run.pk).update(
        created_at=timezone.now() - timedelta(seconds=settings.IMPORT_DEDUP_WINDOW_SECONDS + 1)
    )
    later = upload(CSV, connector=acme)
    assert not later.duplicate
    # And a shorter window (a setting) applies at once
    settings.IMPORT_DEDUP_WINDOW_SECONDS = 0
    assert not upload(CSV, connector=acme).duplicate


def test_the_same_file_from_another_connector_or_a_changed_file_is_a_new_run(
    upload: Any, acme: Connector, globex: Connector
) -> None:
    first = upload(CSV, connector=acme)
    assert not upload(CSV, connector=globex).duplicate
    assert not upload(CSV + "SKU-2,2,main\n", connector=acme).duplicate
    assert upload(CSV, connector=acme).run.pk == first.run.pk


def test_a_cancelled_run_is_not_a_duplicate(upload: Any, acme: Connector) -> None:
    first = upload(CSV, connector=acme)
    import_cancel(run_id=first.run.pk)
    again = upload(CSV, connector=acme)
    assert not again.duplicate
    assert again.run.pk != first.run.pk


def test_staff_uploads_are_deduplicated_per_user(upload: Any) -> None:
    user_model = get_user_model()
    alice = user_model.objects.create_user("alice", "alice@shop.test", is_staff=True)
    bob = user_model.objects.create_user("bob", "bob@shop.test", is_staff=True)
    first = upload(CSV, uploaded_by=alice)
    assert upload(CSV, uploaded_by=alice).run.pk == first.run.pk
    assert not upload(CSV, uploaded_by=bob).duplicate


def test_a_duplicate_keeps_no_second_copy_of_the_file(
    upload: Any, acme: Connector, media: Any, django_capture_on_commit_callbacks: Any
) -> None:
    upload(CSV, connector=acme)
    with django_capture_on_commit_callbacks(execute=True):
        assert upload(CSV, connector=acme).duplicate
    assert len(list(media.rglob("*.csv"))) == 1


# --------------------------------------------------------------------------- cancel


def test_cancel_mid_run_stops_the_remaining_batches(upload: Any, acme: Connector) -> None:
    # Given a run of five batches, two of which ran
    products(*(f"SKU-{n}" for n in range(10)))
    data = "sku,quantity,warehouse\n" + "".join(f"SKU-{n},{n + 100},main\n" for n in range(10))
    run = upload(data, connector=acme).run
    run_outbox(3)  # start, batch 1, batch 2
    assert counters(run)[:2] == (10, 4)
    # When the run is cancelled
    cancelled = import_cancel(run_id=run.pk)
    drain_outbox()
    # Then the remaining batches did nothing, and what ran stays applied
    assert cancelled.status == ImportRun.Status.CANCELLED
    run.refresh_from_db()
    assert run.status == ImportRun.Status.CANCELLED
    assert counters(run) == (10, 4, 4, 0, 0)
    assert run.batches_done == 2
    assert dict(StockLevel.objects.values_list("product__sku", "quantity")) == {
        f"SKU-{n}": n + 100 for n in range(4)
    }
    # And the uploader is told once, with the counts at the time
    [note] = Notification.objects.filter(data__import_id=run.pk)
    assert note.data["status"] == "cancelled"
    assert note.data["processed_rows"] == 4
    # And a finished run cannot be cancelled again or retried
    with pytest.raises(ImportNotAllowed):
        import_cancel(run_id=run.pk)
    with pytest.raises(ImportNotAllowed):
        import_retry_failed(run_id=run.pk)


def test_cancel_before_planning_plans_nothing(upload: Any) -> None:
    run = upload(CSV).run
    import_cancel(run_id=run.pk)
    drain_outbox()
    run.refresh_from_db()
    assert run.status == ImportRun.Status.CANCELLED
    assert run.batch_count == 0
    assert not Product.objects.exists()


def test_a_batch_that_was_running_when_the_run_was_cancelled_is_rolled_back(
    upload: Any, monkeypatch: Any
) -> None:
    # Given a batch that reads the run as running, and a cancel that commits meanwhile
    products("SKU-1", "SKU-2")
    run = upload("sku,quantity,warehouse\nSKU-1,1,main\nSKU-2,2,main\n").run
    run_outbox(1)
    [message] = pending_messages(BATCH_TASK)
    import imports.apply

    real_rows_apply = imports.apply.rows_apply

    def cancel_meanwhile(*args: Any, **kwargs: Any) -> Any:
        results = real_rows_apply(*args, **kwargs)
        # What another transaction commits while this batch runs (a direct UPDATE: the
        # batch's own transaction is the only connection a test has)
        ImportRun.objects.filter(pk=run.pk).update(status=ImportRun.Status.CANCELLED)
        return results

    monkeypatch.setattr("imports.services.rows_apply", cancel_meanwhile)
    # When the batch finishes
    tasks.process_batch(**message.kwargs)
    # Then it applied nothing and counted nothing
    assert not StockLevel.objects.exists()
    assert counters(run) == (2, 0, 0, 0, 0)
    assert ImportBatch.objects.get(run=run).status == ImportBatch.Status.PENDING


# --------------------------------------------------------------------------- retry


def test_retry_failed_rows_after_the_missing_products_arrive(upload: Any, acme: Connector) -> None:
    # Given a run whose rows for products not yet created failed
    products("SKU-1", "SKU-4")
    data = (
        "sku,quantity,warehouse\n"
        "SKU-1,1,main\n"  # line 2: applied
        "SKU-2,2,main\n"  # line 3: unknown_sku
        "SKU-3,3,main\n"  # line 4: unknown_sku
        "SKU-4,4,main\n"  # line 5: applied
        "SKU-5,5\n"  # line 6: wrong width, can never succeed
    )
    run = imported(upload, data, connector=acme)
    assert run.status == ImportRun.Status.COMPLETED_WITH_ERRORS
    assert counters(run) == (5, 5, 2, 3, 0)
    # And lines that succeeded were changed since, to an older version: re-reading them
    # would write them again
    StockLevel.objects.filter(product__sku__in=["SKU-1", "SKU-4"]).update(
        quantity=999, updated_at=datetime(2000, 1, 1, tzinfo=UTC)
    )
    # When SKU-2 arrives and the failed rows are retried
    products("SKU-2")
    retried = import_retry_failed(run_id=run.pk)
    assert (retried.status, retried.retry_count) == (ImportRun.Status.RUNNING, 1)
    drain_outbox()
    # Then only the failed lines were re-read: SKU-2 applied, the others untouched
    assert stock("SKU-2") == 2
    assert (stock("SKU-1"), stock("SKU-4")) == (999, 999)
    # And the counters moved from failed to succeeded; processed stays
    run.refresh_from_db()
    assert run.status == ImportRun.Status.COMPLETED_WITH_ERRORS
    assert counters(run) == (5, 5, 3, 2, 0)
    assert [(line, code) for line, _, _, code in row_errors(run)] == [
        (4, "unknown_sku"),
        (6, "wrong_width"),
    ]
    assert_adds_up(run)
    # When the retry message is delivered again
    tasks.retry_failed_rows(run_id=run.pk, retry_pass=1)
    drain_outbox()
    # Then nothing moves
    assert counters(run) == (5, 5, 3, 2, 0)
    # When SKU-3 arrives with newer stock than the file's, and a second pass runs
    products("SKU-3")
    stock_apply(items=[StockItem("SKU-3", "main", 30, timezone.now() + timedelta(hours=1))])
    import_retry_failed(run_id=run.pk)
    drain_outbox()
    # Then its row is skipped (older than what is stored), the wrong-width row still fails
    run.refresh_from_db()
    assert stock("SKU-3") == 30
    assert counters(run) == (5, 5, 3, 1, 1)
    assert run.status == ImportRun.Status.COMPLETED_WITH_ERRORS
    assert [line for line, *_ in row_errors(run)] == [6]
    assert run.retry_count == 2
    # And the uploader was told after each pass, with that pass's counts
    notes = Notification.objects.filter(data__import_id=run.pk).order_by("pk")
    assert [(n.data["succeeded_rows"], n.data["failed_rows"]) for n in notes] == [
        (2, 3),
        (3, 2),
        (3, 1),
    ]


def test_retry_that_fixes_every_row_completes_the_run(upload: Any) -> None:
    run = imported(upload, "sku,quantity,warehouse\nSKU-1,1,main\nSKU-2,2,main\n")
    assert run.status == ImportRun.Status.FAILED
    products("SKU-1", "SKU-2")
    import_retry_failed(run_id=run.pk)
    drain_outbox()
    run.refresh_from_db()
    assert run.status == ImportRun.Status.COMPLETED
    assert counters(run) == (2, 2, 2, 0, 0)
    assert (stock("SKU-1"), stock("SKU-2")) == (1, 2)
    # And there is nothing left to retry
    with pytest.raises(ImportNotAllowed):
        import_retry_failed(run_id=run.pk)


def test_a_retry_killed_midway_resumes_where_it_stopped(upload: Any) -> None:
    # Given failed rows in three batches, and a retry pass that ran one batch, then died
    data = "sku,quantity,warehouse\n" + "".join(f"SKU-{n},{n},main\n" for n in range(6))
    run = imported(upload, data)
    products(*(f"SKU-{n}" for n in range(6)))
    import_retry_failed(run_id=run.pk)
    [message] = pending_messages(RETRY_TASK)
    first_batch = ImportBatch.objects.get(run=run, number=1)
    from imports.services import _retry_batch

    _retry_batch(first_batch.pk, 1)
    assert counters(run) == (6, 6, 2, 4, 0)
    # When the message is redelivered
    drain_outbox()
    # Then the rest is retried, nothing counted twice
    assert counters(run) == (6, 6, 6, 0, 0)
    run.refresh_from_db()
    assert run.status == ImportRun.Status.COMPLETED
    assert message.kwargs == {"run_id": run.pk, "retry_pass": 1}


def test_only_finished_runs_with_failed_rows_can_be_retried(upload: Any) -> None:
    products("SKU-1")
    queued = upload(CSV).run
    with pytest.raises(ImportNotAllowed):
        import_retry_failed(run_id=queued.pk)
    drain_outbox()
    with pytest.raises(ImportNotAllowed):
        import_retry_failed(run_id=queued.pk)  # completed, nothing failed


# --------------------------------------------------------------------------- notify


def test_the_connector_is_notified_with_the_counts(upload: Any, acme: Connector) -> None:
    products("SKU-1")
    data = (
        "sku,quantity,warehouse,updated_at\n"
        "SKU-1,1,main,\n"
        "SKU-2,2,main,\n"
        "SKU-1,7,main,2026-01-01T00:00:00Z\n"
    )
    run = imported(upload, data, connector=acme, filename="stock.csv")
    [note] = Notification.objects.all()
    assert note.recipient == "erp-team@acme.test"
    assert note.channel == Notification.Channel.EMAIL
    assert note.status == Notification.Status.SENT
    assert "stock.csv" in note.subject
    assert "completed with errors" in note.subject
    assert note.data == {
        "import_id": run.pk,
        "status": "completed_with_errors",
        "total_rows": 3,
        "processed_rows": 3,
        "succeeded_rows": 1,
        "failed_rows": 1,
        "skipped_rows": 1,
    }
    for line in ("total rows: 3", "succeeded rows: 1", "failed rows: 1", "skipped rows: 1"):
        assert line in note.body


def test_a_staff_upload_notifies_the_staff_member(upload: Any) -> None:
    products("SKU-1")
    user = get_user_model().objects.create_user("alice", "alice@shop.test", is_staff=True)
    imported(upload, CSV, uploaded_by=user)
    [note] = Notification.objects.all()
    assert note.recipient == "alice@shop.test"
    assert note.data["succeeded_rows"] == 1


def test_a_staff_upload_for_a_connector_notifies_the_staff_member_not_the_connector(
    upload: Any, acme: Connector
) -> None:
    # Given a staff member who uploads on behalf of a connector that has a notify_email
    products("SKU-1")
    user_model = get_user_model()
    alice = user_model.objects.create_user("alice", "alice@shop.test", is_staff=True)
    # When the run ends
    run = imported(upload, CSV, connector=acme, uploaded_by=alice)
    # Then the staff member is told, with the run's dedup key, and the connector is not
    [note] = Notification.objects.all()
    assert note.recipient == "alice@shop.test"
    assert note.dedup_key == f"import:{run.pk}:completed:0"
    # And a staff member without an email is not replaced by the connector's address
    bob = user_model.objects.create_user("bob", "", is_staff=True)
    imported(upload, CSV, connector=acme, uploaded_by=bob, force=True)
    assert Notification.objects.count() == 1


def test_nobody_to_notify_is_not_an_error(upload: Any, globex: Connector) -> None:
    products("SKU-1")
    run = imported(upload, CSV, connector=globex)
    assert run.status == ImportRun.Status.COMPLETED
    assert not Notification.objects.exists()
