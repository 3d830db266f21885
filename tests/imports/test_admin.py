"""The import admin: upload form, run card with live counters, retry, cancel, error report."""

from __future__ import annotations

import csv
import io
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.contrib.messages import get_messages
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from catalog.models import Product
from erp_connectors.services import connector_save
from imports.api import run_status_document
from imports.models import ImportRun
from imports.services import START_TASK, run_start
from notifications.models import Notification
from syncplatform.outbox.models import OutboxMessage

from .conftest import CONTRACT_FIELDS, HEADER, drain_outbox

pytestmark = pytest.mark.django_db

ADD = reverse("admin:imports_importrun_add")
CHANGELIST = reverse("admin:imports_importrun_changelist")


@pytest.fixture(autouse=True)
def _quiet_outbox(settings: Any, media: Path) -> None:
    # Messages wait in the outbox until drain_outbox() runs them; files go to a private root.
    settings.OUTBOX_FAST_PATH = False


def url(action: str, run: ImportRun) -> str:
    return reverse(f"admin:imports_importrun_{action}", args=[run.pk])


def shown(response: Any) -> str:
    return " ".join(str(m) for m in get_messages(response.wsgi_request))


def csv_bytes(known: int = 3, unknown: int = 2, start: int = 0) -> bytes:
    """`known` rows that create products, then `unknown` price rows for skus that do not exist."""
    lines = [HEADER]
    for i in range(start, start + known):
        lines.append(f"SKU-{i},Product {i},9.99,EUR,5,main,2026-01-01T00:00:00Z")
    for i in range(start, start + unknown):
        lines.append(f"NEW-{i},,1.50,EUR,1,main,2026-01-01T00:00:00Z")
    return ("\n".join(lines) + "\n").encode()


def post_upload(client: Client, content: bytes, name: str = "catalog.csv", **fields: Any) -> Any:
    data = {"file": SimpleUploadedFile(name, content, content_type="text/csv"), "encoding": ""}
    data.update(fields)
    return client.post(ADD, data)


def stored_files(media: Path) -> list[Path]:
    return [p for p in media.rglob("*") if p.is_file()] if media.exists() else []


# --------------------------------------------------------------------------- upload


def test_add_page_renders_an_upload_form(admin_client: Client) -> None:
    page = admin_client.get(ADD)

    assert page.status_code == 200
    html = page.content.decode()
    assert 'enctype="multipart/form-data"' in html
    for field in ("file", "encoding", "force", "connector"):
        assert f'name="{field}"' in html
    assert "Upload and import" in html
    assert "Up to 100 MB" in html


def test_upload_creates_a_run_and_redirects_to_its_card(admin_client: Client) -> None:
    response = post_upload(admin_client, csv_bytes(), name="spring.csv")

    run = ImportRun.objects.get()
    assert response.status_code == 302
    assert response["Location"] == url("change", run)
    assert run.original_filename == "spring.csv"
    assert run.uploaded_by == User.objects.get(username="admin")
    assert run.connector is None
    assert run.status == ImportRun.Status.QUEUED
    assert OutboxMessage.objects.filter(task_name=START_TASK).count() == 1
    assert "queued" in shown(response)

    card = admin_client.get(response["Location"])
    assert card.status_code == 200
    assert "Queued" in card.content.decode()


def test_an_upload_for_a_connector_notifies_the_staff_member_who_made_it(
    admin_client: Client, admin_user: User
) -> None:
    # Given a connector whose notifications go to its ERP team
    acme = connector_save(slug="acme", name="ACME", notify_email="erp-team@acme.test").connector
    # When a staff member uploads a file for it and the run ends
    post_upload(admin_client, csv_bytes(known=1, unknown=0), connector=str(acme.pk))
    drain_outbox()
    # Then the staff member gets the counts, and the ERP team gets nothing
    [note] = Notification.objects.all()
    assert note.recipient == admin_user.email != ""
    assert note.data["succeeded_rows"] == 1


