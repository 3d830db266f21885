"""JSON error answers and event URLs shared by the webhook intake and the status API."""

from __future__ import annotations

import functools
from urllib.parse import quote

from django.http import JsonResponse
from django.urls import get_script_prefix, reverse
from django.utils.http import RFC3986_SUBDELIMS

# The characters reverse() leaves unquoted in a path argument (django.urls.resolvers).
_PATH_SAFE = RFC3986_SUBDELIMS + "/~:@"


def error_response(
    status: int, path: str, message: str, headers: dict[str, str] | None = None
) -> JsonResponse:
    return JsonResponse(
        {"errors": [{"path": path, "message": message}]}, status=status, headers=headers
    )


def event_status_path(slug: str, webhook_id: str) -> str:
    """The path of an event's status, as reverse("erp_connectors:event", …) gives it.

    Every accepted webhook answers with this URL; resolving the pattern each time took
    about 5 % of the intake's CPU, so the connector's part is reversed once per process.
    """
    return _event_path_prefix(get_script_prefix(), slug) + quote(webhook_id, safe=_PATH_SAFE)


@functools.lru_cache(maxsize=1024)
def _event_path_prefix(script_prefix: str, slug: str) -> str:
    # script_prefix is in the key because reverse() includes it (SCRIPT_NAME, per request).
    marker = "0"
    path = reverse("erp_connectors:event", kwargs={"slug": slug, "webhook_id": marker})
    return path.removesuffix(marker)
