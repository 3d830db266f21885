"""Answer 503 with Retry-After, never 500, while the database cannot be reached."""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse

logger = logging.getLogger(__name__)


class DatabaseUnavailableMiddleware:
    """Turn a database outage into 503 for every view: webhooks, storefront, status APIs.

    Any transaction the view opened has rolled back by the time the exception reaches
    here, so nothing is half-written; the client is told when to come back.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not isinstance(exception, OperationalError | InterfaceError):
            return None
        logger.warning("database unavailable for %s: %s", request.path, exception)
        return JsonResponse(
            {"errors": [{"path": "", "message": "temporarily unavailable, retry later"}]},
            status=503,
            headers={"Retry-After": str(settings.DATABASE_UNAVAILABLE_RETRY_AFTER)},
        )