def test_upload_passes_encoding_force_and_connector(admin_client: Client) -> None:
    acme = connector_save(slug="acme", name="ACME").connector
    content = "sku,name\nSKU-é,Caf\xe9\n".encode("cp1252")

    post_upload(admin_client, content, encoding="cp1252", force="on", connector=str(acme.pk))

    run = ImportRun.objects.get()
    assert (run.encoding, run.force, run.connector) == ("cp1252", True, acme)
    drain_outbox()
    assert Product.objects.get(sku="SKU-é").name == "Café"


@pytest.mark.parametrize(
    "size",
    [
        pytest.param(1024 * 1024 + 1, id="caught-while-storing"),
        pytest.param(1024 * 1024 + 200 * 1024, id="caught-while-receiving"),
    ],
)
def test_oversize_upload_shows_the_limit_and_stores_nothing(
    admin_client: Client, settings: Any, media: Path, size: int
) -> None:
    settings.IMPORT_MAX_UPLOAD_BYTES = 1024 * 1024
    content = (HEADER + "\n").encode().ljust(size, b"x")

    page = post_upload(admin_client, content)

    assert page.status_code == 200
    assert "The file is larger than the limit of 1 MB." in page.content.decode()
    assert not ImportRun.objects.exists()
    assert not OutboxMessage.objects.exists()
    assert stored_files(media) == []


def test_size_limit_is_in_place_before_the_csrf_check_reads_the_body(
    settings: Any, media: Path, admin_user: User
) -> None:
    """With CSRF enforced (as in a browser) the check reads the body: the cap must come first."""
    settings.IMPORT_MAX_UPLOAD_BYTES = 1024 * 1024
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)
    client.get(ADD)
    token = client.cookies["csrftoken"].value
    big = SimpleUploadedFile("big.csv", b"sku\n".ljust(2 * 1024 * 1024, b"x"))

    page = client.post(ADD, {"csrfmiddlewaretoken": token, "file": big})
    assert page.status_code == 200
    assert "The file is larger than the limit of 1 MB." in page.content.decode()
    assert stored_files(media) == []

    # and the token is still checked
    def small() -> SimpleUploadedFile:
        return SimpleUploadedFile("small.csv", b"sku\nA\n")

    assert client.post(ADD, {"file": small()}).status_code == 403
    assert client.post(ADD, {"csrfmiddlewaretoken": token, "file": small()}).status_code == 302
    assert ImportRun.objects.count() == 1


def test_unknown_encoding_shows_the_error_and_stores_nothing(
    admin_client: Client, media: Path
) -> None:
    page = post_upload(admin_client, csv_bytes(), encoding="klingon-8")

    assert page.status_code == 200
    html = page.content.decode()
    assert "klingon-8" in html
    assert 'class="errorlist' in html
    assert not ImportRun.objects.exists()
    assert stored_files(media) == []


def test_missing_file_is_a_form_error(admin_client: Client) -> None:
    page = admin_client.post(ADD, {"encoding": ""})

    assert page.status_code == 200
    assert "Choose a CSV file to upload." in page.content.decode()


def test_duplicate_redirects_to_the_existing_run_unless_forced(
    admin_client: Client, media: Path, django_capture_on_commit_callbacks: Any
) -> None:
    post_upload(admin_client, csv_bytes())
    first = ImportRun.objects.get()

    with django_capture_on_commit_callbacks(execute=True):  # the copy is deleted on commit
        again = post_upload(admin_client, csv_bytes(), name="same-again.csv")

    assert again.status_code == 302
    assert again["Location"] == url("change", first)
    assert f"already uploaded as import #{first.pk}" in shown(again)
    assert ImportRun.objects.count() == 1
    assert len(stored_files(media)) == 1

    forced = post_upload(admin_client, csv_bytes(), force="on")
    assert ImportRun.objects.count() == 2
    assert forced["Location"] == url("change", ImportRun.objects.latest("pk"))


# --------------------------------------------------------------------------- run card


