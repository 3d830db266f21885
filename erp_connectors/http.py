"""JSON error answers shared by the webhook intake and the status API."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse

logger = logging.getLogger(__name__)

# How long a client should wait before trying again while the database is unreachable.
DEFAULT_RETRY_AFTER_SECONDS = 10


def error_response(
    status: int, path: str, message: str, headers: dict[str, str] | None = None
) -> JsonResponse:
    return JsonResponse(
        {"errors": [{"path": path, "message": message}]}, status=status, headers=headers
    )


def database_guard(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Answer 503 with Retry-After when the database cannot be reached.

    The view's transaction has rolled back by then, so nothing is half-written, and the
    sender is told to come back instead of getting a 500.
    """

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            return view(request, *args, **kwargs)
        except (OperationalError, InterfaceError) as exc:
            logger.warning("database unavailable for %s: %s", request.path, exc)
            retry_after = getattr(
                settings, "ERP_WEBHOOK_RETRY_AFTER_SECONDS", DEFAULT_RETRY_AFTER_SECONDS
            )
            return error_response(
                503,
                "",
                "the service is temporarily unavailable, retry later",
                headers={"Retry-After": str(retry_after)},
            )

    return wrapper
