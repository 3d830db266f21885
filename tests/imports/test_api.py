"""The import HTTP API (CONTRACT §4): upload, status, error report, retry failed rows, cancel."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.serializers.json import DjangoJSONEncoder
from django.test import Client

import imports.api
import imports.services
from catalog.models import Price, Product, StockLevel
from catalog.services import ProductItem, product_upsert
from erp_connectors.models import Connector
from erp_connectors.services import ConnectorCredentials, connector_save
from imports.models import ImportRun
from imports.services import START_TASK
from imports.uploads import MULTIPART_OVERHEAD_BYTES
from syncplatform.outbox.models import OutboxMessage
from tests.support.waiting import wait_until

from .conftest import CONTRACT_FIELDS, HEADER, counters, drain_outbox

pytestmark = pytest.mark.django_db

UPLOAD_URL = "/api/v1/erp/{}/imports"
RUN_URL = "/api/v1/imports/{}"
GOOD_CSV = (
    f"{HEADER}\n"
    "SKU-1,Widget,19.99,EUR,5,main,2026-11-22T10:00:00Z\n"
    "SKU-2,Gadget,4.50,EUR,7,main,2026-11-22T10:00:00Z\n"
)
FORMULA_SKU = "=cmd|' /C calc'!A0"
# Line 2 succeeds; 3 and 4 name unknown products; 5 has a quantity that is not a number.
MIXED_CSV = (
    f"{HEADER}\n"
    "SKU-1,Widget,19.99,EUR,5,main,2026-11-22T10:00:00Z\n"
    "NOPE-1,,,,3,main,2026-11-22T10:00:00Z\n"
    f"{FORMULA_SKU},,,,4,main,2026-11-22T10:00:00Z\n"
    "@SUM(1),,,,many,main,2026-11-22T10:00:00Z\n"
)


@pytest.fixture(autouse=True)
def _no_fast_path(settings: Any) -> None:
    # Outbox rows stay unpublished: drain_outbox() plays relay and worker where needed.
    settings.OUTBOX_FAST_PATH = False


@pytest.fixture(autouse=True)
def _private_media(media: Path) -> None:
    """Every test stores uploads in a media root of its own (see stored_files)."""


@pytest.fixture
def acme(db: None) -> ConnectorCredentials:
    return connector_save(slug="acme", name="ACME ERP")


@pytest.fixture
def globex(db: None) -> ConnectorCredentials:
    return connector_save(slug="globex", name="Globex ERP")


def bearer(credentials: ConnectorCredentials) -> dict[str, str]:
    return {"Authorization": f"Bearer {credentials.api_token}"}


def post_file(
    client: Client,
    credentials: ConnectorCredentials,
    data: str | bytes = GOOD_CSV,
    *,
    slug: str | None = None,
    headers: dict[str, str] | None = None,
    filename: str = "catalog.csv",
    **fields: str,
) -> Any:
    raw = data.encode() if isinstance(data, str) else data
    form: dict[str, Any] = {"file": SimpleUploadedFile(filename, raw, "text/csv"), **fields}
    return client.post(
        UPLOAD_URL.format(slug or credentials.connector.slug),
        form,
        headers=bearer(credentials) if headers is None else headers,
    )


def path_of(url: str) -> str:
    return urlsplit(url).path


def stored_files(media: Path) -> list[Path]:
    return [path for path in media.rglob("*") if path.is_file()] if media.exists() else []


def assert_nothing_stored(media: Path) -> None:
    assert ImportRun.objects.count() == 0
    assert OutboxMessage.objects.count() == 0
    assert stored_files(media) == []


def upload_run(client: Client, credentials: ConnectorCredentials, data: str = MIXED_CSV) -> int:
    response = post_file(client, credentials, data)
    assert response.status_code == 202, response.content
    return response.json()["id"]


def report(response: Any) -> list[list[str]]:
    assert response.streaming
    text = b"".join(response.streaming_content).decode("utf-8")
    return list(csv.reader(io.StringIO(text, newline="")))


def timestamp(value: datetime | None) -> str | None:
    return None if value is None else DjangoJSONEncoder().default(value)


# -- upload ---------------------------------------------------------------------------------------
def test_upload_is_202_and_stores_the_run_with_its_start_message(
    client: Client, acme: ConnectorCredentials, media: Path
) -> None:
    response = post_file(client, acme, filename="stock november.csv")

    assert response.status_code == 202
    body = response.json()
    assert set(body) == {"id", "status", "status_url"}
    assert body["status"] == "queued"
    assert body["status_url"] == f"http://testserver/api/v1/imports/{body['id']}"
    assert response["Location"] == body["status_url"]
    assert response["Cache-Control"].startswith("max-age=0")
    run = ImportRun.objects.get()
    assert run.pk == body["id"]
    assert run.connector == acme.connector
    assert run.original_filename == "stock november.csv"
    assert run.file_size == len(GOOD_CSV.encode())
    assert (media / run.file.name).read_bytes() == GOOD_CSV.encode()
    assert stored_files(media) == [media / run.file.name]
    message = OutboxMessage.objects.get()
    assert (message.task_name, message.kwargs) == (START_TASK, {"run_id": run.pk})


def test_upload_takes_an_encoding(client: Client, acme: ConnectorCredentials) -> None:
    latin = f"{HEADER}\nSKU-1,Café,1.00,EUR,1,main,2026-11-22T10:00:00Z\n".encode("cp1252")
    response = post_file(client, acme, latin, encoding="cp1252")
    assert response.status_code == 202
    run = ImportRun.objects.get()
    assert run.encoding == "cp1252"

    drain_outbox()

    assert Product.objects.get(sku="SKU-1").name == "Café"


def test_upload_accepts_a_trailing_slash(client: Client, acme: ConnectorCredentials) -> None:
    form = {"file": SimpleUploadedFile("c.csv", GOOD_CSV.encode())}
    response = client.post("/api/v1/erp/acme/imports/", form, headers=bearer(acme))
    assert response.status_code == 202


def test_a_repeat_within_the_window_is_200_duplicate_and_stores_nothing_new(
    client: Client, acme: ConnectorCredentials, media: Path, django_capture_on_commit_callbacks
) -> None:
    first = post_file(client, acme).json()

    with django_capture_on_commit_callbacks(execute=True):
        response = post_file(client, acme, filename="renamed.csv")

    assert response.status_code == 200
    body = response.json()
    assert body["duplicate"] is True
    assert body["id"] == first["id"]
    assert body["status"] == "queued"
    assert body["status_url"] == first["status_url"]
    assert set(body) >= CONTRACT_FIELDS
    assert ImportRun.objects.count() == 1
    assert OutboxMessage.objects.count() == 1
    assert len(stored_files(media)) == 1  # the second copy was removed after the commit


@pytest.mark.parametrize("value", ["true", "1", "TRUE", " True "])
def test_force_imports_a_repeat_again(
    client: Client, acme: ConnectorCredentials, value: str
) -> None:
    first = post_file(client, acme).json()

    response = post_file(client, acme, force=value)

    assert response.status_code == 202
    assert response.json()["id"] != first["id"]
    assert ImportRun.objects.count() == 2
    assert ImportRun.objects.get(pk=response.json()["id"]).force is True


@pytest.mark.parametrize("value", ["false", "0", "FALSE", ""])
def test_force_false_keeps_the_duplicate_check(
    client: Client, acme: ConnectorCredentials, value: str
) -> None:
    post_file(client, acme)
    response = post_file(client, acme, force=value)
    assert response.status_code == 200
    assert response.json()["duplicate"] is True


def test_a_file_whose_run_failed_uploaded_again_with_its_encoding_is_a_new_run(
    client: Client, acme: ConnectorCredentials
) -> None:
    # Given a cp1252 file uploaded without its encoding: the run fails, advising cp1252
    latin = f"{HEADER}\nSKU-1,Café,1.00,EUR,1,main,2026-11-22T10:00:00Z\n".encode("cp1252")
    first = post_file(client, acme, latin).json()
    drain_outbox()
    failed = client.get(path_of(first["status_url"]), headers=bearer(acme)).json()
    assert failed["status"] == "failed"
    assert "cp1252" in failed["error"]

    # When the same file is uploaded again with encoding=cp1252, as the error advises
    response = post_file(client, acme, latin, encoding="cp1252")

    # Then it is a new run, which imports the file
    assert response.status_code == 202, response.content
    second = response.json()
    assert second["id"] != first["id"]
    drain_outbox()
    assert ImportRun.objects.get(pk=second["id"]).status == ImportRun.Status.COMPLETED
    assert Product.objects.get(sku="SKU-1").name == "Café"
    # And a repeat naming the same codec otherwise is a duplicate of that run
    repeat = post_file(client, acme, latin, encoding="CP1252")
    assert repeat.status_code == 200
    assert (repeat.json()["duplicate"], repeat.json()["id"]) == (True, second["id"])


def test_a_failed_run_is_not_a_duplicate(client: Client, acme: ConnectorCredentials) -> None:
    # Given a run that failed (every row names an unknown product)
    data = f"{HEADER}\nSKU-1,,1.00,EUR,1,main,2026-11-22T10:00:00Z\n"
    first = post_file(client, acme, data).json()
    drain_outbox()
    assert ImportRun.objects.get(pk=first["id"]).status == ImportRun.Status.FAILED

    # When the same file is uploaded again once the product exists
    product_upsert(items=[ProductItem("SKU-1", "Widget", True, datetime(2026, 1, 1, tzinfo=UTC))])
    response = post_file(client, acme, data)

    # Then it is a new run, not the failed one
    assert response.status_code == 202, response.content
    assert response.json()["id"] != first["id"]
    drain_outbox()
    assert ImportRun.objects.get(pk=response.json()["id"]).status == ImportRun.Status.COMPLETED


def test_the_same_file_with_another_encoding_is_a_new_run(
    client: Client, acme: ConnectorCredentials
) -> None:
    first = post_file(client, acme).json()

    response = post_file(client, acme, encoding="latin-1")

    assert response.status_code == 202, response.content
    assert response.json()["id"] != first["id"]
    assert ImportRun.objects.get(pk=response.json()["id"]).encoding == "latin-1"
    # "utf-8" names the codec an upload without an encoding is read with
    assert post_file(client, acme, encoding="utf-8").json()["id"] == first["id"]


def test_the_same_file_from_another_connector_is_a_new_run(
    client: Client, acme: ConnectorCredentials, globex: ConnectorCredentials
) -> None:
    first = post_file(client, acme).json()

    response = post_file(client, globex)

    assert response.status_code == 202
    assert response.json()["id"] != first["id"]
    assert ImportRun.objects.get(pk=response.json()["id"]).connector == globex.connector


def test_an_empty_file_is_accepted_and_the_run_fails_with_a_reason(
    client: Client, acme: ConnectorCredentials
) -> None:
    response = post_file(client, acme, b"")
    assert response.status_code == 202

    drain_outbox()

    body = client.get(path_of(response.json()["status_url"]), headers=bearer(acme)).json()
    assert body["status"] == "failed"
    assert "empty" in body["error"]
    assert body["total_rows"] == body["processed_rows"] == 0
    assert body["percent"] == 100
    assert body["finished_at"] is not None


# -- upload: authentication -----------------------------------------------------------------------
@pytest.mark.parametrize(
    "authorization",
    [
        pytest.param(None, id="missing"),
        pytest.param("Bearer", id="no-token"),
        pytest.param("Bearer spt_wrong_wrong_wrong_wrong", id="wrong-token"),
        pytest.param("Basic YWNtZTpzZWNyZXQ=", id="basic"),
        pytest.param("Token {token}", id="other-scheme"),
    ],
)
def test_upload_without_a_valid_token_is_401(
    client: Client, acme: ConnectorCredentials, media: Path, authorization: str | None
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    headers = {k: v.format(token=acme.api_token) for k, v in headers.items()}

    response = post_file(client, acme, headers=headers)

    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert response.json()["errors"]
    assert_nothing_stored(media)


def test_upload_with_another_connectors_token_is_401(
    client: Client, acme: ConnectorCredentials, globex: ConnectorCredentials, media: Path
) -> None:
    response = post_file(client, acme, headers=bearer(globex))
    assert response.status_code == 401
    assert_nothing_stored(media)


def test_unknown_and_disabled_connectors_are_401_like_a_wrong_token(
    client: Client, acme: ConnectorCredentials, media: Path
) -> None:
    assert post_file(client, acme, slug="nobody").status_code == 401
    Connector.objects.filter(slug="acme").update(enabled=False)
    assert post_file(client, acme).status_code == 401
    assert_nothing_stored(media)


# -- upload: size limit ---------------------------------------------------------------------------
class _Unread(io.RawIOBase):
    """A request body that fails the test if anything reads it."""

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        raise AssertionError("the body was read although Content-Length was over the limit")

    readinto = read  # type: ignore[assignment]


def test_a_declared_length_over_the_limit_is_413_before_the_body_is_read(
    client: Client, acme: ConnectorCredentials, media: Path, settings: Any
) -> None:
    settings.IMPORT_MAX_UPLOAD_BYTES = 1000
    declared = 1000 + MULTIPART_OVERHEAD_BYTES + 1

    response = client.generic(
        "POST",
        UPLOAD_URL.format("acme"),
        headers=bearer(acme),
        CONTENT_TYPE="multipart/form-data; boundary=xyz",
        CONTENT_LENGTH=str(declared),
        **{"wsgi.input": _Unread()},
    )

    assert response.status_code == 413
    assert "1000 bytes" in response.json()["errors"][0]["message"]
    assert_nothing_stored(media)


class _Dropped(io.RawIOBase):
    """A request body whose client hangs up part-way."""

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        raise OSError("connection reset by peer")

    readinto = read  # type: ignore[assignment]


def test_an_upload_cut_off_by_the_client_is_400_and_stores_nothing(
    client: Client, acme: ConnectorCredentials, media: Path
) -> None:
    response = client.generic(
        "POST",
        UPLOAD_URL.format("acme"),
        headers=bearer(acme),
        CONTENT_TYPE="multipart/form-data; boundary=xyz",
        CONTENT_LENGTH="5000",
        **{"wsgi.input": _Dropped()},
    )
    assert response.status_code == 400
    assert_nothing_stored(media)


def test_a_body_over_the_limit_is_413(
    client: Client, acme: ConnectorCredentials, media: Path, settings: Any
) -> None:
    settings.IMPORT_MAX_UPLOAD_BYTES = 1000
    big = GOOD_CSV.encode() + b"x" * (1000 + MULTIPART_OVERHEAD_BYTES)
    response = post_file(client, acme, big)
    assert response.status_code == 413
    assert_nothing_stored(media)


def test_a_file_over_the_limit_is_413_while_it_is_stored(
    client: Client, acme: ConnectorCredentials, media: Path, settings: Any
) -> None:
    # Given a limit the request as a whole stays under (the multipart allowance is larger)
    settings.IMPORT_MAX_UPLOAD_BYTES = 100
    data = (HEADER + "\n").encode().ljust(101, b"\n")
    assert len(data) == 101
    # When the file has one byte too many, then it is refused and nothing is kept
    response = post_file(client, acme, data)
    assert response.status_code == 413
    assert response.json()["errors"][0] == {
        "path": "file",
        "message": "the file must not exceed 100 bytes",
    }
    assert_nothing_stored(media)
    # And one byte less is fine
    assert post_file(client, acme, data[:100]).status_code == 202


def test_an_upload_of_unknown_length_is_cut_off_while_it_streams(
    client: Client, acme: ConnectorCredentials, media: Path, settings: Any, monkeypatch
) -> None:
    # Given a request whose length the view cannot check up front
    monkeypatch.setattr(imports.api, "_declared_length", lambda request: None)

    def never(**kwargs: Any) -> None:
        raise AssertionError("the oversized file reached import_create")

    monkeypatch.setattr(imports.services, "import_create", never)
    settings.IMPORT_MAX_UPLOAD_BYTES = 1000
    big = GOOD_CSV.encode() + b"x" * (1000 + MULTIPART_OVERHEAD_BYTES)

    response = post_file(client, acme, big)

    assert response.status_code == 413
    assert_nothing_stored(media)


# -- upload: bad input ----------------------------------------------------------------------------
def test_a_missing_file_is_400(client: Client, acme: ConnectorCredentials, media: Path) -> None:
    response = client.post(UPLOAD_URL.format("acme"), {"encoding": "utf-8"}, headers=bearer(acme))
    assert response.status_code == 400
    assert response.json()["errors"][0]["path"] == "file"
    assert_nothing_stored(media)


def test_a_file_sent_as_a_plain_field_is_400(
    client: Client, acme: ConnectorCredentials, media: Path
) -> None:
    response = client.post(UPLOAD_URL.format("acme"), {"file": GOOD_CSV}, headers=bearer(acme))
    assert response.status_code == 400
    assert_nothing_stored(media)


def test_two_files_are_400(client: Client, acme: ConnectorCredentials, media: Path) -> None:
    files = [SimpleUploadedFile(f"{n}.csv", GOOD_CSV.encode()) for n in (1, 2)]
    response = client.post(UPLOAD_URL.format("acme"), {"file": files}, headers=bearer(acme))
    assert response.status_code == 400
    assert_nothing_stored(media)


@pytest.mark.parametrize("encoding", ["klingon", "utf-16", "base64", "utf-8\x00", "x" * 300])
def test_an_unusable_encoding_is_400(
    client: Client, acme: ConnectorCredentials, media: Path, encoding: str
) -> None:
    response = post_file(client, acme, encoding=encoding)
    assert response.status_code == 400
    assert response.json()["errors"][0]["path"] == "encoding"
    assert_nothing_stored(media)


@pytest.mark.parametrize("value", ["maybe", "yes", "2", "truee"])
def test_a_bad_force_value_is_400(
    client: Client, acme: ConnectorCredentials, media: Path, value: str
) -> None:
    response = post_file(client, acme, force=value)
    assert response.status_code == 400
    assert response.json()["errors"][0]["path"] == "force"
    assert_nothing_stored(media)


@pytest.mark.parametrize(
    "content_type", ["text/csv", "application/json", "application/x-www-form-urlencoded"]
)
def test_a_body_that_is_not_multipart_is_415(
    client: Client, acme: ConnectorCredentials, media: Path, content_type: str
) -> None:
    response = client.post(
        UPLOAD_URL.format("acme"), GOOD_CSV, content_type=content_type, headers=bearer(acme)
    )
    assert response.status_code == 415
    assert response.json()["errors"]
    assert_nothing_stored(media)


@pytest.mark.parametrize(
    "content_type",
    ["multipart/form-data", "multipart/form-data; boundary="],
)
def test_a_broken_multipart_body_is_400(
    client: Client, acme: ConnectorCredentials, media: Path, content_type: str
) -> None:
    response = client.post(
        UPLOAD_URL.format("acme"),
        b"--x\r\ngarbage",
        content_type=content_type,
        headers=bearer(acme),
    )
    assert response.status_code == 400
    assert response.json()["errors"]
    assert_nothing_stored(media)


def test_other_methods_on_the_upload_url_are_405(
    client: Client, acme: ConnectorCredentials
) -> None:
    for response in (
        client.get(UPLOAD_URL.format("acme"), headers=bearer(acme)),
        client.put(UPLOAD_URL.format("acme"), headers=bearer(acme)),
    ):
        assert response.status_code == 405
        assert response["Allow"] == "POST"
        assert response.json()["errors"]


def test_upload_needs_no_csrf_token(acme: ConnectorCredentials) -> None:
    response = post_file(Client(enforce_csrf_checks=True), acme)
    assert response.status_code == 202


# -- status document ------------------------------------------------------------------------------
def test_the_status_document_of_a_queued_run(client: Client, acme: ConnectorCredentials) -> None:
    run_id = upload_run(client, acme, GOOD_CSV)
    run = ImportRun.objects.get(pk=run_id)

    response = client.get(RUN_URL.format(run_id), headers=bearer(acme))

    assert response.status_code == 200
    assert response["Cache-Control"].startswith("max-age=0")
    assert response.json() == {
        "id": run_id,
        "status": "queued",
        "total_rows": 0,
        "processed_rows": 0,
        "succeeded_rows": 0,
        "failed_rows": 0,
        "skipped_rows": 0,
        "percent": 0,
        "created_at": timestamp(run.created_at),
        "started_at": None,
        "finished_at": None,
        "errors_url": f"http://testserver/api/v1/imports/{run_id}/errors.csv",
        "connector": "acme",
        "filename": "catalog.csv",
        "batches_total": 0,
        "batches_done": 0,
        "retries": 0,
        "warnings": [],
        "error": None,
    }


def test_the_status_document_of_a_finished_run(client: Client, acme: ConnectorCredentials) -> None:
    # An unknown column is ignored with a warning
    lines = MIXED_CSV.splitlines()
    with_colour = "\n".join([lines[0] + ",colour", *(line + ",red" for line in lines[1:])])
    run_id = upload_run(client, acme, with_colour + "\n")
    drain_outbox()
    run = ImportRun.objects.get(pk=run_id)

    body = client.get(RUN_URL.format(run_id), headers=bearer(acme)).json()

    assert set(body) >= CONTRACT_FIELDS
    assert body["status"] == "completed_with_errors"
    assert (body["total_rows"], body["processed_rows"]) == (4, 4)
    assert (body["succeeded_rows"], body["failed_rows"], body["skipped_rows"]) == (1, 3, 0)
    assert body["percent"] == 100
    assert body["started_at"] == timestamp(run.started_at) is not None
    assert body["finished_at"] == timestamp(run.finished_at) is not None
    assert (body["batches_total"], body["batches_done"]) == (1, 1)
    assert len(body["warnings"]) == 1
    assert "colour" in body["warnings"][0]


@pytest.mark.parametrize(
    ("total", "processed", "percent"),
    [(3, 0, 0), (3, 1, 33), (3, 2, 66), (2000, 1999, 99), (3, 3, 100)],
)
def test_percent_is_whole_and_reaches_100_only_at_the_end(
    client: Client, acme: ConnectorCredentials, total: int, processed: int, percent: float
) -> None:
    run_id = upload_run(client, acme)
    ImportRun.objects.filter(pk=run_id).update(
        status="running", total_rows=total, processed_rows=processed, succeeded_rows=processed
    )
    body = client.get(RUN_URL.format(run_id), headers=bearer(acme)).json()
    assert body["percent"] == percent
    assert isinstance(body["percent"], int)


def test_a_run_cancelled_before_planning_shows_0_percent(
    client: Client, acme: ConnectorCredentials
) -> None:
    run_id = upload_run(client, acme)
    client.post(RUN_URL.format(run_id) + "/cancel", headers=bearer(acme))
    assert client.get(RUN_URL.format(run_id), headers=bearer(acme)).json()["percent"] == 0


# -- error report ---------------------------------------------------------------------------------
def test_the_error_report_lists_the_failed_rows_with_formulas_neutralised(
    client: Client, acme: ConnectorCredentials
) -> None:
    run_id = upload_run(client, acme)
    drain_outbox()

    response = client.get(RUN_URL.format(run_id) + "/errors.csv", headers=bearer(acme))

    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == (f'attachment; filename="import-{run_id}-errors.csv"')
    assert response["Cache-Control"].startswith("max-age=0")
    rows = report(response)
    assert rows[0] == ["line", "sku", "column", "code", "message"]
    assert [row[:4] for row in rows[1:]] == [
        ["3", "NOPE-1", "sku", "unknown_sku"],
        ["4", "'" + FORMULA_SKU, "sku", "unknown_sku"],
        ["5", "'@SUM(1)", "quantity", "invalid_value"],
    ]
    assert rows[1][4] == "no product with sku 'NOPE-1'"
    assert "many" in rows[3][4]
    assert not any(cell.startswith(("=", "+", "-", "@")) for row in rows for cell in row)


def test_the_error_report_of_a_clean_run_is_the_header_only(
    client: Client, acme: ConnectorCredentials
) -> None:
    run_id = upload_run(client, acme, GOOD_CSV)
    drain_outbox()
    response = client.get(RUN_URL.format(run_id) + "/errors.csv", headers=bearer(acme))
    assert report(response) == [["line", "sku", "column", "code", "message"]]


def test_the_error_report_streams_many_rows_in_line_order(
    client: Client, acme: ConnectorCredentials
) -> None:
    # More rows than one fetch of the report (2,000) and than one batch (1,000)
    lines = [f"MISSING-{n},,,,1,main,2026-11-22T10:00:00Z" for n in range(4500)]
    run_id = upload_run(client, acme, HEADER + "\n" + "\n".join(lines) + "\n")
    drain_outbox()

    rows = report(client.get(RUN_URL.format(run_id) + "/errors.csv", headers=bearer(acme)))

    assert len(rows) == 4501
    assert [int(row[0]) for row in rows[1:]] == list(range(2, 4502))
    assert rows[-1][1] == "MISSING-4499"


# -- retry failed rows ----------------------------------------------------------------------------
def test_retry_failed_is_409_until_the_run_has_finished(
    client: Client, acme: ConnectorCredentials
) -> None:
    run_id = upload_run(client, acme)

    response = client.post(RUN_URL.format(run_id) + "/retry-failed", headers=bearer(acme))

    assert response.status_code == 409
    assert response.json()["errors"]
    assert ImportRun.objects.get(pk=run_id).status == "queued"
    assert OutboxMessage.objects.count() == 1  # only the start


def test_retry_failed_is_409_for_a_run_without_failed_rows(
    client: Client, acme: ConnectorCredentials
) -> None:
    run_id = upload_run(client, acme, GOOD_CSV)
    drain_outbox()
    response = client.post(RUN_URL.format(run_id) + "/retry-failed", headers=bearer(acme))
    assert response.status_code == 409


def test_retry_failed_applies_the_rows_that_can_now_succeed(
    client: Client, acme: ConnectorCredentials
) -> None:
    # Given a finished run with three failed rows, two of them for products not yet known
    run_id = upload_run(client, acme)
    drain_outbox()
    run = ImportRun.objects.get(pk=run_id)
    assert run.status == "completed_with_errors"
    assert counters(run) == (4, 4, 1, 3, 0)
    at = datetime(2026, 11, 1, tzinfo=UTC)
    product_upsert(
        items=[
            ProductItem(sku=sku, name="Made by hand", active=None, updated_at=at)
            for sku in ("NOPE-1", FORMULA_SKU)
        ]
    )

    # When the failed rows are retried
    response = client.post(RUN_URL.format(run_id) + "/retry-failed", headers=bearer(acme))

    assert response.status_code == 202
    body = response.json()
    assert body["id"] == run_id
    assert body["status"] == "running"
    assert body["finished_at"] is None
    assert body["retries"] == 1
    # Then the worker turns the fixable ones into successes and the counters still add up
    drain_outbox()
    total, processed, succeeded, failed, skipped = counters(run)
    assert (total, processed, succeeded, failed, skipped) == (4, 4, 3, 1, 0)
    assert processed == succeeded + failed + skipped == total
    assert run.status == "completed_with_errors"
    assert StockLevel.objects.get(product__sku=FORMULA_SKU, warehouse="main").quantity == 4
    assert StockLevel.objects.get(product__sku="NOPE-1", warehouse="main").quantity == 3
    rows = report(client.get(RUN_URL.format(run_id) + "/errors.csv", headers=bearer(acme)))
    assert [row[:4] for row in rows[1:]] == [["5", "'@SUM(1)", "quantity", "invalid_value"]]
    status = client.get(RUN_URL.format(run_id), headers=bearer(acme)).json()
    assert (status["status"], status["percent"], status["failed_rows"]) == (
        "completed_with_errors",
        100,
        1,
    )


# -- cancel ---------------------------------------------------------------------------------------
def test_cancel_stops_a_queued_run(client: Client, acme: ConnectorCredentials) -> None:
    run_id = upload_run(client, acme)

    response = client.post(RUN_URL.format(run_id) + "/cancel", headers=bearer(acme))

    assert response.status_code == 202
    body = response.json()
    assert body["status"] == "cancelled"
    assert body["finished_at"] is not None
    # The start message still runs, and does nothing
    drain_outbox()
    run = ImportRun.objects.get(pk=run_id)
    assert run.status == "cancelled"
    assert counters(run) == (0, 0, 0, 0, 0)
    assert not Product.objects.exists()


def test_cancel_of_a_finished_run_is_409(client: Client, acme: ConnectorCredentials) -> None:
    run_id = upload_run(client, acme, GOOD_CSV)
    drain_outbox()

    response = client.post(RUN_URL.format(run_id) + "/cancel", headers=bearer(acme))

    assert response.status_code == 409
    assert response.json()["errors"]
    assert ImportRun.objects.get(pk=run_id).status == "completed"


def test_cancel_twice_is_409_the_second_time(client: Client, acme: ConnectorCredentials) -> None:
    run_id = upload_run(client, acme)
    assert client.post(RUN_URL.format(run_id) + "/cancel", headers=bearer(acme)).status_code == 202
    assert client.post(RUN_URL.format(run_id) + "/cancel", headers=bearer(acme)).status_code == 409


# -- run endpoints: who may see what --------------------------------------------------------------
RUN_ENDPOINTS = [
    pytest.param("get", "", id="status"),
    pytest.param("get", "/errors.csv", id="errors"),
    pytest.param("post", "/retry-failed", id="retry-failed"),
    pytest.param("post", "/cancel", id="cancel"),
]


@pytest.mark.parametrize(("method", "suffix"), RUN_ENDPOINTS)
@pytest.mark.parametrize(
    "authorization",
    [
        pytest.param(None, id="missing"),
        pytest.param("Bearer ", id="empty"),
        pytest.param("Bearer spt_wrong_wrong_wrong_wrong", id="wrong"),
        pytest.param("Basic YWNtZTpzZWNyZXQ=", id="basic"),
    ],
)
def test_run_endpoints_without_a_valid_token_are_401(
    client: Client,
    acme: ConnectorCredentials,
    method: str,
    suffix: str,
    authorization: str | None,
) -> None:
    run_id = upload_run(client, acme)
    headers = {} if authorization is None else {"Authorization": authorization}

    response = getattr(client, method)(RUN_URL.format(run_id) + suffix, headers=headers)

    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert response.json()["errors"]
    assert ImportRun.objects.get(pk=run_id).status == "queued"


@pytest.mark.parametrize(("method", "suffix"), RUN_ENDPOINTS)
def test_another_connectors_run_is_404(
    client: Client,
    acme: ConnectorCredentials,
    globex: ConnectorCredentials,
    method: str,
    suffix: str,
) -> None:
    run_id = upload_run(client, acme)

    response = getattr(client, method)(RUN_URL.format(run_id) + suffix, headers=bearer(globex))

    assert response.status_code == 404
    assert response.json()["errors"]
    assert ImportRun.objects.get(pk=run_id).status == "queued"


@pytest.mark.parametrize("run_id", ["999999", "abc", "99999999999999999999999", "-1", "1.0"])
def test_unknown_or_malformed_ids_are_404(
    client: Client, acme: ConnectorCredentials, run_id: str
) -> None:
    upload_run(client, acme)
    for suffix in ("", "/errors.csv"):
        response = client.get(RUN_URL.format(run_id) + suffix, headers=bearer(acme))
        assert response.status_code == 404
        assert response.json()["errors"]


def test_a_disabled_connectors_token_is_401(client: Client, acme: ConnectorCredentials) -> None:
    run_id = upload_run(client, acme)
    Connector.objects.filter(slug="acme").update(enabled=False)
    assert client.get(RUN_URL.format(run_id), headers=bearer(acme)).status_code == 401


def test_a_run_uploaded_by_staff_is_hidden_from_every_token(
    client: Client, acme: ConnectorCredentials, upload: Callable, admin_user: Any
) -> None:
    run = upload(GOOD_CSV, uploaded_by=admin_user).run
    assert run.connector is None

    assert client.get(RUN_URL.format(run.pk), headers=bearer(acme)).status_code == 404

    client.force_login(admin_user)
    body = client.get(RUN_URL.format(run.pk)).json()
    assert (body["id"], body["connector"]) == (run.pk, None)


def test_staff_sessions_see_every_run(
    client: Client, acme: ConnectorCredentials, admin_user: Any
) -> None:
    run_id = upload_run(client, acme)
    drain_outbox()
    client.force_login(admin_user)

    assert client.get(RUN_URL.format(run_id)).json()["status"] == "completed_with_errors"
    errors = client.get(RUN_URL.format(run_id) + "/errors.csv")
    assert len(report(errors)) == 4


def test_a_bearer_header_decides_even_beside_a_staff_session(
    client: Client, acme: ConnectorCredentials, admin_user: Any
) -> None:
    run_id = upload_run(client, acme)
    client.force_login(admin_user)
    wrong = {"Authorization": "Bearer spt_wrong_wrong_wrong_wrong"}
    assert client.get(RUN_URL.format(run_id), headers=wrong).status_code == 401


def test_non_staff_users_are_403(client: Client, acme: ConnectorCredentials) -> None:
    run_id = upload_run(client, acme)
    user = get_user_model().objects.create_user("shopper", password="x" * 12)
    client.force_login(user)

    assert client.get(RUN_URL.format(run_id)).status_code == 403
    assert client.post(RUN_URL.format(run_id) + "/cancel").status_code == 403
    assert ImportRun.objects.get(pk=run_id).status == "queued"


def test_session_posts_need_a_csrf_token(acme: ConnectorCredentials, admin_user: Any) -> None:
    browser = Client(enforce_csrf_checks=True)
    run_id = upload_run(browser, acme)
    browser.force_login(admin_user)
    cancel = RUN_URL.format(run_id) + "/cancel"

    # Without the token a forged form post is refused, and the run is untouched
    refused = browser.post(cancel)
    assert refused.status_code == 403
    assert "CSRF" in refused.json()["errors"][0]["message"]
    assert ImportRun.objects.get(pk=run_id).status == "queued"

    # With the cookie's token in the header, as the admin's script sends it
    token = "a" * 32
    browser.cookies["csrftoken"] = token
    response = browser.post(cancel, headers={"X-CSRFToken": token})
    assert response.status_code == 202
    assert response.json()["status"] == "cancelled"


def test_token_posts_need_no_csrf_token(acme: ConnectorCredentials) -> None:
    browser = Client(enforce_csrf_checks=True)
    run_id = upload_run(browser, acme)
    response = browser.post(RUN_URL.format(run_id) + "/cancel", headers=bearer(acme))
    assert response.status_code == 202


@pytest.mark.parametrize(
    ("method", "suffix", "allow"),
    [
        ("get", "/retry-failed", "POST"),
        ("get", "/cancel", "POST"),
        ("post", "", "GET, HEAD"),
        ("delete", "", "GET, HEAD"),
        ("post", "/errors.csv", "GET, HEAD"),
    ],
)
def test_wrong_methods_are_405_with_allow(
    client: Client, acme: ConnectorCredentials, method: str, suffix: str, allow: str
) -> None:
    run_id = upload_run(client, acme)
    response = getattr(client, method)(RUN_URL.format(run_id) + suffix, headers=bearer(acme))
    assert response.status_code == 405
    assert response["Allow"] == allow
    assert response.json()["errors"]
    assert ImportRun.objects.get(pk=run_id).status == "queued"


# -- end to end -----------------------------------------------------------------------------------
@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_an_upload_over_http_is_imported_by_real_processes(
    start_web: Callable, start_relay: Callable, start_worker: Callable, media: Path
) -> None:
    # Given the web, relay and worker processes sharing one media root
    acme = connector_save(slug="acme", name="ACME ERP")
    shared = {"MEDIA_ROOT": str(media)}
    web = start_web(**shared)
    start_relay(**shared)
    start_worker(**shared)
    rows = [f"SKU-{n},Product {n},{n}.50,EUR,{n},main,2026-11-22T10:00:00Z" for n in range(1, 2501)]
    data = (HEADER + "\n" + "\n".join(rows) + "\n").encode()

    # When an ERP uploads a file of three batches over HTTP
    response = requests.post(
        f"{web.url}/api/v1/erp/acme/imports",
        files={"file": ("catalog.csv", data, "text/csv")},
        headers=bearer(acme),
        timeout=30,
    )
    assert response.status_code == 202, response.text
    status_url = response.json()["status_url"]
    assert status_url.startswith(web.url)

    # Then its status URL reports the run completed, with counters that add up
    def finished() -> dict[str, Any] | None:
        body = requests.get(status_url, headers=bearer(acme), timeout=10).json()
        return body if body["status"] in {"completed", "completed_with_errors", "failed"} else None

    body = wait_until(finished, timeout=120, what="the import run to finish")
    assert body["status"] == "completed", body
    assert (body["total_rows"], body["processed_rows"], body["succeeded_rows"]) == (2500,) * 3
    assert (body["failed_rows"], body["skipped_rows"], body["percent"]) == (0, 0, 100)
    assert body["batches_done"] == body["batches_total"] == 3
    # And the catalog holds every row
    assert Product.objects.count() == 2500
    assert Product.objects.get(sku="SKU-2500").name == "Product 2500"
    assert StockLevel.objects.get(product__sku="SKU-7", warehouse="main").quantity == 7
    assert Price.objects.get(product__sku="SKU-12", currency="EUR").amount == Decimal("12.50")
    errors = requests.get(body["errors_url"], headers=bearer(acme), timeout=10)
    assert errors.status_code == 200
    assert errors.text == "line,sku,column,code,message\r\n"