def test_progress_json_has_the_counters_and_moves_after_the_workers_ran(
    admin_client: Client, settings: Any
) -> None:
    settings.IMPORT_BATCH_SIZE = 2
    post_upload(admin_client, csv_bytes(known=4, unknown=2))
    run = ImportRun.objects.get()

    before = admin_client.get(url("progress", run))
    assert before.status_code == 200
    assert "no-cache" in before["Cache-Control"]
    doc = before.json()
    assert doc.keys() >= CONTRACT_FIELDS
    assert (doc["status"], doc["processed_rows"], doc["percent"]) == ("queued", 0, 0)
    assert doc["finished"] is False
    assert doc["can_cancel"] is True

    drain_outbox()

    after = admin_client.get(url("progress", run)).json()
    assert after["status"] == "completed_with_errors"
    assert (after["total_rows"], after["processed_rows"]) == (6, 6)
    assert (after["succeeded_rows"], after["failed_rows"], after["skipped_rows"]) == (4, 2, 0)
    assert after["percent"] == 100
    assert (after["batches_done"], after["batches_total"]) == (3, 3)
    assert after["display"]["batches"] == "3 / 3"
    assert after["display"]["percent"] == "100 %"
    assert after["finished"] is True
    assert after["can_retry"] is True
    assert [e["sku"] for e in after["first_errors"]] == ["NEW-0", "NEW-1"]
    # The same counters as the API's status document, field for field.
    run.refresh_from_db()
    api_doc = run_status_document(run, before.wsgi_request)
    assert {k: after[k] for k in CONTRACT_FIELDS} == {k: api_doc[k] for k in CONTRACT_FIELDS}


def test_rate_and_eta_while_running(admin_client: Client, settings: Any) -> None:
    settings.IMPORT_BATCH_SIZE = 2
    post_upload(admin_client, csv_bytes(known=6, unknown=0))
    run = ImportRun.objects.get()
    run_start(run_id=run.pk)  # what the start message does: planned, running
    run.refresh_from_db()
    # The first batch finished two seconds after the start: 1 row/s, 4 rows left.
    ImportRun.objects.filter(pk=run.pk).update(
        processed_rows=2,
        succeeded_rows=2,
        batches_done=1,
        progress_at=run.started_at + timedelta(seconds=2),
    )

    doc = admin_client.get(url("progress", run)).json()

    assert doc["status"] == "running"
    assert doc["rows_per_second"] == 1.0
    assert doc["eta_seconds"] == 4
    assert doc["display"]["eta"] == "4 s"
    assert doc["percent"] == 33
    assert doc["display"]["percent"] == "33 %"


def test_run_card_shows_the_first_errors_the_report_link_and_the_actions(
    admin_client: Client,
) -> None:
    post_upload(admin_client, csv_bytes(known=2, unknown=25))
    drain_outbox()
    run = ImportRun.objects.get()
    run.row_errors.filter(sku="NEW-3").update(message="<b>bold</b>")

    page = admin_client.get(url("change", run))

    assert page.status_code == 200
    html = page.content.decode()
    assert "Completed with errors" in html
    body = re.search(r'<tbody data-list="errors">(.*?)</tbody>', html, re.S).group(1)
    assert body.count("<tr>") == 20  # the first 20; the report has all 25
    assert "<td>4</td><td>NEW-0</td><td>sku</td><td>unknown_sku</td>" in body
    assert "NEW-19" in body
    assert "NEW-20" not in body
    assert "&lt;b&gt;bold&lt;/b&gt;" in html
    assert f'href="{url("errors", run)}"' in html
    assert f'action="{url("retry_failed", run)}"' in html
    assert 'data-action="retry">' in html  # shown
    assert 'data-action="cancel" hidden>' in html  # a finished run cannot be cancelled
    assert 'data-progress-url="{}"'.format(url("progress", run)) in html
    assert 'data-finished="true"' in html
    assert "imports/admin/run_card.js" in html
    assert 'style="width: 100%"' in html


def test_run_card_is_read_only(admin_client: Client) -> None:
    post_upload(admin_client, csv_bytes())
    run = ImportRun.objects.get()

    response = admin_client.post(url("change", run), {"failed_rows": "0", "status": "completed"})

    assert response.status_code == 405
    run.refresh_from_db()
    assert run.status == ImportRun.Status.QUEUED
    # Nothing on the card is editable: the only named inputs are the buttons' CSRF tokens.
    card = admin_client.get(url("change", run)).content.decode()
    named = re.findall(r'<(?:input|select|textarea)\b[^>]*\bname="([^"]+)"', card)
    assert set(named) == {"csrfmiddlewaretoken"}


