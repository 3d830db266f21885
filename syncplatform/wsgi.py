"""WSGI entry point for gunicorn: one application, two middleware stacks.

Requests from machines (webhooks, the JSON APIs, health checks, metrics; the path prefixes
in settings.MACHINE_PATH_PREFIXES) go through settings.MACHINE_MIDDLEWARE, without the
sessions, CSRF, authentication, messages and clickjacking middleware that only pages for
people in a browser use: they cost about a tenth of a webhook's and a storefront read's CPU.
Everything else (the admin) goes through settings.MIDDLEWARE in full, and so does a request
to those paths that carries the session cookie: a staff member's browser reading an import
run's status (CONTRACT §4), who must be known, and whose POSTs must pass the CSRF check.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Callable, Iterable
from typing import Any

from django.conf import settings
from django.core.handlers.wsgi import WSGIHandler
from django.core.wsgi import get_wsgi_application
from django.http.cookie import parse_cookie

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "syncplatform.settings")


class MachineHandler(WSGIHandler):
    """Django's WSGI handler with settings.MACHINE_MIDDLEWARE as its middleware."""

    def load_middleware(self, is_async: bool = False) -> None:
        # Django reads the list from settings and nowhere else; it is swapped only while
        # this handler is built, at start-up, before any request is served.
        full = settings.MIDDLEWARE
        settings.MIDDLEWARE = settings.MACHINE_MIDDLEWARE
        try:
            super().load_middleware(is_async)
        finally:
            settings.MIDDLEWARE = full


def _make_application() -> Callable[[dict[str, Any], Callable], Iterable[bytes]]:
    for_people = get_wsgi_application()  # also sets Django up
    for_machines = MachineHandler()
    prefixes = tuple(settings.MACHINE_PATH_PREFIXES)
    session_cookie = settings.SESSION_COOKIE_NAME

    def application(environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        lean = environ.get("PATH_INFO", "").startswith(prefixes) and not _has_cookie(
            environ.get("HTTP_COOKIE", ""), session_cookie
        )
        handler = for_machines if lean else for_people
        return handler(environ, start_response)

    return application


def _has_cookie(header: str, name: str) -> bool:
    """Whether the Cookie header sets `name` to a value. Machines send no cookies, so the
    substring test answers nearly every one of them without parsing."""
    return name in header and bool(parse_cookie(header).get(name))


application = _make_application()
# gunicorn imports this module in each worker, once Django and the app are loaded: leave
# their long-lived objects out of every garbage collection from here on, as the Celery pool
# processes do (syncplatform/celery.py).
gc.freeze()
