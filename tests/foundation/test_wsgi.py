"""The WSGI application gunicorn serves: machines' requests skip the browser middleware."""

from __future__ import annotations

import io
from typing import Any

import pytest

from catalog.models import Product
from syncplatform.wsgi import application

# Committed data: the application, as under gunicorn, checks its connection at every request
# (close_old_connections), which a test transaction left open would not survive.
pytestmark = pytest.mark.django_db(transaction=True)


def wsgi_get(path: str) -> tuple[str, dict[str, list[str]], bytes]:
    """GET `path` from the application as gunicorn would call it; (status, headers, body)."""
    environ: dict[str, Any] = {
        "REQUEST_METHOD": "GET",
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
    }
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