def test_retry_button_requeues_the_failed_rows(admin_client: Client) -> None:
    post_upload(admin_client, csv_bytes(known=2, unknown=3))
    drain_outbox()
    run = ImportRun.objects.get()
    assert run.status == ImportRun.Status.COMPLETED_WITH_ERRORS
    for i in range(3):
        Product.objects.create(sku=f"NEW-{i}", name=f"New {i}")

    response = admin_client.post(url("retry_failed", run))

    assert response.status_code == 302
    assert response["Location"] == url("change", run)
    assert "queued again" in shown(response)
    drain_outbox()
    doc = admin_client.get(url("progress", run)).json()
    assert (doc["status"], doc["failed_rows"], doc["succeeded_rows"]) == ("completed", 0, 5)
    assert doc["can_retry"] is False

    # Nothing left to retry: said so, nothing queued.
    again = admin_client.post(url("retry_failed", run))
    assert "Not possible now" in shown(again)
    assert not OutboxMessage.objects.filter(published_at__isnull=True).exists()


def test_cancel_button_stops_the_run(admin_client: Client) -> None:
    post_upload(admin_client, csv_bytes())
    run = ImportRun.objects.get()

    response = admin_client.post(url("cancel", run))

    assert response["Location"] == url("change", run)
    assert "cancelled" in shown(response)
    drain_outbox()
    run.refresh_from_db()
    assert (run.status, run.processed_rows) == (ImportRun.Status.CANCELLED, 0)

    again = admin_client.post(url("cancel", run))
    assert "Not possible now: the run is already cancelled" in shown(again)


def test_actions_only_by_post(admin_client: Client) -> None:
    post_upload(admin_client, csv_bytes())
    run = ImportRun.objects.get()

    assert admin_client.get(url("cancel", run)).status_code == 405
    assert admin_client.get(url("retry_failed", run)).status_code == 405
    assert ImportRun.objects.get().status == ImportRun.Status.QUEUED


