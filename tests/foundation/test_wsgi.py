"""The WSGI application gunicorn serves: machines' requests skip the browser middleware."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils.crypto import get_random_string

from catalog.models import Product
from erp_connectors.services import ConnectorCredentials, connector_save
from imports.models import ImportRun
from syncplatform.wsgi import application

# Committed data: the application, as under gunicorn, checks its connection at every request
# (close_old_connections), which a test transaction left open would not survive.
pytestmark = pytest.mark.django_db(transaction=True)


Answer = tuple[str, dict[str, list[str]], bytes]


def wsgi_get(path: str, headers: dict[str, str] | None = None) -> Answer:
    return wsgi_call("GET", path, headers)


def wsgi_call(method: str, path: str, headers: dict[str, str] | None = None) -> Answer:
    """Call the application as gunicorn would, without a body; (status, headers, body)."""
    environ: dict[str, Any] = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "SCRIPT_NAME": "",
        "QUERY_STRING": "",
        "SERVER_NAME": "testserver",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_HOST": "testserver",
        "wsgi.input": io.BytesIO(b""),
        "wsgi.url_scheme": "http",
        "wsgi.errors": io.StringIO(),
        "CONTENT_LENGTH": "0",
    }
    for name, value in (headers or {}).items():
        environ["HTTP_" + name.upper().replace("-", "_")] = value
    started: list[Any] = []
    chunks = application(environ, lambda status, headers: started.extend([status, headers]))
    body = b"".join(chunks)
    chunks.close()
    headers: dict[str, list[str]] = {}
    for name, value in started[1]:
        headers.setdefault(name.lower(), []).append(value)
    return started[0], headers, body


def test_a_storefront_read_gets_no_session_or_csrf_machinery_but_keeps_security_headers() -> None:
    Product.objects.create(sku="SKU-W", name="Widget")

    status, headers, body = wsgi_get("/api/v1/products/SKU-W")

    assert status.startswith("200")
    assert b'"sku": "SKU-W"' in body or b'"sku":"SKU-W"' in body
    # No session or CSRF cookie, and caches are not told the answer depends on cookies
    assert "set-cookie" not in headers
    assert "Cookie" not in ",".join(headers.get("vary", []))
    # The browser-only middleware did not run (its clickjacking header is missing: JSON is
    # never shown in a frame), SecurityMiddleware did
    assert "x-frame-options" not in headers
    assert headers["x-content-type-options"] == ["nosniff"]


def test_an_unknown_api_path_is_a_plain_404() -> None:
    status, headers, _ = wsgi_get("/api/v1/nothing-here")
    assert status.startswith("404")
    assert "set-cookie" not in headers


def test_the_admin_keeps_the_full_stack() -> None:
    status, headers, body = wsgi_get("/admin/login/")

    assert status.startswith("200")
    # CSRF protection and the clickjacking header of the full middleware stack
    assert any(cookie.strip().startswith("csrftoken=") for cookie in headers["set-cookie"])
    assert headers["x-frame-options"] == ["DENY"]
    assert b"csrfmiddlewaretoken" in body


# -- the import endpoints answer a staff session (CONTRACT §4) ---------------------------------
@pytest.fixture
def acme(settings: Any) -> ConnectorCredentials:
    settings.OUTBOX_FAST_PATH = False  # the cancel's notification stays in the outbox
    return connector_save(slug="acme", name="ACME ERP")


@pytest.fixture
def run(acme: ConnectorCredentials) -> ImportRun:
    return ImportRun.objects.create(
        connector=acme.connector, file="imports/catalog.csv", file_sha256="0" * 64
    )


@pytest.fixture
def staff_cookie() -> str:
    """A logged-in staff member's session cookie, as the admin's login sets it."""
    staff = get_user_model().objects.create_user("ops", password="x" * 12, is_staff=True)
    browser = Client()
    browser.force_login(staff)
    return f"{settings.SESSION_COOKIE_NAME}={browser.cookies[settings.SESSION_COOKIE_NAME].value}"


def test_a_staff_session_reads_an_import_run(run: ImportRun, staff_cookie: str) -> None:
    status, _, body = wsgi_get(f"/api/v1/imports/{run.pk}", {"Cookie": staff_cookie})
    assert status.startswith("200"), body
    assert json.loads(body)["id"] == run.pk

    status, headers, _ = wsgi_get(f"/api/v1/imports/{run.pk}/errors.csv", {"Cookie": staff_cookie})
    assert status.startswith("200")
    assert headers["content-type"] == ["text/csv; charset=utf-8"]


@pytest.mark.parametrize(
    "cookie", [pytest.param("", id="no-cookie"), pytest.param("lb=node-2", id="other-cookie")]
)
def test_without_a_session_or_token_an_import_run_is_401(run: ImportRun, cookie: str) -> None:
    status, headers, _ = wsgi_get(f"/api/v1/imports/{run.pk}", {"Cookie": cookie})
    assert status.startswith("401")
    # Still the lean stack: no session or CSRF machinery answered
    assert "set-cookie" not in headers
    assert "x-frame-options" not in headers


def test_a_session_post_needs_the_csrf_token(run: ImportRun, staff_cookie: str) -> None:
    cancel = f"/api/v1/imports/{run.pk}/cancel"

    # Without the token, a form another site makes the browser post is refused
    status, _, body = wsgi_call("POST", cancel, {"Cookie": staff_cookie})
    assert status.startswith("403")
    assert "CSRF" in json.loads(body)["errors"][0]["message"]
    run.refresh_from_db()
    assert run.status == "queued"

    # With the csrftoken cookie's value in the header, as the admin's script sends it
    token = get_random_string(32)
    cookies = f"{staff_cookie}; {settings.CSRF_COOKIE_NAME}={token}"
    status, _, body = wsgi_call("POST", cancel, {"Cookie": cookies, "X-CSRFToken": token})
    assert status.startswith("202"), body
    assert json.loads(body)["status"] == "cancelled"


def test_a_bearer_token_needs_no_cookie_or_csrf_token(
    run: ImportRun, acme: ConnectorCredentials
) -> None:
    bearer = {"Authorization": f"Bearer {acme.api_token}"}

    status, headers, _ = wsgi_get(f"/api/v1/imports/{run.pk}", bearer)
    assert status.startswith("200")
    assert "set-cookie" not in headers

    status, _, body = wsgi_call("POST", f"/api/v1/imports/{run.pk}/cancel", bearer)
    assert status.startswith("202"), body
    assert json.loads(body)["status"] == "cancelled"