def test_error_report_download_neutralises_formulas(admin_client: Client) -> None:
    content = (
        f"{HEADER}\n"
        '=HYPERLINK("http://evil"),,1,EUR,1,main,2026-01-01T00:00:00Z\n'
        "@SUM(A1),,1,EUR,1,main,2026-01-01T00:00:00Z\n"
        "PLAIN,,1,EUR,1,main,2026-01-01T00:00:00Z\n"
    ).encode()
    post_upload(admin_client, content)
    drain_outbox()
    run = ImportRun.objects.get()

    response = admin_client.get(url("errors", run))

    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert f'filename="import-{run.pk}-errors.csv"' in response["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[0] == ["line", "sku", "column", "code", "message"]
    assert [(r[0], r[1], r[3]) for r in rows[1:]] == [
        ("2", '\'=HYPERLINK("http://evil")', "unknown_sku"),
        ("3", "'@SUM(A1)", "unknown_sku"),
        ("4", "PLAIN", "unknown_sku"),
    ]


# --------------------------------------------------------------------------- changelist


def test_changelist_shows_status_percent_and_filters(admin_client: Client) -> None:
    post_upload(admin_client, csv_bytes(known=2, unknown=1), name="done.csv")
    drain_outbox()
    post_upload(admin_client, csv_bytes(known=1, unknown=0, start=50), name="waiting.csv")

    page = admin_client.get(CHANGELIST)

    assert page.status_code == 200
    html = page.content.decode()
    assert '<span class="import-status import-status--completed_with_errors">' in html
    assert '<span class="import-status import-status--queued">Queued</span>' in html
    assert '<span class="import-percent">100 %</span>' in html
    assert '<span class="import-percent">0 %</span>' in html
    assert "imports/admin/imports.css" in html
    assert '<td class="field-rows">3 / 3</td><td class="field-succeeded">2</td>' in html

    filtered = admin_client.get(CHANGELIST, {"status__exact": "queued"}).content.decode()
    assert "waiting.csv" in filtered
    assert "done.csv" not in filtered
    searched = admin_client.get(CHANGELIST, {"q": "done"}).content.decode()
    assert "done.csv" in searched
    assert "waiting.csv" not in searched


@pytest.mark.parametrize(
    ("status", "total", "processed"),
    [
        ("running", 3, 2),
        ("running", 1000, 999),
        ("queued", 0, 0),
        ("completed", 0, 0),
        ("failed", 0, 0),
        ("cancelled", 0, 0),
        ("cancelled", 10, 4),
    ],
)
def test_changelist_percent_follows_the_api_rule(
    admin_client: Client, status: str, total: int, processed: int
) -> None:
    post_upload(admin_client, csv_bytes())
    ImportRun.objects.update(status=status, total_rows=total, processed_rows=processed)
    run = ImportRun.objects.get()

    page = admin_client.get(CHANGELIST)

    expected = run_status_document(run, page.wsgi_request)["percent"]
    html = page.content.decode()
    assert f'<span class="import-percent">{expected} %</span>' in html
    assert f'style="width: {expected}%"' in html
    assert admin_client.get(url("progress", run)).json()["percent"] == expected


def test_changelist_actions_retry_and_cancel(admin_client: Client) -> None:
    post_upload(admin_client, csv_bytes(known=1, unknown=1), name="a.csv")
    drain_outbox()
    failed = ImportRun.objects.get()
    Product.objects.create(sku="NEW-0", name="New")
    post_upload(admin_client, csv_bytes(known=1, unknown=0, start=9), name="b.csv")
    waiting = ImportRun.objects.latest("pk")
    both = [failed.pk, waiting.pk]

    retried = admin_client.post(
        CHANGELIST, {"action": "retry_failed_rows", "_selected_action": both}, follow=True
    )
    assert "Queued the failed rows of 1 run(s)" in retried.content.decode()
    cancelled = admin_client.post(
        CHANGELIST, {"action": "cancel_runs", "_selected_action": [waiting.pk]}, follow=True
    )
    assert "Cancelled 1 run(s)" in cancelled.content.decode()

    drain_outbox()
    failed.refresh_from_db()
    waiting.refresh_from_db()
    assert (failed.status, failed.failed_rows) == (ImportRun.Status.COMPLETED, 0)
    assert waiting.status == ImportRun.Status.CANCELLED


# --------------------------------------------------------------------------- permissions


def staff(*codenames: str) -> Client:
    user = User.objects.create_user("clerk", password="x", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(codename__in=codenames))
    client = Client()
    client.force_login(user)
    return client


def test_staff_with_the_model_permissions_upload_and_act() -> None:
    client = staff("add_importrun", "view_importrun", "change_importrun")

    response = post_upload(client, csv_bytes(known=1, unknown=1))

    run = ImportRun.objects.get()
    assert response["Location"] == url("change", run)
    assert run.uploaded_by.username == "clerk"
    drain_outbox()
    assert client.get(url("change", run)).status_code == 200
    assert client.get(url("progress", run)).json()["failed_rows"] == 1
    assert client.get(url("errors", run)).status_code == 200
    Product.objects.create(sku="NEW-0", name="New")
    client.post(url("retry_failed", run))
    drain_outbox()
    assert ImportRun.objects.get().status == ImportRun.Status.COMPLETED


def test_view_permission_alone_sees_but_cannot_act(admin_client: Client) -> None:
    post_upload(admin_client, csv_bytes())
    run = ImportRun.objects.get()
    client = staff("view_importrun")

    card = client.get(url("change", run))
    assert card.status_code == 200
    assert 'data-action="cancel"' not in card.content.decode()
    assert client.get(url("progress", run)).status_code == 200
    assert client.get(ADD).status_code == 403
    assert client.post(url("cancel", run)).status_code == 403
    assert ImportRun.objects.get().status == ImportRun.Status.QUEUED


def test_staff_without_permissions_and_anonymous_users_are_refused(admin_client: Client) -> None:
    post_upload(admin_client, csv_bytes())
    run = ImportRun.objects.get()

    assert staff().get(url("progress", run)).status_code == 403
    anonymous = Client().get(url("progress", run))
    assert anonymous.status_code == 302
    assert reverse("admin:login") in anonymous["Location"]
    assert Client().post(ADD, {"file": SimpleUploadedFile("x.csv", b"sku\nA\n")}).status_code == 302
    assert ImportRun.objects.count() == 1
